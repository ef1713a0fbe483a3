"""The paper's measured Table 1 (v2) beside the cost model's predictions (`blockroof paper`).

Measured values are copied from docs/model.md 5.2 (paper v2 Table 1: one H100, bf16, max batch,
throughput in 1K generated tokens/s, memory in MB per sample). Predictions: the same presets and
settings on `h100-sxm-80gb` at the predicted max batch, for every implementation profile, with
the paper's batch-search stop rule as the memory reserve (it stops when less than 2 GiB is
free, docs/model.md 6.6). A roofline is an upper bound on throughput: predicted / measured says how
far the official code runs from the hardware's limits.

Calibrated columns (``calibrated-<profile>``): the device with the efficiencies of its
`costmodel.calibration` record for that profile (fitted on this very table, so these are
in-sample; the record carries the held-out error of the seeded split, docs/published.md 3).
`spearman` gives the rank agreement of predicted and measured throughput over the 20 rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .api import estimate
from .calibration import calibrated_hardware, calibration_for
from .hardware import get_hardware
from .presets import MATCHED_PAIRS, display_name
from .workload import Workload

GiB = 2**30
MiB = 2**20


class PaperRow(NamedTuple):
    preset: str
    loss: float
    mem_prefill_MB: float
    mem_decode_MB: float
    thr_prefill_ktok_s: float
    thr_decode_ktok_s: float


# docs/model.md 5.2 (paper v2 Table 1), columns Loss, Mem Prefill-h, Mem Decode-h, Thr Prefill-h,
# Thr Decode-h.
TABLE1: tuple[PaperRow, ...] = (
    PaperRow("vanilla_31", 3.002, 355.0, 38.5, 10.8, 41.6),
    PaperRow("vanilla_70", 2.820, 390.0, 76.8, 6.9, 19.1),
    PaperRow("vanilla_160", 2.476, 675.0, 229.6, 2.3, 6.2),
    PaperRow("vanilla_410", 2.224, 1140.0, 608.2, 0.8, 2.1),
    PaperRow("block_main_b4_5", 3.578, 25.0, 5.0, 272.3, 809.5),
    PaperRow("block_main_b4_19", 3.181, 48.9, 9.9, 175.3, 421.4),
    PaperRow("block_main_b4_85", 2.753, 56.3, 29.1, 59.0, 134.7),
    PaperRow("block_main_b4_300", 2.445, 105.0, 77.2, 21.0, 44.1),
    PaperRow("block_main_b4_800", 2.268, 130.2, 102.8, 19.8, 42.5),
    PaperRow("block_main_b4_1.2b", 2.188, 194.2, 153.9, 12.4, 25.7),
)

# The paper's two settings (docs/model.md 5.1): name -> (prompt, generated)
SETTINGS: dict[str, tuple[int, int]] = {"prefill-heavy": (2048, 128), "decode-heavy": (128, 2048)}
PROFILES = ("static", "hf-legacy", "official", "official-eager")
# profiles whose calibration record (if the device has one) gets a calibrated-<profile> column
CALIBRATED = ("official", "official-eager")


def columns(hardware: str = "h100-sxm-80gb") -> list[str]:
    """The prediction columns of `paper_table` on this device: every profile's bound, then
    ``calibrated-<profile>`` where the device has a calibration record for it."""
    hw = get_hardware(hardware)
    return [*PROFILES, *(f"calibrated-{p}" for p in CALIBRATED if calibration_for(hw, p))]


def paper_table(hardware: str = "h100-sxm-80gb", reserve_bytes: float = 2 * GiB) -> pd.DataFrame:
    """One row per (preset, setting): measured (paper) and predicted (`columns`).

    Columns: preset, paper_name, setting, loss, paper_memory_MB, paper_throughput_tok_s, then
    per prediction column p: {p}_max_batch, {p}_memory_per_sample_MiB, {p}_throughput_tok_s,
    {p}_over_paper (predicted / measured throughput).
    """
    hw = get_hardware(hardware)
    runs = [(p, hw, p) for p in PROFILES]
    runs += [(f"calibrated-{p}", calibrated_hardware(hw, p), p) for p in CALIBRATED
             if calibration_for(hw, p)]
    records = []
    for row in TABLE1:
        for setting, (prompt, generated) in SETTINGS.items():
            heavy = setting == "prefill-heavy"
            rec = {
                "preset": row.preset, "paper_name": display_name(row.preset), "setting": setting,
                "loss": row.loss,
                "paper_memory_MB": row.mem_prefill_MB if heavy else row.mem_decode_MB,
                "paper_throughput_tok_s": 1e3 * (row.thr_prefill_ktok_s if heavy
                                                 else row.thr_decode_ktok_s),
            }
            wl = Workload(batch="max", prompt_tokens=prompt, generated_tokens=generated,
                          memory_reserve_bytes=reserve_bytes)
            for profile, device, impl in runs:
                est = estimate(row.preset, device, wl, impl)
                rec[f"{profile}_max_batch"] = est.max_batch
                rec[f"{profile}_memory_per_sample_MiB"] = est.memory_bytes_per_sample / MiB
                rec[f"{profile}_throughput_tok_s"] = est.throughput_tokens_per_s
                rec[f"{profile}_over_paper"] = (est.throughput_tokens_per_s
                                                / rec["paper_throughput_tok_s"])
            records.append(rec)
    return pd.DataFrame(records)


def pair_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Block / vanilla throughput ratios of the matched pairs of docs/model.md 5.3, measured and
    predicted, per setting."""
    by = table.set_index(["preset", "setting"])
    profiles = [c[: -len("_throughput_tok_s")] for c in table.columns
                if c.endswith("_throughput_tok_s") and not c.startswith("paper")]
    records = []
    for vanilla, block in MATCHED_PAIRS:
        for setting in SETTINGS:
            v, b = by.loc[(vanilla, setting)], by.loc[(block, setting)]
            rec = {"vanilla": vanilla, "block": block, "setting": setting,
                   "paper_ratio": b["paper_throughput_tok_s"] / v["paper_throughput_tok_s"]}
            for profile in profiles:
                col = f"{profile}_throughput_tok_s"
                rec[f"{profile}_ratio"] = b[col] / v[col]
            records.append(rec)
    return pd.DataFrame(records)


def _ranks(x: np.ndarray) -> np.ndarray:
    return pd.Series(x).rank(method="average").to_numpy()


def spearman(table: pd.DataFrame) -> dict[str, float]:
    """Spearman rank correlation of predicted and measured throughput over every row, per
    prediction column (1: the same order as the paper)."""
    measured = _ranks(table["paper_throughput_tok_s"].to_numpy())
    out = {}
    for c in table.columns:
        if c.endswith("_throughput_tok_s") and not c.startswith("paper"):
            pred = _ranks(table[c].to_numpy())
            out[c[: -len("_throughput_tok_s")]] = float(np.corrcoef(measured, pred)[0, 1])
    return out


def mape(table: pd.DataFrame) -> dict[str, float]:
    """Mean absolute percentage error of predicted throughput, per prediction column."""
    paper = table["paper_throughput_tok_s"]
    return {c[: -len("_throughput_tok_s")]: float((100 * (table[c] / paper - 1)).abs().mean())
            for c in table.columns
            if c.endswith("_throughput_tok_s") and not c.startswith("paper")}
