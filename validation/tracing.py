"""Exact per-op counts of one reference request: FLOPs, weight bytes and KV-cache bytes.

`trace_request(model, input_ids, generated_tokens, mode)` runs the reference's own `generate`
once and attributes every counted quantity to a (phase, op) pair named as the cost model names
them (`costmodel.ops`, `costmodel.phases`):

- **op** = the innermost module running, its path with layer indices dropped
  (``layers.3.attn.core`` -> ``layers.attn.core``; ``layers`` alone is the decoder layer's own
  code: the residual additions), as docs/design.md idea 2 promises;
- **phase** = read from the root module's ``phase=`` keyword (`reference.VanillaLM.forward`,
  `reference.BlockLM.forward`): vanilla ``prefill`` / ``decode``; block ``prefill`` (the
  embedder over the prompt blocks and the block-decoder pass at c = 0),
  ``block_decoder.step`` (the embedder on a generated block and a block-decoder pass at c > 0),
  ``token_decoder.prefix``, ``token_decoder.step``.

What is counted, and how (the reference-side rules; `costmodel/ops.py` states the same
conventions from the formula side):

- FLOPs: the formulas of `torch.utils.flop_counter` (``flop_registry``: 2 per multiply-add of
  mm/addmm/bmm/baddbmm, the full rectangle for fused attention kernels), applied to every aten
  op exactly as `FlopCounterMode` applies them (ops without a formula are decomposed first,
  as `FlopCounterMode` does). SDPA runs on the MATH backend, since the CPU flash kernel has no
  formula (docs/engineering-notes.md); the CPU flash kernel is mapped to `sdpa_flop_count` as well, as in
  `reference.counting.flop_counter`. `FastFlopCounter` differs from `FlopCounterMode` only in
  its bookkeeping (innermost module, phase) and in memoising meta-tensor outputs;
  tests/test_validation_count.py checks it equals `FlopCounterMode` module by module.
- Weight bytes: per module call, the bytes of the module's own parameters (a Linear reads its
  weight and bias once per forward, whatever the batch), except lookups (`nn.Embedding`, the
  block embedder), which read only the rows they gather: ids x row bytes. Quantised linears
  (`reference.quantize`) read their packed weight, scales (buffers) and bias; their packed
  matmuls count 2 * rows * in * out FLOPs (no `FlopCounterMode` formula exists for them).
- KV bytes: the cache entries an op reads or writes (docs/model.md 2.3, 2.5). ``attn.kv_cache``:
  static, the new k and v written into the preallocated buffers; concat (hf-legacy), the old
  cache read by ``torch.cat`` (c > 0) and every entry of the new cache tensors written (at
  c = 0 the first forward's k and v are copied into a fresh cache). ``attn.core``: the k and v tensors handed to attention (the valid prefix). An int8 cache counts its stored
  bytes (int8 values and per-vector scales), not the dequantised copies attention receives.
- KV-cache size: the bytes of every layer's k and v tensors, per stack, largest over the
  request after each forward (at rest: not the transient of a ``torch.cat``).
- Activation bytes and kernels: `validation.traffic`'s rule for every aten op, except the
  regions counted as the one fused kernel the cost model times (docs/conventions.md, "Fused
  kernels"): rotary, the static attention core, a quantised linear, an int8 cache update (one
  kernel per tensor; the dequantised copies it returns count as KV, not activations); a
  tensor-parallel collective is one kernel of its op, and its own work (an all-gather's
  concatenation) runs in that op's scope (validation/collectives.py).

Speed on the ``meta`` device. Meta execution is slow in PyTorch 2.13 (most meta kernels are
Python reference implementations: 0.3-2 ms per op, ~0.2 s per decode step of vanilla_410), so
a 2048-token request would take minutes per model. Two memos, for meta tensors only, make it
~N times faster and change no count (tests/test_validation_count.py checks counts with and
without them are identical):

- `MetaMemo` memoises the output metadata of pure ops (no mutation, no aliasing) by their input
  metadata;
- `ModuleMemo` memoises module calls by everything their work depends on (the op name,
  parameter shapes, input metadata including the `Step` (c, positions, cache use), the cache
  mode and cache tensor shapes, the attention kind): a repeat adds the counts the first call
  recorded, applies the same cache-state change (concat: the grown k and v tensors) and
  returns outputs of the recorded shapes. Every layer of a stack has the same shapes, so
  within a forward only the first layer executes, and across decode steps only the parts
  that depend on the context (cache update, attention core) execute again.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

from reference.attention import AttentionCore
from reference.block import BlockLM, Embedder
from reference.kv_cache import KVCache
from reference.layers import DecoderLayer
from reference.quantize import QUANTIZED_MATMULS, QuantizedLinear
from reference.rotary import Rotary
from reference.vanilla import VanillaLM

from .traffic import TrafficCounter

_LAYER_INDEX = re.compile(r"\.\d+(?=\.|$)")


def op_name(module_path: str) -> str:
    """Cost-model op name of a module path: layer indices dropped (``layers.3.mlp`` ->
    ``layers.mlp``); the root module is ``""``."""
    return _LAYER_INDEX.sub("", module_path)


# --- FLOPs ---------------------------------------------------------------------------------


def _cpu_flash_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _quantized_mm_flops(x: Any, weight: Any, *args: Any, out_val: Any = None, **kw: Any) -> int:
    """Packed int8/int4 weight-only matmuls (`reference.quantize`): 2 * rows * in * out, like
    mm; `FlopCounterMode` has no formula for them and counts 0 (docs/precision.md 3)."""
    rows, d_in = x.shape
    return 2 * rows * d_in * out_val.shape[-1]


FLOP_FORMULAS: dict[Any, Callable[..., int]] = {
    **flop_registry,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops,
    **dict.fromkeys(QUANTIZED_MATMULS, _quantized_mm_flops),
}


class FastFlopCounter(TorchDispatchMode):
    """Counts FLOPs of every aten op with `FlopCounterMode`'s formulas into ``sink(flops)``.

    Same formulas and the same decomposition rule as `torch.utils.flop_counter`; the caller
    decides where a count goes (`Tracer` attributes it to the innermost module and phase).
    """

    def __init__(self, sink: Callable[[int], None]) -> None:
        super().__init__()
        self.sink = sink
        self._no_decomposition: set[Any] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        formula = FLOP_FORMULAS.get(packet)
        if formula is None and func not in self._no_decomposition \
                and func is not torch.ops.prim.device.default:
            # as FlopCounterMode: count inside ops that have a decomposition
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
            self._no_decomposition.add(func)
        out = func(*args, **kwargs)
        if formula is not None:
            self.sink(int(formula(*args, **kwargs, out_val=out)))
        return out


def _meta_key(a: Any) -> Any:
    if isinstance(a, Tensor):
        # no storage offset: pure ops return fresh tensors, whose layout it does not change
        return ("T", tuple(a.shape), a.stride(), a.dtype, a.device.type)
    if isinstance(a, list | tuple):
        return (type(a).__name__, tuple(_meta_key(x) for x in a))
    if isinstance(a, dict):
        return ("d", tuple((k, _meta_key(v)) for k, v in sorted(a.items())))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return (type(a).__name__,
                tuple(_meta_key(getattr(a, f.name)) for f in dataclasses.fields(a)))
    if a is None or isinstance(a, bool | int | float | str | torch.dtype | torch.device
                               | torch.layout | torch.memory_format):
        return (type(a).__name__, a)
    raise TypeError(type(a).__name__)


class MetaMemo(TorchDispatchMode):
    """Memoises meta-tensor outputs of pure ops (no mutation, no aliasing) by input metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[Any, Any] = {}
        self._pure: dict[Any, bool] = {}
        self.hits = 0

    def _is_pure(self, func: Any) -> bool:
        pure = self._pure.get(func)
        if pure is None:
            schema = func._schema
            pure = not schema.is_mutable and all(r.alias_info is None for r in schema.returns)
            self._pure[func] = pure
        return pure

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if not self._is_pure(func):
            return func(*args, **kwargs)
        try:
            key = (func, _meta_key(args), _meta_key(kwargs))
        except TypeError:
            return func(*args, **kwargs)
        hit = self.cache.get(key)
        if hit is not None:
            self.hits += 1
            tree, metas = hit
            return tree_unflatten(
                [torch.empty_strided(s, st, dtype=d, device="meta") for s, st, d in metas], tree)
        out = func(*args, **kwargs)
        flat, tree = tree_flatten(out)
        if flat and all(isinstance(t, Tensor) and t.device.type == "meta" for t in flat):
            self.cache[key] = (tree, [(tuple(t.shape), t.stride(), t.dtype) for t in flat])
        return out


# --- the tracer ----------------------------------------------------------------------------

Quantity = str  # "flops", "weight_bytes", "kv_read_bytes", "kv_write_bytes", ...
QUANTITIES: tuple[Quantity, ...] = ("flops", "weight_bytes", "kv_read_bytes", "kv_write_bytes",
                                    "act_read_bytes", "act_write_bytes", "kernels")


def _nbytes(t: Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _storage(t: Tensor) -> int:
    """Identity of a tensor's storage (shared by all its views; works on meta tensors)."""
    return t.untyped_storage()._cdata


def _stack_of(path: str) -> str:
    """KV-cache owner: ``block_decoder`` / ``token_decoder`` for block models, ``""`` else."""
    head = path.split(".", 1)[0]
    return head if head in ("block_decoder", "token_decoder") else ""


@dataclass
class RequestCounts:
    """Counts of one request: ``counts[(phase, op)][quantity]`` (exact integers), the largest
    KV-cache bytes held per stack, the parameter bytes, and the forward calls per phase."""

    counts: dict[tuple[str, str], dict[Quantity, int]]
    kv_cache_peak_bytes: dict[str, int]
    parameter_bytes: int
    forwards: dict[str, int] = field(default_factory=dict)


class Tracer:
    """Installs the hooks that attribute counts to (phase, op); see the module docstring."""

    def __init__(self, model: VanillaLM | BlockLM) -> None:
        self.model = model
        self.block = isinstance(model, BlockLM)
        self.paths = {m: name for name, m in model.named_modules()}
        self.stack: list[str] = []
        self.phase = "(none)"
        self.seen_block_pass = False
        self.counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(QUANTITIES, 0))
        self.kv_peak: dict[str, int] = defaultdict(int)
        self.forwards: dict[str, int] = defaultdict(int)
        self.caches = [(name, m) for name, m in model.named_modules() if isinstance(m, KVCache)]
        self.cache_at = dict(self.caches)
        self.recording: list[list[tuple[str, str, int]]] = []  # LayerMemo's open records
        self.param_storages = {_storage(p) for p in model.parameters()}
        self.fused_depth = 0  # > 0 inside a fused kernel counted as one (attention core)
        self.in_cache_update = False
        # the dequantised k, v each int8 cache last handed to attention (kept alive, so their
        # storages cannot be reused): KV entries, not activations (`is_kv`)
        self.dequantised: dict[str, tuple[Tensor, Tensor]] = {}

    # where a count goes
    def add(self, quantity: str, value: int, path: str | None = None) -> None:
        if value and (path is not None or self.stack):  # outside the model: sampling
            self.add_op(op_name(self.stack[-1] if path is None else path), quantity, value)

    def add_op(self, op: str, quantity: str, value: int) -> None:
        counts = self.counts[(self.phase, op)]
        counts[quantity] = counts.get(quantity, 0) + value
        for record in self.recording:
            record.append((op, quantity, value))

    def _phase_of(self, kwargs: dict[str, Any]) -> str:
        phase, c = kwargs.get("phase", "train"), kwargs.get("c", 0)
        if not self.block:
            if phase in ("prefill", "decode"):
                return phase
        elif phase == "embed":
            return "block_decoder.step" if self.seen_block_pass else "prefill"
        elif phase == "block":
            self.seen_block_pass = True
            return "prefill" if c == 0 else "block_decoder.step"
        elif phase == "token_prefix":
            return "token_decoder.prefix"
        elif phase == "token_step":
            return "token_decoder.step"
        raise ValueError(f"phase: the tracer does not know the reference phase {phase!r}")

    # hooks
    def _root_pre(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        self.phase = self._phase_of(kwargs)
        self.forwards[self.phase] += 1

    def _root_post(self, module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        held: dict[str, int] = defaultdict(int)
        for name, cache in self.caches:
            held[_stack_of(name)] += _nbytes(cache.k) + _nbytes(cache.v)
        for stack, b in held.items():
            self.kv_peak[stack] = max(self.kv_peak[stack], b)

    def _pre(self, module: nn.Module, args: Any) -> None:
        path = self.paths[module]
        self.stack.append(path)
        if isinstance(module, nn.Embedding | Embedder):
            w = module.weight
            self.add("weight_bytes", args[0].numel() * w.shape[1] * w.element_size())
        elif isinstance(module, QuantizedLinear):  # packed weight, scales (buffers) and bias
            self.add("weight_bytes", sum(_nbytes(t) for t in module.stored_weights()))
        else:
            self.add("weight_bytes", sum(_nbytes(p) for p in module.parameters(recurse=False)))
        if isinstance(module, Rotary):
            # counted as the one fused rotary kernel the cost model times (docs/conventions.md):
            # it reads q and k and writes them rotated; angles are no memory traffic
            self._open_fused(_nbytes(args[0]))
        if isinstance(module, QuantizedLinear):
            # counted as the one fused kernel the cost model times (docs/precision.md 3): the
            # weight is dequantised inside the matmul, the bias added in its epilogue; it reads
            # its input and writes its output (torch's packed CPU kernels run the bias add and
            # an input copy as kernels of their own)
            self._open_fused(_nbytes(args[0]))
        if isinstance(module, AttentionCore):
            self.add("kv_read_bytes", self._kv_read_bytes(path, args[1], args[2]))
            if not module.materialize:
                # SDPA counted at the granularity of the fused kernel it stands for (flash
                # attention): one kernel reading q (and a mask passed in), writing the output
                self._open_fused(_nbytes(args[0]) + _nbytes(args[3] if len(args) > 3 else None))
                q, k = args[0], args[1]
                if k.dtype != q.dtype:
                    # keys cached in fp32 (official profiles) are cast to q's dtype by a
                    # kernel of their own before the flash kernel (`AttentionCore.forward`,
                    # docs/conventions.md "Fused kernels"): it reads the cached keys (the KV
                    # read above) and writes a 16-bit copy, which the flash kernel reads
                    cast = k.numel() * q.element_size()
                    self.add("kernels", 1)
                    self.add("act_write_bytes", cast)
                    self.add("act_read_bytes", cast)

    def _open_fused(self, read_bytes: int) -> None:
        """Start a region counted as one kernel reading `read_bytes` of activations (its output
        is written when the module returns, `_post`)."""
        self.fused_depth += 1
        self.add("kernels", 1)
        self.add("act_read_bytes", read_bytes)

    @contextmanager
    def op_scope(self, op: str) -> Iterator[None]:
        """Attribute what runs inside to `op` (a collective's own work, validation/collectives.py)."""
        self.stack.append(op)
        try:
            yield
        finally:
            self.stack.pop()

    def _kv_read_bytes(self, core_path: str, k: Tensor, v: Tensor) -> int:
        """The k, v handed to attention, as the cache stores them: an int8 cache's reads are
        its stored int8 values and scales for those entries, not the dequantised copies."""
        cache = self.cache_at.get(core_path.rsplit(".", 1)[0] + ".kv_cache")
        if cache is None or cache.kv_dtype is None or cache.k is None:
            return _nbytes(k) + _nbytes(v)
        return (_nbytes(cache.k) + _nbytes(cache.v)) * k.shape[2] // cache.k.shape[2]

    def _post(self, module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(module, Rotary | QuantizedLinear) or (isinstance(module, AttentionCore)
                                                            and not module.materialize):
            self.add("act_write_bytes", _nbytes(out))
            self.fused_depth -= 1
        self.stack.pop()

    # tensor classes for `TrafficCounter`
    # (by storage: views made under inference mode do not record their base)
    def is_weight(self, t: Tensor) -> bool:
        return _storage(t) in self.param_storages

    def is_kv(self, t: Tensor) -> bool:
        s = _storage(t)
        return any(c is not None and _storage(c) == s
                   for _, cache in self.caches for c in (cache.k, cache.v)) or any(
            _storage(c) == s for pair in self.dequantised.values() for c in pair)

    def _wrap_update(self, path: str, cache: KVCache) -> Callable[..., Any]:
        original = cache.update

        def update(k: Tensor, v: Tensor, c: int) -> tuple[Tensor, Tensor]:
            if cache.mode == "concat" and c > 0:
                self.add("kv_read_bytes", _nbytes(cache.k) + _nbytes(cache.v), path)
            self.stack.append(path)  # the cache's kernels are the op ``attn.kv_cache``
            self.in_cache_update = True
            int8 = cache.kv_dtype == "int8" and cache.mode != "off"
            if int8:
                # counted as the fused kernels the cost model times (docs/precision.md 3): one
                # quantise-and-store kernel per tensor, reading the new k (v) and writing the
                # cache; the dequantisation of what attention reads happens inside the
                # attention kernel (the CPU reference runs both as eager ops and copies)
                self._open_fused(_nbytes(k) + _nbytes(v))
                self.add("kernels", 1)
            try:
                k_all, v_all = original(k, v, c)
            finally:
                self.in_cache_update = False
                self.stack.pop()
                if int8:
                    self.fused_depth -= 1
            if int8:
                self.dequantised[path] = (k_all, v_all)
            # bytes as stored (an int8 cache: values and scales)
            if cache.mode == "static":
                stored = _nbytes(cache.k) + _nbytes(cache.v)
                self.add("kv_write_bytes", stored * k.shape[2] // cache.k.shape[2], path)
            elif cache.mode == "concat":
                self.add("kv_write_bytes", _nbytes(cache.k) + _nbytes(cache.v), path)
            return k_all, v_all

        return update

    @contextmanager
    def installed(self) -> Iterator[None]:
        handles = [
            self.model.register_forward_pre_hook(self._root_pre, with_kwargs=True),
            self.model.register_forward_hook(self._root_post, with_kwargs=True),
        ]
        for m in self.paths:
            handles.append(m.register_forward_pre_hook(self._pre))
            # before hooks already there (a TP shard's collective): the module's own output,
            # and the collective runs in its own op's scope (validation/collectives.py)
            handles.append(m.register_forward_hook(self._post, prepend=True))
        for path, cache in self.caches:
            cache.update = self._wrap_update(path, cache)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for _, cache in self.caches:
                del cache.update  # back to the class method

    def result(self) -> RequestCounts:
        params = sum(_nbytes(p) for p in self.model.parameters())
        params += sum(_nbytes(b) for m in self.model.modules() if isinstance(m, QuantizedLinear)
                      for b in m.buffers(recurse=False))
        return RequestCounts({k: dict(v) for k, v in self.counts.items()}, dict(self.kv_peak),
                             params, dict(self.forwards))


def _meta_or_none(t: Tensor | None) -> Any:
    return None if t is None else _meta_key(t)


class ModuleMemo:
    """Replays module calls already counted with the same inputs (meta tensors only).

    Memoised: every module without a KV cache inside (linears, norms, MLPs, rotary, attention
    core, lookups) and every decoder layer, whose key and replay include its cache's state.
    """

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.records: dict[Any, Any] = {}
        self.hits = 0

    def _wrap(self, path: str, module: nn.Module) -> Callable[..., Any]:
        original = module.forward
        prefix = op_name(path)
        caches = [m for m in module.modules() if isinstance(m, KVCache)]
        flags = tuple(getattr(m, "materialize", None) for m in module.modules()
                      if isinstance(m, AttentionCore))
        params = tuple((n, tuple(p.shape), p.dtype) for n, p in module.named_parameters())
        tracer = self.tracer

        def cache_state() -> Any:
            return tuple((c.mode, _meta_or_none(c.k), _meta_or_none(c.v)) for c in caches)

        def forward(*args: Any, **kwargs: Any) -> Any:
            flat_in, _ = tree_flatten((args, kwargs))
            if not all(t.device.type == "meta" for t in flat_in if isinstance(t, Tensor)):
                return original(*args, **kwargs)
            try:
                key = (type(module), prefix, params, flags, _meta_key(args), _meta_key(kwargs),
                       cache_state())
            except TypeError:
                return original(*args, **kwargs)
            record = self.records.get(key)
            if record is None:
                tracer.recording.append([])
                try:
                    out = original(*args, **kwargs)
                finally:
                    events = tracer.recording.pop()
                flat, tree = tree_flatten(out)
                if not all(isinstance(t, Tensor) for t in flat):
                    return out
                self.records[key] = (
                    [(op.removeprefix(prefix), q, v) for op, q, v in events],
                    tree, [(tuple(t.shape), t.stride(), t.dtype) for t in flat],
                    cache_state())
                return out
            self.hits += 1
            events, tree, metas, post = record
            for op, q, v in events:
                tracer.add_op(prefix + op, q, v)
            with _disable_current_modes():  # fresh meta tensors need no counting
                for c, (_, k, v) in zip(caches, post, strict=True):
                    # the cache tensors the first call left behind (concat growth)
                    if (_meta_or_none(c.k), _meta_or_none(c.v)) != (k, v):
                        c.k, c.v = (None if m is None else
                                    torch.empty_strided(m[1], m[2], dtype=m[3], device="meta")
                                    for m in (k, v))
                return tree_unflatten(
                    [torch.empty_strided(s, st, dtype=d, device="meta") for s, st, d in metas],
                    tree)

        return forward

    @contextmanager
    def installed(self) -> Iterator[None]:
        wrapped = []
        for path, m in self.tracer.model.named_modules():
            if path and (isinstance(m, DecoderLayer)
                         or not any(isinstance(x, KVCache) for x in m.modules())):
                m.forward = self._wrap(path, m)  # type: ignore[method-assign]
                wrapped.append(m)
        try:
            yield
        finally:
            for m in wrapped:
                del m.forward


def trace_request(model: VanillaLM | BlockLM, input_ids: Tensor, generated_tokens: int,
                  mode: str = "static", memo: bool | None = None,
                  collectives: bool = False) -> RequestCounts:
    """Run ``model.generate(input_ids, generated_tokens, mode=mode)`` and count it.

    `memo` (default: on for meta tensors) enables `MetaMemo` and `ModuleMemo`; `collectives`
    records the bytes of every collective of a sharded model (validation/collectives.py).
    """
    tracer = Tracer(model)
    use_memo = input_ids.device.type == "meta" if memo is None else memo
    with ExitStack() as stack:
        stack.enter_context(tracer.installed())
        if collectives:
            from .collectives import recording_collectives

            stack.enter_context(recording_collectives(tracer))
        stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        if use_memo:
            stack.enter_context(ModuleMemo(tracer).installed())
            stack.enter_context(MetaMemo())
        stack.enter_context(FastFlopCounter(lambda f: tracer.add("flops", f)))
        # entered last, so it sees each op as the model issues it (before decompositions)
        stack.enter_context(TrafficCounter(tracer.add, tracer.is_weight, tracer.is_kv,
                                           lambda: tracer.fused_depth == 0,
                                           lambda: tracer.in_cache_update))
        model.generate(input_ids, generated_tokens, mode=mode)  # type: ignore[arg-type]
    return tracer.result()
