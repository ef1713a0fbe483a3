"""Published measurements as data: load, predict, fit efficiencies, score (docs/published.md).

A published file is a CSV in the schema of `validation/published/README.md`, one row per measured
figure. `load` validates every row (a bad row is one `UserError` line naming the file, the line,
the column and the rule) and marks the rows the cost model cannot represent yet with a reason
(`PublishedRow.skip`), which the report lists.

Prediction: each row becomes (spec, implementation profile at the row's dtype, hardware record,
workload). ``batch = max`` is the cost model's max batch under the row's memory reserve, which
depends on memory only, so it is computed once; every time-like metric is then one call of the
compiled formula per row group with the hardware's rates as inputs (`PublishedPredictor`).

Fitting: the five `validation.calibrate.PARAMS` (matmul, bandwidth, overlap, kernel and forward
overheads) by `validation.calibrate.fit_params` on the log of predicted / measured of the
training rows' time-like metrics (throughput, request time, TTFT, TPOT). Memory metrics depend on
no fitted parameter: they are predicted, never fitted, and reported apart.

Split (`split_rows`) when no ``--fit`` file is given: seeded, stratified by (source, metric,
model kind, prompt/generated setting): in every stratum a third is held out (the CPU
calibration's rule, `validation.calibrate.held_out_count`), chosen by a seeded shuffle.
Held-out rows never enter the objective.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from costmodel import symbols as sy
from costmodel.api import hardware_values, impl_values, model_values, structure_key
from costmodel.errors import UserError
from costmodel.hardware import Hardware, get_hardware
from costmodel.implementation import BYTES_PER_ELEMENT, PROFILES, Implementation, get_implementation
from costmodel.metrics import formulas
from costmodel.spec import BlockSpec, VanillaSpec

from .calibrate import fit_params, held_out_count

REQUIRED = ("source", "model", "hardware", "implementation", "weight_dtype", "kv_dtype", "tp",
            "batch", "memory_reserve_bytes", "prompt_tokens", "generated_tokens", "metric",
            "value", "unit", "notes")
# metric -> {unit: factor to SI}
UNITS: dict[str, dict[str, float]] = {
    "throughput_tokens_per_s": {"tokens/s": 1.0, "ktokens/s": 1e3},
    "request_time_s": {"s": 1.0, "ms": 1e-3},
    "ttft_s": {"s": 1.0, "ms": 1e-3},
    "tpot_s": {"s": 1.0, "ms": 1e-3},
    "memory_bytes_per_sample": {"bytes": 1.0, "MB": 1e6, "MiB": 2.0**20, "GB": 1e9,
                                "GiB": 2.0**30},
    "memory_bytes_total": {"bytes": 1.0, "MB": 1e6, "MiB": 2.0**20, "GB": 1e9, "GiB": 2.0**30},
}
FITTED_METRICS = ("throughput_tokens_per_s", "request_time_s", "ttft_s", "tpot_s")
# metrics for which a larger value is better: the roofline bounds them from above
HIGHER_IS_FASTER = ("throughput_tokens_per_s",)
DEFAULT_SEED = 0


@dataclass
class PublishedRow:
    """One measured figure (validated) and what the cost model needs to predict it."""

    file: str
    line: int
    source: str
    model: str
    hardware: str
    implementation: str
    weight_dtype: str
    kv_dtype: str
    tp: int
    batch: int | str
    memory_reserve_bytes: float
    prompt_tokens: int
    generated_tokens: int
    metric: str
    value: float  # SI units of the metric
    unit: str
    notes: str
    setting: str = ""
    skip: str = ""  # why the cost model cannot predict this row today ("" = usable)
    spec: VanillaSpec | BlockSpec | None = field(default=None, repr=False)
    impl: Implementation | None = field(default=None, repr=False)
    hw: Hardware | None = field(default=None, repr=False)

    @property
    def row_id(self) -> str:
        return f"{Path(self.file).name}:{self.line}"

    @property
    def kind(self) -> str:
        return self.spec.kind if self.spec is not None else "?"


def _int(where: str, name: str, text: str, minimum: int = 1) -> int:
    try:
        v = int(text)
    except ValueError:
        raise UserError(f"{where}: {name}: expected a whole number, got {text!r}") from None
    if v < minimum:
        raise UserError(f"{where}: {name}: must be >= {minimum}, got {v}")
    return v


def _float(where: str, name: str, text: str, positive: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"{where}: {name}: expected a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise UserError(f"{where}: {name}: must be {'> 0' if positive else '>= 0'}, got {text}")
    return v


def _resolve_model(where: str, text: str, directory: Path) -> VanillaSpec | BlockSpec:
    from costmodel.cli import _load_model

    candidate = directory / text
    if (text.endswith(".json") or "/" in text) and candidate.is_file():
        text = str(candidate)
    try:
        return _load_model(text)
    except (UserError, ValueError, FileNotFoundError) as e:
        raise UserError(f"{where}: model: {e}") from None


def _parse(path: Path, line: int, rec: dict[str, str], implementation: str | None = None
           ) -> PublishedRow:
    where = f"{path}:{line}"
    if implementation is not None:  # rescore every row under another profile
        rec = rec | {"implementation": implementation}
    for col in REQUIRED:
        if rec.get(col) is None:
            raise UserError(f"{where}: {col}: missing value")
    metric = rec["metric"].strip()
    if metric not in UNITS:
        raise UserError(f"{where}: metric: unknown {metric!r} (known: {', '.join(UNITS)})")
    unit = rec["unit"].strip()
    if unit not in UNITS[metric]:
        raise UserError(f"{where}: unit: {unit!r} is not a unit of {metric} "
                        f"(known: {', '.join(UNITS[metric])})")
    impl_name = rec["implementation"].strip()
    if impl_name not in PROFILES:
        raise UserError(f"{where}: implementation: unknown profile {impl_name!r} "
                        f"(known: {', '.join(PROFILES)})")
    batch_text = rec["batch"].strip()
    batch: int | str = "max" if batch_text == "max" else _int(where, "batch", batch_text)
    for col in ("weight_dtype", "kv_dtype"):
        if rec[col].strip() not in BYTES_PER_ELEMENT:
            raise UserError(f"{where}: {col}: unknown dtype {rec[col]!r} "
                            f"(known: {', '.join(BYTES_PER_ELEMENT)})")
    if not rec["source"].strip():
        raise UserError(f"{where}: source: must cite where the figure was published")
    row = PublishedRow(
        file=str(path), line=line, source=rec["source"].strip(), model=rec["model"].strip(),
        hardware=rec["hardware"].strip(), implementation=impl_name,
        weight_dtype=rec["weight_dtype"].strip(), kv_dtype=rec["kv_dtype"].strip(),
        tp=_int(where, "tp", rec["tp"].strip()), batch=batch,
        memory_reserve_bytes=_float(where, "memory_reserve_bytes",
                                    rec["memory_reserve_bytes"].strip() or "0", False),
        prompt_tokens=_int(where, "prompt_tokens", rec["prompt_tokens"].strip()),
        generated_tokens=_int(where, "generated_tokens", rec["generated_tokens"].strip()),
        metric=metric,
        value=_float(where, "value", rec["value"].strip(), True) * UNITS[metric][unit],
        unit=unit, notes=rec["notes"].strip(),
    )
    row.setting = f"{row.prompt_tokens}/{row.generated_tokens}"
    # what the cost model cannot represent today: kept, reported, not predicted
    if row.tp != 1:
        row.skip = "tp > 1 needs tensor parallelism in the cost model (not merged yet)"
    elif row.weight_dtype != row.kv_dtype:
        row.skip = "different weight and KV dtypes need per-tensor precision (not merged yet)"
    try:
        row.hw = get_hardware(row.hardware)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"{where}: hardware: {e}") from None
    row.spec = _resolve_model(where, row.model, path.parent)
    if not row.skip:
        row.impl = get_implementation(impl_name, dtype=row.weight_dtype)  # type: ignore[arg-type]
        try:
            row.hw.compute_flops_per_s(row.impl.compute_dtype)
        except ValueError as e:
            row.skip = str(e)
    return row


def load(paths: list[str | Path], implementation: str | None = None) -> list[PublishedRow]:
    """Every row of every file, validated (module docstring); `implementation` replaces every
    row's profile (to compare profiles on the same measurements)."""
    rows: list[PublishedRow] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise UserError(f"published: no such file {str(path)!r}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:  # binary garbage: name the file (docs/reliability.md)
            raise UserError(f"published: {path} is not UTF-8 text (byte {e.start}); expected a "
                            "CSV file") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: header: missing column(s) {', '.join(missing)} "
                            "(schema: validation/published/README.md)")
        for i, rec in enumerate(reader, start=2):
            rows.append(_parse(path, i, rec, implementation))
    if not rows:
        raise UserError("published: the files hold no rows")
    return rows


# --- predictions ---------------------------------------------------------------------------

def base_hardware(hw: Hardware) -> Hardware:
    """The pure roofline of a record: efficiencies 1, overlap 1, no overheads."""
    return hw.with_efficiency(matmul=1.0, bandwidth=1.0, overlap=1.0, kernel_overhead_s=0.0,
                              forward_overhead_s=0.0, generate_call_overhead_s=0.0)


def _workload_values(row: PublishedRow, batch: float) -> dict[Any, float]:
    return {sy.B: float(batch), sy.S: float(row.prompt_tokens),
            sy.G: float(row.generated_tokens), sy.M_res: float(row.memory_reserve_bytes)}


class PublishedPredictor:
    """Vectorised predictions of usable rows under a parameter dict (`validation.calibrate`
    PARAMS; missing ones at the pure roofline's values)."""

    def __init__(self, rows: list[PublishedRow]) -> None:
        self.rows = rows
        self.batch = np.ones(len(rows))
        groups: dict[Any, list[int]] = defaultdict(list)
        values: list[dict[Any, float]] = []
        for i, r in enumerate(rows):
            assert r.spec is not None and r.impl is not None and r.hw is not None, r.row_id
            key = structure_key(r.spec, r.impl)
            hw = base_hardware(r.hw)
            vals = (model_values(r.spec) | impl_values(r.impl) | hardware_values(hw, r.impl)
                    | _workload_values(r, 1.0))
            if r.batch == "max":
                self.batch[i] = max(1.0, float(formulas(key).evaluate("max_batch", vals)[0]))
            else:
                self.batch[i] = float(r.batch)
            vals[sy.B] = self.batch[i]
            values.append(vals)
            groups[(key, r.metric, r.hw.id, r.impl.compute_dtype)].append(i)
        self.groups = []
        for (key, metric, _, _), idx in groups.items():
            arrays = {k: np.array([values[i][k] for i in idx]) for k in values[idx[0]]}
            hw, impl = base_hardware(rows[idx[0]].hw), rows[idx[0]].impl  # type: ignore[arg-type]
            self.groups.append((formulas(key), metric, np.array(idx), arrays,
                                hw.compute_flops_per_s(impl.compute_dtype),  # type: ignore[union-attr]
                                hw.bandwidth_bytes_per_s()))

    def predict(self, params: dict[str, float] | None = None) -> np.ndarray:
        p = {"matmul": 1.0, "bandwidth": 1.0, "overlap": 1.0, "kernel_overhead_s": 0.0,
             "forward_overhead_s": 0.0, "generate_call_overhead_s": 0.0} | dict(params or {})
        out = np.empty(len(self.rows))
        for f, metric, idx, arrays, pi, beta in self.groups:
            hwv = {sy.pi: pi * p["matmul"], sy.beta: beta * p["bandwidth"],
                   sy.eta_ov: p["overlap"], sy.t_kernel: p["kernel_overhead_s"],
                   sy.t_forward: p["forward_overhead_s"],
                   sy.t_generate: p["generate_call_overhead_s"]}
            out[idx] = f.evaluate(metric, arrays | hwv)
        return out


    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Executed FLOPs and bytes of each row's whole request (cost model), to place it on
        its device's roofline; they do not depend on the parameters."""
        flops = np.empty(len(self.rows))
        nbytes = np.empty(len(self.rows))
        for f, _, idx, arrays, pi, beta in self.groups:
            vals = arrays | {sy.pi: pi, sy.beta: beta, sy.eta_ov: 1.0, sy.t_kernel: 0.0,
                             sy.t_forward: 0.0, sy.t_generate: 0.0}
            flops[idx] = f.evaluate("flops_total", vals)
            nbytes[idx] = sum(f.evaluate(m, vals) for m in (
                "weight_bytes_total", "activation_bytes_total", "kv_bytes_total"))
        return flops, nbytes


def _as_time(rows: list[PublishedRow], values: np.ndarray) -> np.ndarray:
    """Throughputs inverted (time per token), so every fitted residual is log(time ratio)."""
    inv = np.array([r.metric in HIGHER_IS_FASTER for r in rows])
    return np.where(inv, 1.0 / values, values)


# --- split and fit -------------------------------------------------------------------------

def split_rows(rows: list[PublishedRow], seed: int = DEFAULT_SEED, test_fraction: float = 1 / 3
               ) -> tuple[list[int], list[int]]:
    """(train, test) indices of usable rows, seeded and stratified (module docstring)."""
    strata: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if not r.skip:
            strata[(r.source, r.metric, r.kind, r.setting)].append(i)
    rng = random.Random(seed)
    train, test = [], []
    for key in sorted(strata):
        idx = sorted(strata[key])
        rng.shuffle(idx)
        n_test = held_out_count(len(idx), test_fraction)
        test += idx[:n_test]
        train += idx[n_test:]
    return sorted(train), sorted(test)


@dataclass
class PublishedFit:
    params: dict[str, float]
    cost: float
    pinned: list[str]
    train_rows: list[str]  # row ids
    description: str


def fit_rows(rows: list[PublishedRow], train: list[int], description: str) -> PublishedFit:
    """Fit `PARAMS` on the fitted metrics of the `train` rows (module docstring)."""
    sub = [rows[i] for i in train if rows[i].metric in FITTED_METRICS and not rows[i].skip]
    if not sub:
        raise UserError("published: no training rows with a time or throughput metric")
    pred = PublishedPredictor(sub)
    measured = _as_time(sub, np.array([r.value for r in sub]))
    params, cost, pinned = fit_params(lambda p: _as_time(sub, pred.predict(p)), measured)
    return PublishedFit(params, cost, pinned, [r.row_id for r in sub], description)


# --- scoring -------------------------------------------------------------------------------

@dataclass
class Scored:
    rows: list[PublishedRow]
    fit: PublishedFit
    split: list[str]  # "train", "test" or "skipped" per row
    batch: np.ndarray
    bound: np.ndarray  # pure roofline prediction (nan for skipped)
    calibrated: np.ndarray  # with the fitted parameters (nan for skipped)
    flops: np.ndarray  # executed FLOPs of the request (nan for skipped)
    bytes: np.ndarray  # bytes moved by the request (nan for skipped)

    def measured_request_s(self, i: int) -> float:
        """The measured time of row i's whole request (throughput: batch x G / value)."""
        r = self.rows[i]
        if r.metric == "request_time_s":
            return r.value
        if r.metric == "throughput_tokens_per_s":
            return self.batch[i] * r.generated_tokens / r.value
        return math.nan

    def frame(self):
        import pandas as pd

        recs = []
        for i, r in enumerate(self.rows):
            recs.append({
                "row": r.row_id, "source": r.source, "model": r.model, "kind": r.kind,
                "hardware": r.hardware, "implementation": r.implementation,
                "setting": r.setting, "metric": r.metric, "split": self.split[i],
                "batch": self.batch[i], "measured": r.value, "bound": self.bound[i],
                "calibrated": self.calibrated[i],
                "error_calibrated_pct": 100 * (self.calibrated[i] / r.value - 1),
                "error_bound_pct": 100 * (self.bound[i] / r.value - 1),
                "bound_violation": _violates(r.metric, self.bound[i], r.value),
                "flops": self.flops[i], "bytes": self.bytes[i],
                "attained_flops_per_s": self.flops[i] / self.measured_request_s(i),
                "skip": r.skip, "notes": r.notes,
            })
        return pd.DataFrame(recs)


def _violates(metric: str, bound: float, measured: float) -> bool:
    """The roofline is an upper bound on throughput and a lower bound on times: a violation is
    a measured throughput above it (or a measured time below it)."""
    if math.isnan(bound) or metric not in FITTED_METRICS:
        return False
    return measured > bound if metric in HIGHER_IS_FASTER else measured < bound


def score(rows: list[PublishedRow], fit: PublishedFit, split: list[str]) -> Scored:
    usable = [i for i, r in enumerate(rows) if not r.skip]
    batch = np.full(len(rows), np.nan)
    bound = np.full(len(rows), np.nan)
    cal = np.full(len(rows), np.nan)
    flops = np.full(len(rows), np.nan)
    nbytes = np.full(len(rows), np.nan)
    if usable:
        pred = PublishedPredictor([rows[i] for i in usable])
        batch[usable] = pred.batch
        bound[usable] = pred.predict()
        cal[usable] = pred.predict(fit.params)
        flops[usable], nbytes[usable] = pred.counts()
    return Scored(rows, fit, split, batch, bound, cal, flops, nbytes)


def fit_and_score(files: list[str | Path], fit_files: list[str | Path] | None = None,
                  seed: int = DEFAULT_SEED, implementation: str | None = None) -> Scored:
    """`--fit` rows (all of them train) and FILES (all held out), or FILES split by seed."""
    if fit_files:
        fit_set = {str(Path(f).resolve()) for f in fit_files}
        train_rows = load(list(fit_files), implementation)
        rest = [f for f in files if str(Path(f).resolve()) not in fit_set]
        if not rest:
            raise UserError("published: every FILE is also a --fit file; nothing is held out")
        scored_rows = load(rest, implementation)
        rows = train_rows + scored_rows
        train = list(range(len(train_rows)))
        test = [len(train_rows) + i for i, r in enumerate(scored_rows) if not r.skip]
        desc = (f"fitted on every row of {', '.join(Path(f).name for f in fit_files)}; "
                "the other files held out")
    else:
        rows = load(list(files), implementation)
        train, test = split_rows(rows, seed)
        desc = (f"fitted on a seeded (seed {seed}) stratified two-thirds of the rows; a third "
                "of every (source, metric, kind, setting) stratum held out")
    fit = fit_rows(rows, train, desc)
    test_set, train_set = set(test), set(train)
    split = ["skipped" if r.skip else "test" if i in test_set else
             "train" if i in train_set else "skipped" for i, r in enumerate(rows)]
    return score(rows, fit, split)


def mape_by(df, keys: tuple[str, ...] = ("source", "metric")) -> list[dict[str, Any]]:
    """Held-out MAPE (calibrated and bound) per group, with point counts."""
    out = []
    test = df[df["split"] == "test"]
    for key, part in test.groupby(list(keys), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append(dict(zip(keys, key, strict=True)) | {
            "points": len(part),
            "mape_calibrated_pct": float(part["error_calibrated_pct"].abs().mean()),
            "mape_bound_pct": float(part["error_bound_pct"].abs().mean())})
    return out


def calibration_record(scored: Scored, heldout_mape_pct: dict[str, float]) -> Any:
    """A `costmodel.calibration.CalibrationRecord` refitted on EVERY usable row of the scored
    files (the stored default uses all the data; the held-out errors quoted are those of the
    split run). All fitted rows must share one device and one profile."""
    from costmodel.calibration import CalibrationRecord
    from costmodel.hardware import Efficiency

    usable = [i for i, r in enumerate(scored.rows)
              if not r.skip and r.metric in FITTED_METRICS]
    pairs = {(scored.rows[i].hardware, scored.rows[i].implementation) for i in usable}
    if len(pairs) != 1:
        raise UserError("--save-calibration: the fitted rows must share one hardware and one "
                        f"implementation, got {sorted(pairs)}")
    hw_id, impl = pairs.pop()
    fit = fit_rows(scored.rows, usable, "all rows")
    files = sorted({Path(scored.rows[i].file).name for i in usable})
    return CalibrationRecord(
        id=f"{hw_id}/{impl}", hardware=hw_id, implementation=impl,
        efficiency=Efficiency(**fit.params, source=f"fitted on {', '.join(files)}"),
        fitted_on=files, sources=sorted({scored.rows[i].source for i in usable}),
        method=("bounded least squares on log(predicted/measured) of the five CPU-calibration "
                "parameters (validation.calibrate.fit_params) over every time and throughput "
                "row"),
        train_points=len(usable), heldout_mape_pct=heldout_mape_pct,
        notes=("at a bound: " + ", ".join(fit.pinned)) if fit.pinned else "")
