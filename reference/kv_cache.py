"""Per-layer key/value cache, in the two implementation profiles of `costmodel.implementation`.

- ``static``: `k` and `v` are preallocated buffers ``[B, K, T_max, dh]`` written by index;
  attention reads only the valid prefix ``[:, :, :c+q]`` (c = entries cached before the forward,
  q = new positions). Shapes and addresses stay fixed across steps, as CUDA graphs need.
- ``concat``: the hf-legacy profile (SPEC.md 1.6, 2.5 item 1): the cache is grown by
  ``torch.cat([past, new], dim=2)`` on every forward, starting from the first forward's k/v.
- ``off``: no cache (training, or a full recompute).

``key_dtype`` (concat only): the dtype keys are cached in. The official profile caches keys in
fp32, as GPT-NeoX's fp32 rotary tables and torch.cat's type promotion do in the released code
(docs/published.md 1); attention then reads the fp32 keys.

The cache never reads tensor values on the host: `c` is a Python int the caller counts.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

CacheMode = Literal["off", "static", "concat"]


class KVCache(nn.Module):
    """Holds one attention layer's keys and values (buffers, never parameters)."""

    k: Tensor | None
    v: Tensor | None

    def __init__(self) -> None:
        super().__init__()
        self.mode: CacheMode = "off"
        self.key_dtype: torch.dtype | None = None
        self.register_buffer("k", None, persistent=False)
        self.register_buffer("v", None, persistent=False)

    def setup(
        self,
        mode: CacheMode,
        batch: int,
        max_entries: int,
        kv_heads: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
        key_dtype: torch.dtype | None = None,
    ) -> None:
        """Prepare for a new request. Static buffers are reused when the shape is unchanged."""
        self.mode = mode
        self.key_dtype = key_dtype if mode == "concat" else None
        if mode != "static":
            self.k = self.v = None
            return
        shape = (batch, kv_heads, max_entries, head_dim)  # [B, K, T_max, dh]
        k = self.k
        if k is None or k.shape != shape or k.device != device or k.dtype != dtype:
            # zeros, not empty: the fixed-shape step masks unused entries, and 0 * NaN is NaN
            self.k = torch.zeros(shape, device=device, dtype=dtype)
            self.v = torch.zeros(shape, device=device, dtype=dtype)

    def reset(self) -> None:
        """Drop the cache (mode ``off``)."""
        self.mode = "off"
        self.key_dtype = None
        self.k = self.v = None

    def update(self, k: Tensor, v: Tensor, c: int) -> tuple[Tensor, Tensor]:
        """Store the new k, v (``[B, K, q, dh]``) after `c` cached entries; return all ``c+q``."""
        if self.mode == "off":
            if c:
                raise RuntimeError("KVCache: no cache is set up, but c > 0 entries were expected")
            return k, v
        q = k.shape[2]
        if self.mode == "concat":
            if self.key_dtype is not None:
                k = k.to(self.key_dtype)
            if c == 0:  # a fresh cache, written once as transformers' first torch.cat does
                self.k = k.clone(memory_format=torch.contiguous_format)
                self.v = v.clone(memory_format=torch.contiguous_format)
            else:
                if self.k is None or self.k.shape[2] != c:
                    raise RuntimeError(f"KVCache: expected {c} cached entries")
                self.k = torch.cat([self.k, k], dim=2)  # [B, K, c+q, dh]
                self.v = torch.cat([self.v, v], dim=2)
            return self.k, self.v
        assert self.k is not None and self.v is not None
        if c + q > self.k.shape[2]:
            raise RuntimeError(
                f"KVCache: {c + q} entries exceed the static cache of {self.k.shape[2]}"
            )
        self.k[:, :, c : c + q].copy_(k)
        self.v[:, :, c : c + q].copy_(v)
        return self.k[:, :, : c + q], self.v[:, :, : c + q]  # valid prefix only

    def update_at(self, k: Tensor, v: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Fixed-shape write at device positions `pos` ([q] long); returns the whole buffers.

        Used by the compiled one-token step: attention then reads all T_max entries under a mask.
        """
        if self.mode != "static" or self.k is None or self.v is None:
            raise RuntimeError("KVCache.update_at needs a static cache")
        self.k.index_copy_(2, pos, k)
        self.v.index_copy_(2, pos, v)
        return self.k, self.v

    @property
    def nbytes(self) -> int:
        """Bytes currently held by k and v."""
        if self.k is None or self.v is None:
            return 0
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def extra_repr(self) -> str:
        shape = None if self.k is None else tuple(self.k.shape)
        return f"mode={self.mode}, k_shape={shape}"
