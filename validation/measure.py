"""Timed runs of the reference: per-phase times, memory, max batch; one JSONL record per point.

Protocol (docs/model.md 6, docs/engineering-notes.md "PyTorch measurement"):
- models are built once per spec with random weights (seed 0) in the suite's dtype;
- inputs are drawn on the CPU outside the timed region; for ``generate`` the copy to the
  device happens inside it, and the region is the whole ``generate`` call (docs/model.md 6.2-6.3);
- warm-up calls, then repeats; CUDA events on GPU, ``perf_counter`` on CPU with the thread
  count set explicitly; median and interquartile range (plus mean and std, as the paper);
- ``prefill``/``decode_step`` regions call the reference's phase methods directly (table in
  `validation.predict`); a static cache needs no prefill before a decode step (its work does
  not depend on the cached values), a concat cache is filled by a real prefill, and is put
  back after every timed step so each repeat does the same work;
- memory: CUDA, the allocator's peak over the timed calls; CPU, one more untimed call under
  tensor accounting (`validation.memory`);
- on a shared CPU, `validation.contention.ContentionGuard` waits for a quiet machine before a
  point and measures it again (up to twice) when other processes slowed it or its spread is
  large; the attempt with the lowest median is kept, every attempt's median is recorded;
- ``batch="max"``: the paper's batch-size search (docs/model.md 6.6) with an OOM-safe probe, then
  a timed ``generate`` at the largest batch found.

Every point is appended to the dataset (`validation.dataset`) as soon as it is measured, with
its environment, its spec and the uncalibrated prediction (the measured hardware record,
efficiencies 1, no overheads); points that fail (OOM, errors) or are skipped for time go to
``skipped.json``. Points already in either are not measured again (resume).
"""

from __future__ import annotations

import gc
import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from costmodel.api import estimate
from costmodel.api import max_batch as predicted_max_batch
from costmodel.errors import UserError
from costmodel.hardware import Hardware
from costmodel.implementation import get_implementation
from costmodel.spec import BlockSpec, VanillaSpec
from costmodel.workload import Workload
from reference import BlockLM, VanillaLM, build_model
from reference.kv_cache import KVCache
from reference.quantize import quantize_kv_cache, quantize_model

from .contention import ContentionGuard
from .dataset import append_record, point_id, read_dataset, write_json_atomic
from .env import environment
from .memory import peak_memory
from .microbench import TORCH_DTYPE
from .predict import PHASE_METRIC, predict_record, roofline_counts
from .suites import Point, Suite
from .timing import synchronize, time_call

GiB = 2**30
RESERVE_BYTES = 2 * GiB  # the paper's search stops with < 2 GiB free (docs/model.md 6.6)
SLOWDOWN = 4.0  # budget estimates: measured / uncalibrated roofline on a CPU, generously
SLOWDOWN_CUDA = 2.5  # the same on a GPU (large-batch steps run near the roofline)
EAGER_LAYER_S = 3e-4  # budget estimates: eager PyTorch time of one layer forward
NOISY_SPREAD = 0.25  # interquartile range / median above which a CPU point is re-measured


# --- regions -------------------------------------------------------------------------------

@dataclass
class Region:
    """What is timed (`fn`), what runs around each call untimed (`before`, `after`)."""

    fn: Callable[[], Any]
    before: Callable[[], Any] | None = None
    after: Callable[[], Any] | None = None


def _caches(model: torch.nn.Module) -> list[KVCache]:
    return [m for m in model.modules() if isinstance(m, KVCache)]


def _restorer(model: torch.nn.Module) -> Callable[[], None]:
    """Puts every cache's k and v tensors back as they are now (concat growth undone)."""
    saved = [(c, c.k, c.v) for c in _caches(model)]

    def restore() -> None:
        for c, k, v in saved:
            c.k, c.v = k, v

    return restore


def _ids(vocab: int, batch: int, length: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)  # on the CPU (docs/model.md 6.2)


def region(model: VanillaLM | BlockLM, spec: VanillaSpec | BlockSpec, p: Point, batch: int,
           device: str) -> Region:
    """The timed region of point `p` at `batch` (module docstring; `validation.predict`)."""
    mode, s, v = p.profile, p.prompt_tokens, spec.vocab_size
    if p.phase == "generate":
        ids_cpu = _ids(v, batch, s, 1)
        g = p.generated_tokens
        return Region(lambda: model.generate(ids_cpu.to(device), g, mode=mode))  # type: ignore[arg-type]
    if isinstance(model, VanillaLM):
        if p.phase == "prefill":
            ids = _ids(v, batch, s, 1).to(device)
            model.setup_inference(batch, s, mode)  # type: ignore[arg-type]
            return Region(lambda: model.prefill(ids))
        c = s  # decode_step after c cached entries
        model.setup_inference(batch, c + 1, mode)  # type: ignore[arg-type]
        if mode != "static":
            model.prefill(_ids(v, batch, c, 1).to(device))
        tok = _ids(v, batch, 1, 2).to(device)
        return Region(lambda: model.decode_step(tok, c), after=_restorer(model))
    assert isinstance(model, BlockLM) and isinstance(spec, BlockSpec)
    lb, pl = spec.block_length, spec.prefix_length
    if p.phase == "prefill":
        ids = model.pad_prompt(_ids(v, batch, s, 1)).to(device)
        model.setup_inference(batch, math.ceil(s / lb), 1, mode)  # type: ignore[arg-type]

        def first_token() -> Tensor:
            return model.token_prefix(model.block_decode(model.embed(ids), 0))

        return Region(first_token)
    if s % lb:
        raise UserError(f"prompt_tokens: a block decode step needs a context that is a "
                         f"multiple of L_B={lb}, got {s}")
    n_p = s // lb
    model.setup_inference(batch, n_p, 2, mode)  # type: ignore[arg-type]
    if mode != "static":
        model.block_decode(model.embed(_ids(v, batch, s, 1).to(device)), 0)
    block = _ids(v, batch, lb, 2).to(device)
    tok = block[:, :1]

    def one_block() -> None:
        ctx = model.block_decode(model.embed(block), n_p)
        model.token_prefix(ctx)
        for k in range(2, lb + 1):
            model.token_step(tok, pl + k - 2)

    return Region(one_block, after=_restorer(model))


def release(model: torch.nn.Module) -> None:
    for c in _caches(model):
        c.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- max batch (docs/model.md 6.6) -----------------------------------------------------------------

def round_batch(b: int) -> int:
    """The paper's rounding of a search candidate (docs/model.md 6.6.2.3)."""
    for lo, step in ((2048, 256), (512, 64), (128, 16), (32, 4)):
        if b >= lo:
            return max(lo, int(round(b / step)) * step)
    return b


@dataclass
class SearchResult:
    batch: int
    trials: dict[int, int | None] = field(default_factory=dict)  # batch -> peak bytes or OOM


def search_max_batch(probe: Callable[[int], int | None], total_bytes: float,
                     reserve_bytes: float = RESERVE_BYTES, max_trials: int = 12,
                     deadline: float | None = None) -> SearchResult:
    """The paper's search (docs/model.md 6.6): B = 1, 2, then the memory-per-sample slope between
    the smallest and largest successful batch, an upper bound (the smallest OOM, or the slope's
    extrapolation to the device memory), the rounded midpoint, until < `reserve_bytes` is free
    or the candidate repeats. `probe(b)` returns the peak bytes of batch b, or None on OOM."""
    trials: dict[int, int | None] = {}
    for b in (1, 2):
        trials[b] = probe(b)
        if trials[b] is None:
            return SearchResult(b - 1, trials)
    while len(trials) < max_trials and (deadline is None or time.monotonic() < deadline):
        ok = sorted(b for b, m in trials.items() if m is not None)
        bad = sorted(b for b, m in trials.items() if m is None)
        b1, lo = ok[-1], ok[0]
        m1 = trials[b1]
        assert m1 is not None
        if total_bytes - m1 < reserve_bytes:
            break
        m_lo = trials[lo]
        assert m_lo is not None
        slope = (m1 - m_lo) / (b1 - lo) if b1 > lo else 0.0
        if slope <= 0:
            slope = 0.1 * GiB
        b2 = bad[0] if bad else b1 + int((total_bytes - m1) // slope)
        cand = round_batch((b1 + b2) // 2)
        if cand >= b2 or cand <= b1:
            break
        trials[cand] = probe(cand)
    return SearchResult(max(b for b, m in trials.items() if m is not None), trials)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


# --- the runner -----------------------------------------------------------------------------

class Runner:
    """Builds models (one at a time), times points and writes records."""

    def __init__(self, suite: Suite, device: str, hardware: Hardware, out_dir: Path,
                 memory_capacity_bytes: float | None = None, progress: bool = True,
                 dtype: str | None = None) -> None:
        self.suite, self.device, self.hw = suite, device, hardware
        self.dtype = dtype or suite.dtype
        self.out_dir = Path(out_dir)
        self.dataset = self.out_dir / "dataset.jsonl"
        self.skipped_path = self.out_dir / "skipped.json"
        if memory_capacity_bytes:
            self.capacity = float(memory_capacity_bytes)
        elif device.startswith("cuda"):  # what the allocator can use, not the datasheet's
            self.capacity = float(torch.cuda.get_device_properties(device).total_memory)
        else:
            self.capacity = hardware.capacity_bytes()
        self.progress = progress
        self.guard = ContentionGuard(device if suite.contention_guard else "off")
        self._key: Any = None
        self._model: VanillaLM | BlockLM | None = None
        self.warnings: list[str] = []

    # models
    def model(self, spec: VanillaSpec | BlockSpec, p: Point | None = None) -> VanillaLM | BlockLM:
        formats = (p.weight_dtype, p.kv_dtype) if p is not None else (None, None)
        key = (spec.model_dump_json(), formats)
        if key != self._key:
            self._model = None  # free the previous model first
            release(torch.nn.Module())
            self._model = build_model(spec, device=self.device, dtype=TORCH_DTYPE[self.dtype],
                                      seed=0)
            if formats[0]:  # quantised from the full-precision weights (docs/precision.md 2)
                quantize_model(self._model, self._impl(p).weight_dtype)
            quantize_kv_cache(self._model, formats[1] or "")
            self._key = key
        assert self._model is not None
        return self._model

    # ids and skips
    def point_key(self, p: Point) -> str:
        return point_id(p.fields() | {"suite": self.suite.name, "device": self.hw.id,
                                      "dtype": self.dtype})

    def _skipped(self) -> dict[str, Any]:
        if self.skipped_path.exists():
            try:
                return json.loads(self.skipped_path.read_text())
            except ValueError:
                self.warnings.append(f"{self.skipped_path}: not JSON; starting a new list")
        return {}

    def _skip(self, key: str, p: Point, reason: str) -> None:
        skipped = self._skipped()
        skipped[key] = {"point": p.fields(), "reason": reason}
        write_json_atomic(self.skipped_path, skipped)

    # one point
    def _timed(self, model: Any, spec: Any, p: Point, batch: int) -> dict[str, Any]:
        reg = region(model, spec, p, batch, self.device)
        cuda = self.device.startswith("cuda")
        if cuda:  # the peak over the timed calls themselves (each does the same work)
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats()
        timing = time_call(reg.fn, self.device, warmup=self.suite.warmup_for(p),
                           repeats=self.suite.repeats_for(p), before=reg.before, after=reg.after)
        if cuda:
            mem = {"memory_method": "cuda allocator",
                   "peak_allocated_bytes": int(torch.cuda.max_memory_allocated()),
                   "peak_reserved_bytes": int(torch.cuda.max_memory_reserved())}
        else:  # tensor accounting slows every op: one more, untimed call

            def once() -> None:
                reg.fn()
                if reg.after:
                    reg.after()

            mem = peak_memory(once, self.device, model)
        return timing.summary() | mem

    def _probe(self, model: Any, spec: Any, p: Point) -> Callable[[int], int | None]:
        """Peak bytes of a request at batch b, or None if it does not fit (`probe_region`)."""

        def probe(b: int) -> int | None:
            try:
                mem = peak_memory(probe_region(model, spec, p, b, self.device), self.device,
                                  model)
            except Exception as e:  # noqa: BLE001 - OOM is an outcome here
                if not _is_oom(e):
                    raise
                return None
            finally:
                release(model)
            peak = mem["peak_allocated_bytes"]
            return None if peak > self.capacity else peak

        return probe

    def measure(self, p: Point, deadline: float | None = None) -> dict[str, Any]:
        spec = p.spec()
        model = self.model(spec, p)
        extra: dict[str, Any] = {}
        batch = p.batch
        if batch == "max":
            impl = self._impl(p)
            wl = Workload(prompt_tokens=p.prompt_tokens, generated_tokens=p.generated_tokens,
                          memory_reserve_bytes=RESERVE_BYTES)
            extra["predicted_max_batch"] = predicted_max_batch(spec, self.capacity, wl, impl)
            found = search_max_batch(self._probe(model, spec, p), self.capacity,
                                     deadline=deadline)
            extra["max_batch_search"] = {str(b): m for b, m in sorted(found.trials.items())}
            if found.batch < 1:
                raise MemoryError("batch 1 does not fit")
            batch = found.batch
        attempts: list[dict[str, Any]] = []
        try:
            for _ in range(1 + (self.guard.retries if self.guard.enabled else 0)):
                before = self.guard.wait_quiet()
                try:
                    res = self._timed(model, spec, p, int(batch))
                except Exception as e:  # noqa: BLE001
                    if p.batch != "max" or not _is_oom(e) or batch <= 1:
                        raise
                    # the whole request needed a little more than its probe: 10% fewer
                    release(model)
                    batch = max(1, int(int(batch) * 0.9))
                    extra["max_batch_reduced_after_oom"] = batch
                    res = self._timed(model, spec, p, int(batch))
                after = self.guard.ratio()
                attempts.append(res | {"contention_before": round(before, 3),
                                       "contention_after": round(after, 3)})
                noisy = res["spread_s"] > NOISY_SPREAD * res["measured_s"]
                if max(before, after) <= self.guard.threshold and not noisy:
                    break
        finally:
            release(model)
        best = min(attempts, key=lambda a: a["measured_s"])  # contention only adds time
        best = best | {"attempts": len(attempts),
                       "attempt_medians_s": [a["measured_s"] for a in attempts]}
        return self.record(p, spec, int(batch), best | extra)

    def _impl(self, p: Point) -> Any:
        """The point's profile in the suite's dtype, with its weight and KV formats."""
        return get_implementation(p.profile, dtype=self.dtype,  # type: ignore[arg-type]
                                  weight_dtype=p.weight_dtype, kv_dtype=p.kv_dtype)

    def record(self, p: Point, spec: Any, batch: int, res: dict[str, Any]) -> dict[str, Any]:
        impl = self._impl(p)
        block = isinstance(spec, BlockSpec)
        rec: dict[str, Any] = {
            "point_id": self.point_key(p), "suite": self.suite.name,
            "model": spec.name, "preset": p.model, "kind": spec.kind,
            "implementation": p.profile, "phase": p.phase, "metric": PHASE_METRIC[p.phase],
            "device": self.hw.id, "hardware": self.hw.id, "dtype": self.dtype,
            "batch": batch, "max_batch": p.batch == "max",
            "prompt_tokens": p.prompt_tokens,
            "generated_tokens": p.recorded_generated_tokens(spec),
            "context": p.prompt_tokens,
            "block_length": spec.block_length if block else None,
            "prefix_length": spec.prefix_length if block else None,
            "warmup": self.suite.warmup_for(p),
        }
        if p.weight_dtype or p.kv_dtype:  # read back by validation.predict.point_inputs
            rec |= {"weight_dtype": impl.weight_dtype, "kv_dtype": impl.kv_dtype}
        rec |= res
        rec["predicted_s"] = predict_record(rec | {"spec": spec.model_dump()}, self.hw)
        rec |= roofline_counts(rec | {"spec": spec.model_dump()})
        if p.phase == "generate":
            est = estimate(spec, self.hw, Workload(batch=batch, prompt_tokens=p.prompt_tokens,
                                                   generated_tokens=p.generated_tokens), impl)
            rec["predicted_memory_bytes"] = est.memory_bytes_total
            rec["throughput_tokens_per_s"] = batch * p.generated_tokens / rec["measured_s"]
            rec["predicted_throughput_tokens_per_s"] = est.throughput_tokens_per_s
        rec["env"] = environment(self.device, self.dtype)
        rec["spec"] = spec.model_dump()
        return rec

    # time estimates (for the budget)
    def estimated_cost_s(self, p: Point) -> float:
        """A rough upper estimate of a point's wall time: the uncalibrated roofline x
        `SLOWDOWN` plus an eager per-layer-forward cost, times the calls it makes."""
        spec = p.spec()
        impl = self._impl(p)
        batch = p.batch
        cuda = self.device.startswith("cuda")
        # + the untimed tensor-accounting call on a CPU
        calls = self.suite.warmup_for(p) + self.suite.repeats_for(p) + (0 if cuda else 1)
        slowdown = SLOWDOWN_CUDA if cuda else SLOWDOWN
        probes = 0.0
        if batch == "max":
            wl = Workload(prompt_tokens=p.prompt_tokens, generated_tokens=p.generated_tokens,
                          memory_reserve_bytes=RESERVE_BYTES)
            batch = max(1, predicted_max_batch(spec, self.capacity, wl, impl))
            probes = 8.0
        block = isinstance(spec, BlockSpec)
        gen = p.generated_tokens if p.phase == "generate" else \
            (spec.block_length if block and p.phase == "decode_step" else 1)
        rec = {"phase": p.phase, "spec": spec.model_dump(), "implementation": p.profile,
               "dtype": self.dtype, "batch": batch, "prompt_tokens": p.prompt_tokens,
               "generated_tokens": gen, "weight_dtype": p.weight_dtype, "kv_dtype": p.kv_dtype}
        t = predict_record(rec, self.hw)
        if block:
            layers = spec.block_decoder.n_layers + spec.token_decoder.n_layers
            forwards = 2 + gen * 2 if p.phase != "prefill" else 2
        else:
            layers, forwards = spec.stack.n_layers, gen
        eager = forwards * layers * EAGER_LAYER_S
        cost = calls * (slowdown * t + eager)
        if probes:
            first = predict_record(rec | {"phase": "prefill", "generated_tokens": 1}, self.hw)
            cost += probes * (slowdown * first + layers * EAGER_LAYER_S)
        return cost

    # the suite
    def run(self, budget_s: float | None = None) -> list[dict[str, Any]]:
        from tqdm.auto import tqdm

        done = read_dataset(self.dataset)
        self.warnings += [f"warning: {w}" for w in done.problems]
        # points that ran out of memory are not tried again; time-budget skips and errors are
        have = done.ids() | {k for k, v in self._skipped().items()
                             if str(v.get("reason", "")).startswith("oom")}
        todo = [p for p in self.suite.points if self.point_key(p) not in have]
        budget = budget_s if budget_s is not None else self.suite.budget_s
        start = time.monotonic()
        deadline = start + budget if budget is not None else None
        new: list[dict[str, Any]] = []
        bar = tqdm(todo, desc=f"measure {self.suite.name}", unit="pt", disable=not self.progress,
                   initial=0, total=len(todo))
        for p in bar:
            bar.set_postfix_str(f"{p.model} {p.phase} B={p.batch} S={p.prompt_tokens}")
            key = self.point_key(p)
            if deadline is not None:
                left = deadline - time.monotonic()
                need = self.estimated_cost_s(p)
                if need > left:
                    self._skip(key, p, f"time budget: needs ~{need:.0f} s, {left:.0f} s left")
                    continue
            try:
                rec = self.measure(p, deadline)
            except Exception as e:  # noqa: BLE001 - one failed point must not end the suite
                reason = "oom" if _is_oom(e) or isinstance(e, MemoryError) else \
                    f"error: {type(e).__name__}: {e}"
                if not reason.startswith("oom"):
                    self.warnings.append(f"warning: {p}: {reason}\n{traceback.format_exc()}")
                self._skip(key, p, reason)
                if self._model is not None:
                    release(self._model)
                continue
            append_record(self.dataset, rec)
            new.append(rec)
        return new


def probe_region(model: Any, spec: Any, p: Point, b: int, device: str) -> Callable[[], Any]:
    """A short stand-in for a whole request at batch b with the same peak memory.

    Static caches are allocated in full at setup (S + G - 1 entries; n_p + n_g - 1 blocks), so
    setup, the prefill and the first decode steps reach the request's peak; that is much
    cheaper than the whole ``generate``. A concat (hf-legacy) cache grows to its peak only at
    the end, so that profile probes with the whole request.
    """
    if p.profile != "static":
        return region(model, spec, Point(p.model, "generate", b, p.prompt_tokens,
                                         p.generated_tokens, profile=p.profile,
                                         block_length=p.block_length), b, device).fn
    s, g, v = p.prompt_tokens, p.generated_tokens, spec.vocab_size

    def run() -> None:
        ids = _ids(v, b, s, 1).to(device)
        tok = ids[:, -1:]
        if isinstance(model, VanillaLM):
            model.setup_inference(b, s + g - 1, "static")
            model.prefill(ids)
            for c in range(s, min(s + 2, s + g - 1)):
                model.decode_step(tok, c)
            return
        lb, pl = spec.block_length, spec.prefix_length
        n_p, n_g = math.ceil(s / lb), math.ceil(g / lb)
        model.setup_inference(b, n_p, n_g, "static")
        ctx = model.block_decode(model.embed(model.pad_prompt(ids)), 0)
        model.token_prefix(ctx)
        for k in range(2, lb + 1):
            model.token_step(tok, pl + k - 2)
        if n_g > 1:
            model.block_decode(model.embed(_ids(v, b, lb, 2).to(device)), n_p)

    return run


__all__ = ["GiB", "Region", "Runner", "probe_region", "region", "round_batch",
           "search_max_batch"]
