"""Read validation datasets (JSONL) and summarise predicted vs measured (no streamlit).

The harness that writes `validation/results/**/*.jsonl` is being built alongside; this loader
assumes only that each line is a JSON object with at least

    model, phase, device (text) and predicted_s, measured_s (positive seconds).

Everything else is kept as extra columns (nested objects flattened as "env.torch", ...).
Optional keys used when present: ``flops`` and ``bytes`` (or the aliases below) to place the
measured points on a roofline, ``hardware`` (a hardware id) for that roofline. Lines that do
not meet the minimum are skipped and reported, never fatal. Adapt `ALIASES` when the format
settles.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

RESULTS_DIR = Path(__file__).resolve().parents[1] / "validation" / "results"
RESULTS_ENV = "BLOCKROOF_RESULTS_DIR"  # overrides RESULTS_DIR (tests, other checkouts)
REQUIRED: tuple[str, ...] = ("model", "phase", "device", "predicted_s", "measured_s")
TEXT_KEYS: tuple[str, ...] = ("model", "phase", "device")
# canonical column -> accepted keys, first match wins
ALIASES: dict[str, tuple[str, ...]] = {
    "flops": ("flops", "counted_flops", "flops_counted", "predicted_flops"),
    "bytes": ("bytes", "bytes_total", "counted_bytes", "predicted_bytes"),
}
EMPTY_MESSAGE = "No validation datasets yet: run `blockroof validate run ...`"


@dataclass
class ValidationData:
    """Rows of every dataset (columns: REQUIRED, dataset, line, ratio, abs_pct_error, extras),
    the files read and one problem line per skipped line or unreadable file."""

    frame: pd.DataFrame
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.frame.empty


def _positive(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def _check_record(rec: object) -> str | None:
    """None if `rec` has the minimum format, else the reason."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    for k in TEXT_KEYS:
        if not isinstance(rec[k], str | int | float) or isinstance(rec[k], bool) \
                or str(rec[k]) == "":
            return f"{k}: expected text, got {rec[k]!r}"
    for k in ("predicted_s", "measured_s"):
        if _positive(rec[k]) is None:
            return f"{k}: expected a positive number of seconds, got {rec[k]!r}"
    return None


def results_dir() -> Path:
    """$BLOCKROOF_RESULTS_DIR if set, else validation/results of this checkout."""
    return Path(os.environ.get(RESULTS_ENV) or RESULTS_DIR)


def load_results(root: Path | str | None = None) -> ValidationData:
    """Every `*.jsonl` under `root` (default `results_dir()`), recursively, in path order."""
    root = Path(root) if root is not None else results_dir()
    records: list[dict] = []
    files: list[str] = []
    problems: list[str] = []
    paths = sorted(root.rglob("*.jsonl")) if root.is_dir() else []
    for path in paths:
        rel = str(path.relative_to(root))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{rel}: unreadable ({e})")
            continue
        files.append(rel)
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{rel}:{i}: not JSON ({e.msg})")
                continue
            reason = _check_record(rec)
            if reason:
                problems.append(f"{rel}:{i}: {reason}")
                continue
            records.append(rec | {"dataset": rel, "line": i})
    return ValidationData(_frame(records), files, problems)


def _frame(records: list[dict]) -> pd.DataFrame:
    if not records:
        return pd.DataFrame(columns=[*REQUIRED, "dataset", "line", "ratio", "abs_pct_error"])
    df = pd.json_normalize(records)
    for k in TEXT_KEYS:
        df[k] = df[k].astype(str)
    for k in ("predicted_s", "measured_s"):
        df[k] = df[k].astype(float)
    for canonical, keys in ALIASES.items():
        if canonical not in df.columns:
            found = next((k for k in keys if k in df.columns), None)
            if found is not None:
                df[canonical] = df[found]
        if canonical in df.columns:
            df[canonical] = pd.to_numeric(df[canonical], errors="coerce")
    df["ratio"] = df["predicted_s"] / df["measured_s"]
    df["abs_pct_error"] = 100 * (df["ratio"] - 1).abs()
    return df


def display_columns(df: pd.DataFrame) -> list[str]:
    """Columns worth a table: the minimum, the errors, the source, then the other scalars
    (flattened nested specs such as "spec.stack.n_layers" left out; they stay in the CSV)."""
    first = [*REQUIRED, "ratio", "abs_pct_error", "dataset", "line"]
    rest = [c for c in df.columns if c not in first and not c.startswith("spec.")]
    return [c for c in first if c in df.columns] + rest


def mape_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (phase, device): points, MAPE %, median predicted / measured, worst error %."""
    cols = ["phase", "device", "points", "mape_pct", "median_ratio", "max_abs_pct_error"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    g = df.groupby(["phase", "device"], sort=True)
    out = pd.DataFrame({
        "points": g.size(),
        "mape_pct": g["abs_pct_error"].mean(),
        "median_ratio": g["ratio"].median(),
        "max_abs_pct_error": g["abs_pct_error"].max(),
    }).reset_index()
    return out[cols]


def roofline_points(df: pd.DataFrame) -> pd.DataFrame:
    """Measured points for a roofline: rows with positive flops and bytes, at intensity
    flops / bytes and attained flops / measured_s (columns as `figures.roofline_points`)."""
    if df.empty or "flops" not in df.columns or "bytes" not in df.columns:
        return pd.DataFrame()
    part = df[(df["flops"] > 0) & (df["bytes"] > 0)].copy()
    if part.empty:
        return pd.DataFrame()
    part["bytes_total"] = part["bytes"]
    part["intensity_flops_per_byte"] = part["flops"] / part["bytes"]
    part["attained_flops_per_s"] = part["flops"] / part["measured_s"]
    part["side"] = part["device"]
    part["name"] = part["model"]
    part["bound"] = part["phase"]  # the figure's colour groups: one per phase
    return part
