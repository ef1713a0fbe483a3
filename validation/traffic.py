"""Activation traffic and kernel launches of every aten op the reference runs.

`TrafficCounter` is a dispatch mode that sees each aten op as the model issues it (before any
decomposition) and applies the project's kernel rule (docs/conventions.md, "Kernels"):

- a **kernel** is an aten op that produces or changes tensor data, as the dispatcher hands it
  to the mode (a composite such as ``linear``, ``matmul`` or ``rms_norm`` that arrives whole
  is one kernel). Views and metadata-only ops launch nothing and are not counted: ops whose
  schema says every output aliases an input, unwritten, and whose outputs really share an
  input's storage (``view``, ``transpose``, ``slice``, ``expand``, ``select``; a ``reshape``
  that has to copy IS a kernel), and the ops in `METADATA_OPS` (allocation without
  initialisation, size queries). Collectives (ops of the ``c10d`` namespaces) are not counted
  here: the tracer counts each as one kernel of its collective op, its bytes as ``comm_bytes``
  (validation/collectives.py);
- a kernel **reads** the bytes of every tensor argument it does not write (numel x element
  size, broadcast operands at their own size) and **writes** the bytes of every tensor it
  returns or mutates in place (an in-place target is written, not also read);
- tensors that are model parameters (or views of them) are weight traffic, counted by the
  tracer per module call, and KV-cache tensors are KV traffic (`validation.tracing`); all
  other tensors are **activations** and go to ``act_read_bytes`` / ``act_write_bytes``.

The caller routes every count (`sink(quantity, value)`) to the innermost module and phase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# allocation without initialisation and pure metadata: no kernel, no traffic
METADATA_OPS = frozenset({
    torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default,
    torch.ops.aten.empty_like.default, torch.ops.aten.sym_size.int,
    torch.ops.aten.sym_stride.int, torch.ops.aten.sym_numel.default,
    torch.ops.aten.is_same_size.default, torch.ops.prim.device.default,
    torch.ops.aten.lift_fresh.default,
})


# collectives: counted by the tracer where `reference.tp` issues them
COLLECTIVE_NAMESPACES = frozenset({"c10d", "_c10d_functional"})


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def is_view_op(func: Any, args: Any, out: Any) -> bool:
    """Every return aliases an input and nothing is written, and the outputs really are views
    (``reshape`` and ``contiguous`` may alias or copy: a copy is a kernel)."""
    schema = func._schema
    if schema.is_mutable or not schema.returns:
        return False
    if not all(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns):
        return False
    inputs = [t for t in tree_flatten(args)[0] if isinstance(t, Tensor)]
    return all(any(torch._C._is_alias_of(t, i) for i in inputs)
               for t in tree_flatten(out)[0] if isinstance(t, Tensor))


class TrafficCounter(TorchDispatchMode):
    """Counts kernels and activation bytes of every aten op (module docstring's rule).

    `is_weight(t)` / `is_kv(t)` classify a tensor; `active()` says whether the op is to be
    counted here (False inside a region counted at a fused kernel's granularity).
    """

    def __init__(self, sink: Callable[[str, int], None], is_weight: Callable[[Tensor], bool],
                 is_kv: Callable[[Tensor], bool], active: Callable[[], bool],
                 writes_kv: Callable[[], bool]) -> None:
        super().__init__()
        self.sink, self.is_weight, self.is_kv, self.active = sink, is_weight, is_kv, active
        self.writes_kv = writes_kv  # inside a cache update every write is the cache's

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if (func in METADATA_OPS or func.namespace in COLLECTIVE_NAMESPACES
                or is_view_op(func, args, out) or not self.active()):
            return out
        schema = func._schema
        written: list[Tensor] = []
        read = 0
        flat_args = list(args) + [kwargs.get(a.name) for a in schema.arguments[len(args):]]
        for value, arg in zip(flat_args, schema.arguments, strict=False):
            tensors = [t for t in tree_flatten(value)[0] if isinstance(t, Tensor)]
            if arg.alias_info is not None and arg.alias_info.is_write:
                written += tensors
                continue
            read += sum(_nbytes(t) for t in tensors if not (self.is_weight(t) or self.is_kv(t)))
        if not schema.is_mutable:  # functional op: its fresh outputs are what it writes
            written += [t for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
        write = 0 if self.writes_kv() else sum(
            _nbytes(t) for t in written if not (self.is_weight(t) or self.is_kv(t)))
        self.sink("kernels", 1)
        self.sink("act_read_bytes", read)
        self.sink("act_write_bytes", write)
        return out
