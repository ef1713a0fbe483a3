"""Counting FLOPs of the reference with `torch.utils.flop_counter.FlopCounterMode`.

`FlopCounterMode` counts matmuls as 2 * M * N * K (a Linear: ``2 * rows * in * out``; bias adds
and elementwise work count 0) and fused attention kernels by `sdpa_flop_count`:
``4 * B * H * q * n_k * dh``, the full rectangle, also for causal attention (docs/engineering-notes.md). It has
GQA support (query heads H, KV heads K < H: still H in the formula).

On CPU, ``scaled_dot_product_attention`` dispatches to
``aten._scaled_dot_product_flash_attention_for_cpu``, which the counter does not know (it
counts 0). Two equivalent fixes are offered, both giving ``4 * B * H * q * n_k * dh`` under the
``attn.core`` module in both inference modes:

- `counting_mode()`: run the counted region under the MATH SDPA backend, which decomposes into
  ``bmm``s (K/V heads repeated to H for GQA, so 2 bmms of ``2 * B * H * q * n_k * dh`` each);
- `flop_counter()`: a `FlopCounterMode` that also maps the CPU flash kernel to
  `sdpa_flop_count`, so the timed kernels run unchanged.

The hf-legacy materialised path computes ``q @ k^T`` and ``probs @ v`` as matmuls of query heads
grouped under their KV head (no copies), which count the same. Use either with ``meta``
tensors to count full-size models.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


@contextmanager
def counting_mode() -> Iterator[None]:
    """SDPA through the MATH backend, so `FlopCounterMode` sees its matmuls (CPU or meta)."""
    with sdpa_kernel(SDPBackend.MATH):
        yield


def _cpu_flash_flops(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def flop_counter(display: bool = False, depth: int | None = None) -> FlopCounterMode:
    """`FlopCounterMode` that also counts the CPU flash-attention kernel (no backend change)."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops}
    return FlopCounterMode(display=display, depth=depth, custom_mapping=mapping)


def flops_by_module(counter: FlopCounterMode) -> dict[str, int]:
    """Total FLOPs per module path (the counter's keys, e.g. ``"VanillaLM.layers.0.attn.core"``
    reduced to ``"layers.0.attn.core"``), excluding the ``Global`` and root entries."""
    out: dict[str, int] = {}
    for name, per_op in counter.get_flop_counts().items():
        if name == "Global" or "." not in name:
            continue
        out[name.split(".", 1)[1]] = int(sum(per_op.values()))
    return out
