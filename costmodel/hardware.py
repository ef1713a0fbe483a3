"""What a device can do: datasheet peaks, efficiencies and measured overrides (docs/design.md idea 4).

A `Hardware` record holds the vendor's **dense** peaks (never the 2:4-sparse numbers NVIDIA
prints; `sparsity_factor` only records that sparsity exists), memory bandwidth in decimal GB/s
as printed, the printed capacity with its unit, and the interconnect **per direction** (the
printed NVLink figure is a bidirectional total). Figures and their sources come from the
project's research note docs/hardware.md (sections 1-3); each record cites them by tag (S1...).

The roofline reads three rates, all SI:

- ``compute_flops_per_s(dtype)``: (measured matmul rate if the record has one for `dtype`, else
  the datasheet peak) x ``efficiency.matmul``;
- ``bandwidth_bytes_per_s()``: (measured bandwidth if present, else the datasheet figure)
  x ``efficiency.bandwidth``;
- ``ridge_point(dtype)``: their ratio, the critical arithmetic intensity in FLOP/byte.

Measured overrides take priority over efficiencies' base, as in llm-analysis's
``achieved_tflops`` (docs/hardware.md 3, S25). The default database entries carry no measured block
and efficiencies of 1.0 (pure roofline); ``*-measured`` entries carry the test machine's figures.

Capacity units (docs/hardware.md 1): vendors print "GB" for HBM and GDDR parts whose capacity is
really close to GiB (an "80 GB" H100 shows 79.6 GiB = 85.5e9 bytes). Records store the printed
number with ``memory_capacity_unit="GiB"``, so ``capacity_bytes()`` multiplies by 2**30; a
record whose vendor means decimal gigabytes says ``"GB"`` (x 1e9).

The database is ``costmodel/data/hardware.json`` plus every ``*.json`` record (one `Hardware`
each) in the directory named by ``BLOCKROOF_HARDWARE_DIR``, where validation writes measured
records. `load_database` is cached: call ``load_database.cache_clear()`` after changing that
variable (`save_hardware` clears it itself).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, ValidationError, model_validator

from costmodel.implementation import ComputeDtype

from .errors import UserError, read_json, write_atomic

DATA_PATH = Path(__file__).parent / "data" / "hardware.json"
HARDWARE_DIR_ENV = "BLOCKROOF_HARDWARE_DIR"

DTYPES: tuple[str, ...] = get_args(ComputeDtype)  # "fp32", "tf32", "bf16", "fp16", "fp8", "int8"

# Finite: an infinite rate or overhead means nothing (docs/reliability.md).
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
# Lower case so that lookup can be case-insensitive; dashes as in "h100-sxm-80gb".
HardwareId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]


class PeakFlops(BaseModel, frozen=True, extra="forbid"):
    """Dense datasheet peaks per dtype, TFLOP/s (TOP/s for int8); None = unsupported/unpublished.

    fp32 is the vector (CUDA-core) FMA rate; tf32 the tensor-core path PyTorch uses for fp32
    matmuls only when allowed (docs/hardware.md 1). bf16/fp16 on GeForce parts are the FP32-accumulate
    figures, which is what PyTorch uses (docs/hardware.md 1, RTX 4090).
    """

    fp32_TFLOPs: PositiveFloat | None = None
    tf32_TFLOPs: PositiveFloat | None = None
    bf16_TFLOPs: PositiveFloat | None = None
    fp16_TFLOPs: PositiveFloat | None = None
    fp8_TFLOPs: PositiveFloat | None = None
    int8_TOPs: PositiveFloat | None = None

    def tera(self, dtype: str) -> float | None:
        """The peak for `dtype` in TFLOP/s (TOP/s for int8), None where not supported."""
        _check_dtype(dtype)
        return getattr(self, "int8_TOPs" if dtype == "int8" else f"{dtype}_TFLOPs")


class Efficiency(BaseModel, frozen=True, extra="forbid"):
    """Fractions of the peak rates achieved, and fixed overheads (calibrated by validation).

    Defaults are the pure roofline. Typical achieved values (docs/hardware.md 3): large bf16 GEMMs
    0.78-0.87 of peak on A100/H100/H200/B200; streaming copies ~0.9 of HBM bandwidth.
    """

    matmul: Fraction = Field(default=1.0, description="fraction of the compute rate achieved")
    bandwidth: Fraction = Field(default=1.0, description="fraction of memory bandwidth achieved")
    overlap: float = Field(
        default=1.0, ge=0, le=1, allow_inf_nan=False,
        description="how far an op's compute and memory time overlap: 1 takes the larger "
        "(roofline), 0 their sum (costmodel.roofline)",
    )
    kernel_overhead_s: float = Field(default=0.0, ge=0, allow_inf_nan=False,
                                     description="fixed time per kernel launch")
    forward_overhead_s: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, description="fixed time per model forward call"
    )
    generate_call_overhead_s: float = Field(
        default=0.0, ge=0, description="fixed time per HF generate() call (docs/published.md 1)"
    )
    source: str = "pure roofline (no calibration)"


class Measured(BaseModel, frozen=True, extra="forbid"):
    """Achievable rates measured by a micro-benchmark (matmul TFLOP/s per dtype, copy GB/s).

    Bandwidth counts bytes read plus bytes written, in decimal GB/s.
    """

    matmul_TFLOPs: dict[ComputeDtype, PositiveFloat] = Field(default_factory=dict)
    memory_bandwidth_GBps: PositiveFloat | None = None
    device_name: str = Field(min_length=1, description="as the runtime reports it")
    torch_version: str | None = None
    date: str = Field(min_length=1)
    notes: str = ""

    @model_validator(mode="after")
    def _check_something_measured(self) -> Measured:
        if not self.matmul_TFLOPs and self.memory_bandwidth_GBps is None:
            raise UserError(
                "measured: give at least one of matmul_TFLOPs or memory_bandwidth_GBps"
            )
        return self

    def __hash__(self) -> int:  # the dict field defeats pydantic's frozen hash
        return hash(self.model_dump_json())


class Hardware(BaseModel, frozen=True, extra="forbid"):
    """One device (one GPU, one TPU chip, one SoC) as the roofline sees it; see module docstring."""

    id: HardwareId
    name: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    kind: Literal["gpu", "tpu", "cpu", "soc"]
    peak: PeakFlops
    memory_bandwidth_GBps: PositiveFloat = Field(description="decimal GB/s, as vendors print")
    memory_capacity_GB: PositiveFloat = Field(
        description="as printed; unit in memory_capacity_unit"
    )
    memory_capacity_unit: Literal["GB", "GiB"] = "GiB"
    l2_cache_MB: PositiveFloat | None = None
    interconnect_GBps_per_direction: PositiveFloat | None = Field(
        default=None, description="device-to-device, one direction (half the NVLink printed total)"
    )
    interconnect_latency_us: PositiveFloat | None = Field(
        default=None, description="latency per step of a ring collective, microseconds "
        "(docs/parallelism.md 3; NCCL's tuning model)"
    )
    tdp_W: PositiveFloat | None = None
    sparsity_factor: float = Field(
        default=1.0, ge=1.0, description="2.0 where 2:4 sparsity exists; never applied to peaks"
    )
    efficiency: Efficiency = Efficiency()
    measured: Measured | None = None
    sources: list[str] = Field(min_length=1, description="citation tags/URLs (docs/hardware.md 6)")
    notes: str = ""

    def __hash__(self) -> int:
        # Hashable like the specs (usable as a cache key) despite its list and dict fields;
        # equal records dump to equal JSON.
        return hash(self.model_dump_json())

    # ---- rates the roofline uses (SI units) ----

    def supported_dtypes(self) -> list[str]:
        """Dtypes with a datasheet peak or a measured matmul rate."""
        measured = self.measured.matmul_TFLOPs if self.measured else {}
        return [d for d in DTYPES if self.peak.tera(d) is not None or d in measured]

    def peak_flops_per_s(self, dtype: str) -> float:
        """Dense datasheet peak for `dtype`, FLOP/s (OP/s for int8)."""
        tera = self.peak.tera(dtype)
        if tera is None:
            peaks = [d for d in DTYPES if self.peak.tera(d) is not None]
            raise UserError(
                f"hardware {self.id!r} ({self.name}): no dense {dtype} peak "
                f"(unsupported or unpublished); datasheet peaks exist for: "
                f"{', '.join(peaks) or 'none (bandwidth-bound estimates only)'}"
            )
        return tera * 1e12

    def compute_flops_per_s(self, dtype: str) -> float:
        """Achievable matmul rate: (measured for `dtype` if present, else peak) x efficiency.matmul."""
        _check_dtype(dtype)
        if self.measured is not None and dtype in self.measured.matmul_TFLOPs:
            base = self.measured.matmul_TFLOPs[dtype] * 1e12  # type: ignore[index]
        elif self.peak.tera(dtype) is not None:
            base = self.peak_flops_per_s(dtype)
        else:
            raise UserError(
                f"hardware {self.id!r} ({self.name}): no compute rate for dtype {dtype!r} "
                f"(no dense datasheet peak and no measured value); supported dtypes: "
                f"{', '.join(self.supported_dtypes()) or 'none (add a measured matmul rate)'}"
            )
        return base * self.efficiency.matmul

    def bandwidth_bytes_per_s(self) -> float:
        """Achievable memory bandwidth: (measured if present, else datasheet) x efficiency.bandwidth."""
        gbps = self.memory_bandwidth_GBps
        if self.measured is not None and self.measured.memory_bandwidth_GBps is not None:
            gbps = self.measured.memory_bandwidth_GBps
        return gbps * 1e9 * self.efficiency.bandwidth

    def capacity_bytes(self) -> float:
        """Memory capacity in bytes (GiB -> x 2**30, GB -> x 1e9)."""
        scale = 2.0**30 if self.memory_capacity_unit == "GiB" else 1e9
        return self.memory_capacity_GB * scale

    def ridge_point(self, dtype: str = "bf16") -> float:
        """Critical arithmetic intensity, FLOP/byte: above it a kernel is compute-bound."""
        return self.compute_flops_per_s(dtype) / self.bandwidth_bytes_per_s()

    def with_efficiency(self, **changes: Any) -> Hardware:
        """A re-validated copy with some `Efficiency` fields changed (e.g. matmul=0.8)."""
        efficiency = self.efficiency.model_dump() | changes
        return type(self).model_validate(self.model_dump() | {"efficiency": efficiency})


# ---- errors ----


class UnknownHardwareError(UserError):
    """An id that is not in the database; the message lists close matches and the known ids."""

    def __init__(self, hardware_id: str, known: list[str]):
        key = hardware_id.strip().lower()
        close = [k for k in known if key and key in k]
        close += [k for k in difflib.get_close_matches(key, known, n=3) if k not in close]
        self.id = hardware_id
        self.suggestions = close
        self.known = known
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(
            f"hardware: unknown id {hardware_id!r}{hint} (known ids: {', '.join(known)})"
        )


class HardwareDataError(UserError):
    """A malformed record in a hardware JSON file; names the file, the entry id and the fields.

    ``errors`` holds pydantic's structured errors (``loc``, ``type``, ``msg``) for display.
    """

    def __init__(self, where: str, errors: list[dict[str, Any]] | None = None, detail: str = ""):
        self.where = where
        self.errors = errors or []
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}"
                 + (f" (got {e['input']!r})" if isinstance(e.get("input"), int | float) else "")
                 for e in self.errors]
        super().__init__("; ".join([f"hardware: {where}: {detail or 'invalid record'}", *parts]))


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise UserError(f"hardware: unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")


# ---- loading and saving ----


def _validate_record(record: Any, where: str) -> Hardware:
    if not isinstance(record, dict):
        raise HardwareDataError(
            where, detail=f"expected a JSON object, got {type(record).__name__}"
        )
    rid = record.get("id")
    label = f"{where}, entry {rid!r}" if rid is not None else f"{where}, entry without id"
    try:
        return Hardware.model_validate(record)
    except ValidationError as e:
        raise HardwareDataError(label, e.errors(include_url=False)) from e


def _read_json(path: Path) -> Any:
    try:
        return read_json(path, "hardware")
    except UserError as e:
        raise HardwareDataError(str(path), detail=str(e).removeprefix(f"hardware: {path} ")) \
            from None


def load_hardware_file(path: str | Path) -> Hardware:
    """One `Hardware` record from a JSON file (as `save_hardware` writes it)."""
    path = Path(path)
    return _validate_record(_read_json(path), str(path))


def _add(db: dict[str, Hardware], hw: Hardware, where: str, origin: dict[str, str]) -> None:
    if hw.id in db:
        raise HardwareDataError(
            where, detail=f"duplicate id {hw.id!r} (already defined in {origin[hw.id]})"
        )
    db[hw.id] = hw
    origin[hw.id] = where


@functools.lru_cache(maxsize=1)
def load_database() -> dict[str, Hardware]:
    """All known devices by id: the packaged database, then $BLOCKROOF_HARDWARE_DIR/*.json.

    Cached; the returned dict is shared, so do not modify it. A missing directory counts as empty.
    """
    db: dict[str, Hardware] = {}
    origin: dict[str, str] = {}
    data = _read_json(DATA_PATH)
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise HardwareDataError(str(DATA_PATH), detail='expected {"devices": [...]}')
    for i, record in enumerate(data["devices"]):
        where = f"{DATA_PATH.name}[{i}]"
        _add(db, _validate_record(record, where), where, origin)
    extra_dir = os.environ.get(HARDWARE_DIR_ENV)
    if extra_dir:
        directory = Path(extra_dir)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(
                f"hardware: {HARDWARE_DIR_ENV}={extra_dir!r} is not a directory"
            )
        for path in sorted(directory.glob("*.json")):
            _add(db, load_hardware_file(path), str(path), origin)
    return db


def hardware_ids() -> list[str]:
    """Known ids, packaged database order first, then extra records by file name."""
    return list(load_database())


def get_hardware(id_or_path: str | Path | Hardware) -> Hardware:
    """A device by id (case-insensitive), a path to a JSON record, or a `Hardware` (returned as is)."""
    if isinstance(id_or_path, Hardware):
        return id_or_path
    if isinstance(id_or_path, Path):
        return load_hardware_file(id_or_path)
    if not isinstance(id_or_path, str):
        raise UserError(f"hardware: expected an id, a record .json path or a Hardware, got "
                        f"{type(id_or_path).__name__} {id_or_path!r}")
    db = load_database()
    key = id_or_path.strip().lower()
    if key in db:
        return db[key]
    if id_or_path.endswith(".json") or Path(id_or_path).is_file():
        return load_hardware_file(id_or_path)
    raise UnknownHardwareError(id_or_path, list(db))


def save_hardware(hw: Hardware, path: str | Path) -> Path:
    """Write `hw` as JSON atomically (temp file in the same directory, then os.replace).

    `path` may be a directory, in which case the file is ``<path>/<hw.id>.json``. Returns the
    path written. Clears the `load_database` cache, since the file may be one of its records.
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"{hw.id}.json"
    write_text_atomic(path, json.dumps(hw.model_dump(mode="json"), indent=2) + "\n")
    load_database.cache_clear()
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` whole or not at all (`costmodel.errors.write_atomic`: a temporary file,
    fsync, os.replace; removed on failure), creating the directory first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(text))
