"""Predicted per-request memory (KV cache + workspace) vs the measured CPU tensor peak."""

from __future__ import annotations

import pytest

from validation.workspace import BAND, peak_row


@pytest.mark.parametrize("case", [
    ("vanilla_31", "static", 8, 128, 4),
    ("block_main_b4_5", "static", 4, 64, 8),
])
def test_measured_peak_inside_band(case):
    row = peak_row(*case)
    assert BAND[0] <= row.ratio <= BAND[1], (row.predicted_bytes, row.measured_bytes)


def test_hf_legacy_kv_dominated_peak_is_close():
    # materialised scores and a grown cache dominate here: the estimate is tight
    row = peak_row("vanilla_31", "hf-legacy", 4, 96, 4)
    assert row.ratio == pytest.approx(1.0, abs=0.05)
