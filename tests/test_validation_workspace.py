"""Predicted per-request memory (KV cache + workspace) vs the measured CPU tensor peak."""

from __future__ import annotations

import pytest

from validation.workspace import BAND, WORKSPACE_RATIO, peak_row


@pytest.mark.parametrize("case", list(WORKSPACE_RATIO), ids=lambda c: f"{c[0]}-{c[1]}")
def test_measured_peak_against_prediction(case):
    row = peak_row(*case)
    # per request: never over-predicted, under-predicted by at most 2.5x
    assert BAND[0] <= row.ratio <= BAND[1], (row.predicted_bytes, row.measured_bytes)
    # the transient alone, pinned (deterministic accounting; validation/workspace.py says why)
    assert row.workspace_ratio == pytest.approx(WORKSPACE_RATIO[case], rel=0.08)
