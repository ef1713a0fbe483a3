"""Per-layer key/value cache, in the two implementation profiles of `costmodel.implementation`.

- ``static``: `k` and `v` are preallocated buffers ``[B, K, T_max, dh]`` written by index;
  attention reads only the valid prefix ``[:, :, :c+q]`` (c = entries cached before the forward,
  q = new positions). Shapes and addresses stay fixed across steps, as CUDA graphs need.
- ``concat``: the hf-legacy profile (docs/model.md 1.6, 2.5 item 1): the cache is grown by
  ``torch.cat([past, new], dim=2)`` on every forward, starting from the first forward's k/v.
- ``off``: no cache (training, or a full recompute).

Storage format (`kv_dtype`, set by `reference.quantize.quantize_kv_cache`): ``None`` keeps k and
v in the model's dtype; ``"int8"`` quantises every written vector (one token, one KV head)
symmetrically, ``q = round(x / s)`` with ``s = max|x| / 127``, and stores the scale's bytes next
to its d_h int8 values: k and v become int8 ``[B, K, T, dh + bytes(s)]`` (docs/precision.md 1:
``1 + s_a / d_h`` bytes per element). Reads dequantise ``q * s`` into the model's dtype.
``key_dtype`` (concat only): the dtype keys are cached in. The official profile caches keys in
fp32, as GPT-NeoX's fp32 rotary tables and torch.cat's type promotion do in the released code
(docs/published.md 1); attention then reads the fp32 keys. The new keys arrive in the model's
dtype (the reference's rotary writes 16-bit; docs/published.md 1): the first forward's cast copy
is the fresh cache, later forwards' ``torch.cat`` promotes them while copying, so a concat
update is two kernels (keys, values) in every profile.

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
        self.kv_dtype: str | None = None  # None: the model's dtype; "int8": quantised
        self.dtype: torch.dtype | None = None  # the model's dtype (what reads return)
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
        self.mode, self.dtype = mode, dtype
        self.key_dtype = key_dtype if mode == "concat" else None
        if mode != "static":
            self.k = self.v = None
            return
        shape = (batch, kv_heads, max_entries, head_dim)  # [B, K, T_max, dh]
        if self.kv_dtype == "int8":  # [B, K, T_max, dh + scale bytes]
            shape = (*shape[:3], head_dim + torch.finfo(dtype).bits // 8)
            dtype = torch.int8
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
        k, v = self._store(k), self._store(v)
        if self.mode == "concat":
            key_dtype = self.key_dtype if self.kv_dtype != "int8" else None
            if c == 0:  # a fresh cache, written once as transformers' first torch.cat does
                # keys in another dtype: the cast IS the cache's one write (no extra kernel)
                self.k = k.to(dtype=key_dtype or k.dtype, memory_format=torch.contiguous_format,
                              copy=True)
                self.v = v.clone(memory_format=torch.contiguous_format)
            else:
                if self.k is None or self.k.shape[2] != c:
                    raise RuntimeError(f"KVCache: expected {c} cached entries")
                # fp32 cached keys: torch.cat type-promotes the 16-bit new keys as it copies
                # them (one kernel reading them at s_a), as in the released code
                self.k = torch.cat([self.k, k], dim=2)  # [B, K, c+q, dh]
                self.v = torch.cat([self.v, v], dim=2)
            return self._load(self.k), self._load(self.v)
        assert self.k is not None and self.v is not None
        if c + q > self.k.shape[2]:
            raise RuntimeError(
                f"KVCache: {c + q} entries exceed the static cache of {self.k.shape[2]}"
            )
        self.k[:, :, c : c + q].copy_(k)
        self.v[:, :, c : c + q].copy_(v)
        # valid prefix only
        return self._load(self.k[:, :, : c + q]), self._load(self.v[:, :, : c + q])

    def _store(self, x: Tensor) -> Tensor:
        """New vectors ``[B, K, q, dh]`` in the storage format (int8: values, then scale bytes)."""
        if self.kv_dtype != "int8":
            return x
        scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny) / 127
        q = torch.round(x / scale).clamp(-127, 127).to(torch.int8)
        return torch.cat([q, scale.contiguous().view(torch.int8)], dim=-1)

    def _load(self, stored: Tensor) -> Tensor:
        """Stored vectors back in the model's dtype (int8: ``q * scale``)."""
        if self.kv_dtype != "int8":
            return stored
        assert self.dtype is not None
        dh = stored.shape[-1] - torch.finfo(self.dtype).bits // 8
        return stored[..., :dh].to(self.dtype) * stored[..., dh:].view(self.dtype)

    def update_at(self, k: Tensor, v: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Fixed-shape write at device positions `pos` ([q] long); returns the whole buffers.

        Used by the compiled one-token step: attention then reads all T_max entries under a mask.
        """
        if self.mode != "static" or self.k is None or self.v is None:
            raise RuntimeError("KVCache.update_at needs a static cache")
        self.k.index_copy_(2, pos, self._store(k))
        self.v.index_copy_(2, pos, self._store(v))
        return self._load(self.k), self._load(self.v)

    @property
    def nbytes(self) -> int:
        """Bytes currently held by k and v."""
        if self.k is None or self.v is None:
            return 0
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def extra_repr(self) -> str:
        shape = None if self.k is None else tuple(self.k.shape)
        return f"mode={self.mode}, k_shape={shape}"
