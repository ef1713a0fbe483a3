"""Measurement suites: which points `validation.measure` times (issue 4).

A `Point` names a preset (optionally re-blocked to another block length), a profile, a phase
(`validation.predict.PHASE_METRIC`), a batch and lengths. Suites:

- ``tiny``: a handful of fp32 CPU points that run in seconds (CI exercises the whole pipeline).
- ``cpu``: >= 24 fp32 points over vanilla and block presets small enough for 2 cores: several
  batches, contexts and block lengths, both profiles; one thread (see `cpu`); ~5-10 minutes.
- ``cpu-quant``: int8 / int4-g32 weight-only linears and an int8 KV cache beside fp32 twins.
- ``gpu-quant``: bf16 vs int8 weights and KV cache, decode steps (for a lent GPU).
- ``gpu``: bf16 on one H100: vanilla_160, vanilla_410, block_main_b4_85, block_main_b4_1.2b,
  per-phase timings at several batches and contexts, then generation at the paper's two
  settings (docs/model.md 5.1) at the largest batch that fits, while the time budget lasts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from costmodel.errors import UserError
from costmodel.presets import get_preset, with_block_length
from costmodel.spec import BlockSpec, VanillaSpec

PHASES = ("prefill", "decode_step", "generate")


@dataclass(frozen=True)
class Point:
    model: str  # preset name
    phase: str
    batch: int | str  # a batch, or "max" (largest that fits; GPU)
    prompt_tokens: int = 0  # prefill: S; decode_step: the cached context; generate: S
    generated_tokens: int = 1  # generate: G
    profile: str = "static"
    block_length: int | None = None  # re-block a block preset (None: the preset's)
    repeats: int | None = None  # None: the suite's default for the phase
    weight_dtype: str | None = None  # quantised linears (docs/precision.md); None: the dtype
    kv_dtype: str | None = None  # "int8": quantised KV cache; None: the dtype

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise UserError(f"phase: unknown {self.phase!r} (known: {', '.join(PHASES)})")
        if self.batch != "max" and (not isinstance(self.batch, int) or self.batch < 1):
            raise UserError(f"batch: expected a whole number >= 1 or 'max', got {self.batch!r}")
        if self.prompt_tokens < 1 or self.generated_tokens < 1:
            raise UserError("prompt_tokens, generated_tokens: must be >= 1")

    def spec(self) -> VanillaSpec | BlockSpec:
        spec = get_preset(self.model)
        if self.block_length is not None:
            if not isinstance(spec, BlockSpec):
                raise UserError(f"block_length: {self.model} is not a block model")
            if self.block_length != spec.block_length:
                spec = with_block_length(spec, self.block_length)
        return spec

    def recorded_generated_tokens(self, spec: VanillaSpec | BlockSpec) -> int:
        """``generated_tokens`` as a dataset record holds it (what `validation.predict` reads):
        G for generate, one block (L_B) for a block model's decode step, else 1."""
        if self.phase == "generate":
            return self.generated_tokens
        return spec.block_length if self.phase == "decode_step" and \
            isinstance(spec, BlockSpec) else 1

    def fields(self) -> dict[str, object]:
        """The defining fields (for the point id)."""
        out: dict[str, object] = {
            "model": self.spec().name, "phase": self.phase, "batch": self.batch,
            "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
            "profile": self.profile}
        # only when set, so that the ids of dense points do not change
        return out | {k: v for k, v in (("weight_dtype", self.weight_dtype),
                                        ("kv_dtype", self.kv_dtype)) if v}


@dataclass(frozen=True)
class Suite:
    name: str
    dtype: str
    points: tuple[Point, ...]
    warmup: int = 1
    repeats: dict[str, int] = field(default_factory=dict)  # per phase; generate: docs/model.md 6.4
    quick_microbench: bool = False
    budget_s: float | None = None  # measuring stops starting new points past this
    threads: int | None = None  # CPU threads (None: torch's default); see `cpu`
    contention_guard: bool = True  # CPU: wait for a quiet machine, re-measure disturbed points

    def repeats_for(self, p: Point) -> int:
        if p.repeats is not None:
            return p.repeats
        if p.phase == "generate" and p.phase not in self.repeats:
            # the paper's rule (docs/model.md 6.4): 10 repeats below 256 total tokens, else 5
            return 10 if p.prompt_tokens + p.generated_tokens < 256 else 5
        return self.repeats.get(p.phase, 5)

    def warmup_for(self, p: Point) -> int:
        """Warm-up calls: one for a whole generation (the paper's protocol, docs/model.md 6.4)."""
        return min(self.warmup, 1) if p.phase == "generate" else self.warmup


def _grid(model: str, phase: str, batches: list[int], lengths: list[int], **kw: object
          ) -> list[Point]:
    return [Point(model, phase, b, n, **kw) for b, n in itertools.product(batches, lengths)]


def tiny() -> Suite:
    pts = [
        Point("vanilla_31", "prefill", 1, 32),
        Point("vanilla_31", "decode_step", 2, 32),
        Point("vanilla_31", "generate", 1, 16, 4),
        Point("block_main_b4_5", "prefill", 1, 32),
        Point("block_main_b4_5", "decode_step", 2, 32),
        Point("block_main_b4_5", "generate", 1, 16, 8),
    ]
    return Suite("tiny", "fp32", tuple(pts), warmup=1,
                 repeats={"prefill": 3, "decode_step": 3, "generate": 2},
                 quick_microbench=True, threads=1, contention_guard=False)


def cpu() -> Suite:
    pts: list[Point] = []
    for m in ("vanilla_31", "vanilla_70"):
        pts += _grid(m, "prefill", [1, 4], [128, 512])
        pts += _grid(m, "decode_step", [1, 8, 32], [128, 1024])
    for lb in (2, 4, 8):
        pts += _grid("block_main_b4_5", "prefill", [4], [512], block_length=lb)
        pts += _grid("block_main_b4_5", "decode_step", [1, 8, 32], [128, 1024], block_length=lb)
    pts += _grid("block_main_b4_19", "prefill", [1, 4], [512])
    pts += _grid("block_main_b4_19", "decode_step", [1, 8], [128, 1024])
    for m in ("vanilla_31", "block_main_b4_5"):  # the hf-legacy profile: eager, concat cache
        pts += _grid(m, "prefill", [4], [512], profile="hf-legacy")
        pts += _grid(m, "decode_step", [1, 8], [512], profile="hf-legacy")
        pts += [Point(m, "generate", 4, 128, 64, profile=p) for p in ("static", "hf-legacy")]
    # One thread: on a 2-core machine shared with other sessions, a 2-thread OpenMP kernel
    # stalls at every barrier whenever another process holds a core (a 384^3 matmul ran up to
    # 20x slower), while a 1-thread run slows by 1.05-1.3x (validation.contention).
    return Suite("cpu", "fp32", tuple(pts), warmup=3,
                 repeats={"prefill": 7, "decode_step": 15, "generate": 3}, threads=1)


def cpu_quant() -> Suite:
    """Quantised points beside their fp32 twins (fp32 activations; docs/precision.md): int8 and
    int4-g32 weight-only linears (torch's packed CPU kernels) and an int8 KV cache, on the
    decode steps where they change the bytes read, plus prefills; one thread, as `cpu`."""
    pts: list[Point] = []
    formats = [(None, None), ("int8", None), ("int4-g32", None), (None, "int8")]
    for w, kv in formats:
        for m in ("vanilla_31", "vanilla_70", "block_main_b4_5", "block_main_b4_19"):
            pts += _grid(m, "decode_step", [1, 8], [128, 1024], weight_dtype=w, kv_dtype=kv)
            pts += _grid(m, "prefill", [1], [256], weight_dtype=w, kv_dtype=kv)
    return Suite("cpu-quant", "fp32", tuple(pts), warmup=3,
                 repeats={"prefill": 5, "decode_step": 11}, threads=1)


GPU_MODELS = ("vanilla_160", "vanilla_410", "block_main_b4_85", "block_main_b4_1.2b")


def gpu() -> Suite:
    pts: list[Point] = []
    for m in GPU_MODELS:
        pts += _grid(m, "prefill", [1, 16], [128, 2048])
        pts += _grid(m, "decode_step", [1, 64, 256], [128, 2048])
    for m in GPU_MODELS:
        pts.append(Point(m, "generate", 8, 2048, 128, repeats=3))
    for m in GPU_MODELS:  # the paper's settings at the largest batch (docs/model.md 5.1, 6.6)
        pts.append(Point(m, "generate", "max", 2048, 128, repeats=2))
    for m in GPU_MODELS:
        pts.append(Point(m, "generate", "max", 128, 2048, repeats=1))
    return Suite("gpu", "bf16", tuple(pts), warmup=2,
                 repeats={"prefill": 10, "decode_step": 20}, budget_s=330.0)


def gpu_quant() -> Suite:
    """bf16 vs int8 weight-only linears and an int8 KV cache on a GPU, decode steps of the
    two paper models of the Compare page. The reference's packed int8 matmul is torch's
    ``_weight_int8pack_mm`` (a CUDA kernel exists for it); int4 needs the CUDA tinygemm layout
    and is left out."""
    pts: list[Point] = []
    for w, kv in ((None, None), ("int8", None), (None, "int8")):
        for m in ("vanilla_410", "block_main_b4_1.2b"):
            pts += _grid(m, "decode_step", [1, 64], [2048], weight_dtype=w, kv_dtype=kv)
    return Suite("gpu-quant", "bf16", tuple(pts), warmup=2, repeats={"decode_step": 20},
                 budget_s=120.0)


SUITES = {"tiny": tiny, "cpu": cpu, "gpu": gpu, "cpu-quant": cpu_quant, "gpu-quant": gpu_quant}


def _shrink(p: Point) -> Point:
    """The same point, small: batch <= 2, prompt <= 32, generated <= 8, one repeat."""
    return replace(p, batch=p.batch if p.batch == "max" else min(int(p.batch), 2),
                   prompt_tokens=min(p.prompt_tokens, 32),
                   generated_tokens=min(p.generated_tokens, 8), repeats=1)


def get_suite(name: str, limit: int | None = None, models: list[str] | None = None,
              smoke: bool = False) -> Suite:
    """A suite by name. For quick end-to-end checks of a big suite on a small machine:
    `models` keeps the points of those presets, `limit` the first N points, `smoke` shrinks
    every point (`_shrink`) and uses the quick micro-benchmarks, no time budget."""
    try:
        suite = SUITES[name]()
    except KeyError:
        raise UserError(f"suite: unknown {name!r} (known: {', '.join(SUITES)})") from None
    points = suite.points
    if models:
        unknown = sorted(set(models) - {p.model for p in points})
        if unknown:
            raise UserError(f"models: {', '.join(unknown)} not in suite {name!r}")
        points = tuple(p for p in points if p.model in models)
    if smoke:
        points = tuple(dict.fromkeys(_shrink(p) for p in points))
        suite = replace(suite, warmup=1, quick_microbench=True, budget_s=None,
                        contention_guard=False)
    if limit is not None:
        points = points[:limit]
    return replace(suite, points=points)
