"""Peak memory of a region: CUDA allocator statistics, or tensor accounting on CPU.

- CUDA (docs/engineering-notes.md): ``reset_peak_memory_stats()`` before, ``max_memory_allocated()`` (tensors)
  and ``max_memory_reserved()`` (allocator) after.
- CPU: PyTorch keeps no allocator statistics, so `TensorAccounting` counts tensors: every
  storage an op creates is added when it appears and subtracted when it is freed (a weak
  reference on the storage; PyTorch preserves one Python object per storage), on top of a
  baseline (the model's parameters and buffers). Its peak is the largest sum of live tensor
  bytes, comparable with the cost model's weights + B x (KV cache + workspace). It runs the
  region once more, untimed, since the bookkeeping slows every op.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorAccounting(TorchDispatchMode):
    """Live and peak bytes of tensor storages created while active (plus `baseline_bytes`)."""

    def __init__(self, baseline_bytes: int = 0) -> None:
        super().__init__()
        self.baseline_bytes = baseline_bytes
        self.live_bytes = 0
        self.peak_bytes = 0
        self._live: dict[int, int] = {}

    def _freed(self, key: int) -> None:
        self.live_bytes -= self._live.pop(key, 0)

    def _track(self, t: Tensor) -> None:
        st = t.untyped_storage()
        key = id(st)
        n = st.nbytes()
        old = self._live.get(key)
        if old is None:
            self._live[key] = n
            self.live_bytes += n
            weakref.finalize(st, self._freed, key)
        elif old != n:  # resized in place
            self._live[key] = n
            self.live_bytes += n - old
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and t.device.type == "cpu":
                self._track(t)
        return out

    @property
    def peak_total_bytes(self) -> int:
        return self.baseline_bytes + self.peak_bytes


def module_bytes(model: nn.Module) -> int:
    """Bytes of a module's parameters and (non-None) buffers."""
    tensors = list(model.parameters()) + [b for b in model.buffers() if b is not None]
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_memory(fn: Callable[[], Any], device: str, model: nn.Module) -> dict[str, Any]:
    """Run `fn` once and return its peak memory (keys as the dataset stores them)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return {"memory_method": "cuda allocator",
                "peak_allocated_bytes": int(torch.cuda.max_memory_allocated()),
                "peak_reserved_bytes": int(torch.cuda.max_memory_reserved())}
    acct = TensorAccounting(module_bytes(model))
    with acct:
        fn()
    return {"memory_method": "cpu tensor accounting",
            "peak_allocated_bytes": int(acct.peak_total_bytes)}
