"""Read validation datasets (JSONL) and summarise predicted vs measured (no streamlit).

Datasets are the `validation/results/**/*.jsonl` files `blockroof validate run` writes. The
loader assumes only that each line is a JSON object with at least

    model, phase, device (text) and predicted_s, measured_s (positive seconds).

Everything else is kept as extra columns (nested objects flattened as "env.torch", ...).
Optional keys used when present: ``flops`` and ``bytes`` (or the aliases below) to place the
measured points on a roofline, ``hardware`` (a hardware id) for that roofline. Lines that do
not meet the minimum are skipped and reported, never fatal.

A run directory also holds the report's ``points.csv`` (`validation.report`): where it is
beside a dataset, its per-point predictions, made by the cost model as it is now, replace the
``predicted_s`` stored at measurement time, and add ``predicted_calibrated_s`` (the run's
calibration) and ``split`` (train / test), matched by ``point_id``. `with_prediction` selects
which prediction the errors use.
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
REPORT_FILE = "points.csv"  # beside a dataset: validation.report's per-point predictions
REPORT_COLUMNS = ("predicted_s", "predicted_calibrated_s", "split")
PREDICTIONS = {"uncalibrated roofline": "predicted_s",
               "calibrated (each run's fit)": "predicted_calibrated_s"}


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


def _number(value: object, allow_zero: bool = False) -> float | None:
    """`value` as a finite number > 0 (>= 0 with `allow_zero`), else None (booleans too)."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and (x > 0 or (allow_zero and x == 0)) else None


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
        if _number(rec[k]) is None:
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
        report = _report_predictions(path.parent / REPORT_FILE, root, problems)
        for rec in records:
            if rec["dataset"] == rel and rec.get("point_id") in report:
                rec.update(report[rec["point_id"]])
    return ValidationData(_frame(records), files, problems)


def _report_predictions(path: Path, root: Path, problems: list[str]) -> dict[str, dict]:
    """{point_id: REPORT_COLUMNS} from a report's points.csv; {} when there is none."""
    if not path.is_file():
        return {}
    rel = str(path.relative_to(root))
    try:
        table = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        problems.append(f"{rel}: unreadable ({e})")
        return {}
    missing = [c for c in ("point_id", *REPORT_COLUMNS) if c not in table.columns]
    if missing:
        problems.append(f"{rel}: missing column(s) {', '.join(missing)}")
        return {}
    out = {}
    for row in table.itertuples(index=False):
        pred, cal = _number(row.predicted_s), _number(row.predicted_calibrated_s)
        if pred is None or cal is None or row.split not in ("train", "test"):
            problems.append(f"{rel}: point {row.point_id}: bad predictions, not used")
            continue
        out[str(row.point_id)] = {"predicted_s": pred, "predicted_calibrated_s": cal,
                                  "split": row.split}
    return out


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
    return with_prediction(df, "predicted_s")


def with_prediction(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """`df` with ``ratio`` (predicted / measured) and ``abs_pct_error`` from `column`
    (``predicted_s`` or ``predicted_calibrated_s``); rows without that prediction dropped."""
    if column not in PREDICTIONS.values():
        raise ValueError(f"prediction: expected one of {', '.join(PREDICTIONS.values())}, "
                         f"got {column!r}")
    if column not in df.columns:
        return df.iloc[0:0].assign(ratio=[], abs_pct_error=[])
    out = df[df[column].notna()].copy()
    out["ratio"] = out[column].astype(float) / out["measured_s"]
    out["abs_pct_error"] = 100 * (out["ratio"] - 1).abs()
    return out


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


# --- per-op profiles (validation.op_profile) ---------------------------------------------------

OP_PROFILE_KEYS = ("model", "phase", "batch", "context", "hardware", "ops")


@dataclass
class OpProfiles:
    """Per-op profiles by label (file path relative to the results folder), as tables with
    columns op, measured_s, predicted_s, ratio; plus one problem line per unusable file."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_op_profiles(root: Path | str | None = None) -> OpProfiles:
    """Every ``ops/*.json`` under `root` (default `results_dir()`), in path order."""
    root = Path(root) if root is not None else results_dir()
    out = OpProfiles()
    paths = sorted(root.rglob("ops/*.json")) if root.is_dir() else []
    for path in paths:
        rel = str(path.relative_to(root))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            out.problems.append(f"{rel}: unreadable ({e})")
            continue
        missing = [k for k in OP_PROFILE_KEYS if not isinstance(data, dict) or k not in data]
        if not missing and not isinstance(data["ops"], list):
            missing = ["ops (a list)"]
        if missing:
            out.problems.append(f"{rel}: missing key(s) {', '.join(missing)}")
            continue
        rows = [o for o in data["ops"] if isinstance(o, dict)
                and _number(o.get("measured_s"), allow_zero=True) is not None
                and _number(o.get("predicted_s"), allow_zero=True) is not None and o.get("op")]
        if not rows:
            out.problems.append(f"{rel}: no op row with op, measured_s and predicted_s >= 0")
            continue
        if len(rows) < len(data["ops"]):
            out.problems.append(f"{rel}: {len(data['ops']) - len(rows)} op row(s) without op, "
                                "measured_s and predicted_s >= 0, not used")
        table = pd.DataFrame({"op": [str(o["op"]) for o in rows],
                              "measured_s": [float(o["measured_s"]) for o in rows],
                              "predicted_s": [float(o["predicted_s"]) for o in rows]})
        table = table[(table["measured_s"] > 0) | (table["predicted_s"] > 0)]
        measured = table["measured_s"].where(table["measured_s"] > 0)
        table = table.assign(ratio=table["predicted_s"] / measured).reset_index(drop=True)
        out.tables[rel] = table
        out.titles[rel] = (f"{data['model']} {data['phase']} B={data['batch']} "
                           f"context={data['context']}, predicted on {data['hardware']}")
    return out



# --- devices and published measurements (docs/published.md 5) ----------------------------------

def device_record(device: str, database: dict, root: Path | str | None = None):
    """The `Hardware` record a device's points belong on: the database entry of that id, else
    the run's own measured record (``<results>/**/hardware/<device>.json``), else None (the
    points are then shown without a roof; never on another device's roofline)."""
    from costmodel.hardware import HardwareDataError, load_hardware_file

    if device in database:
        return database[device]
    root = Path(root) if root is not None else results_dir()
    for path in sorted(root.rglob(f"hardware/{device}.json")) if root.is_dir() else []:
        try:
            return load_hardware_file(path)
        except (HardwareDataError, FileNotFoundError):
            continue
    return None


PUBLISHED_DIR = "published"  # <results>/published/<run>/points.csv (validate published --out)


def load_published(root: Path | str | None = None) -> dict[str, pd.DataFrame]:
    """Per run name, the ``points.csv`` of each `blockroof validate published --out` run under
    ``<results>/published/`` (columns of `validation.published.Scored.frame`)."""
    root = Path(root) if root is not None else results_dir()
    out: dict[str, pd.DataFrame] = {}
    base = root / PUBLISHED_DIR
    for path in sorted(base.glob(f"*/{REPORT_FILE}")) if base.is_dir() else []:
        try:
            out[path.parent.name] = pd.read_csv(path, keep_default_na=False,
                                                na_values=["", "nan"])
        except (OSError, ValueError, pd.errors.ParserError):
            continue
    return out


def published_roofline_points(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per hardware id, the rows that can be placed on a roofline (positive FLOPs, bytes and
    attained FLOP/s), in `figures.roofline_figure`'s columns."""
    need = {"flops", "bytes", "attained_flops_per_s", "hardware"}
    if df.empty or not need <= set(df.columns):
        return {}
    part = df[(pd.to_numeric(df["flops"], errors="coerce") > 0)
              & (pd.to_numeric(df["bytes"], errors="coerce") > 0)
              & (pd.to_numeric(df["attained_flops_per_s"], errors="coerce") > 0)].copy()
    part["bytes_total"] = part["bytes"]
    part["intensity_flops_per_byte"] = part["flops"] / part["bytes"]
    part["side"] = part["kind"].astype(str)
    part["name"] = part["model"].astype(str) + " " + part["setting"].astype(str)
    part["phase"] = part["metric"].astype(str)
    part["bound"] = part["split"].astype(str)
    return {str(hw): g for hw, g in part.groupby("hardware", sort=False)}
