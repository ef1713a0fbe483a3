"""Self-attention: fused QKV projection, rotary, KV cache, attention core, output projection.

Module paths (cost-model operator names): ``attn.qkv``, ``attn.rotary``, ``attn.kv_cache``,
``attn.core``, ``attn.dense`` (docs/model.md 1.6, generalised to GQA).

QKV layout. The fused projection ``D -> (H + 2K) * dh`` is laid out per key/value head as
``[q_1 .. q_G | k | v]`` blocks of `dh` (G = H / K query heads per KV head). For K = H this is
exactly GPT-NeoX's per-head ``[q|k|v]`` layout (docs/model.md 1.6), so GPT-NeoX weights load as they
are; query head ``h`` uses KV head ``h // G``, as transformers' `repeat_kv` does.

Attention core FLOPs (what `torch.utils.flop_counter.FlopCounterMode` counts, see
`reference.counting`): ``4 * B * H * q * n_k * dh`` per layer, with n_k = c + q keys, the full
rectangle (masking does not reduce the count), for both paths:
- fast path: ``F.scaled_dot_product_attention(..., enable_gqa=K < H)``. A one-position query
  attends to every cached key with no mask; a prefill with c = 0 uses ``is_causal=True``;
  q > 1 with c > 0 passes an explicit lower-right boolean mask (``is_causal`` is top-left
  aligned; docs/engineering-notes.md).
- materialised path (``hf-legacy``, docs/model.md 1.6): ``scores = (q @ k^T) * dh^-0.5`` as a
  ``[B, K, G*q, n_k]`` tensor (query heads grouped under their KV head, no K/V copies),
  causal boolean mask, softmax, ``@ v``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from costmodel.spec import StackSpec

from .kv_cache import KVCache
from .linear import Linear
from .rotary import Rotary


@dataclass
class Step:
    """What every layer of one stack forward needs besides its activations.

    c: entries cached before this forward (a Python int: no host synchronisation).
    cos, sin: rotary tables (cos, signed sin; `rotary_table`) of the q new positions, ``[q, r]``.
    use_cache: read and write the layer caches (False for training and full recomputes).
    pos, mask: only for the fixed-shape step (compiled decoding): device positions ``[q]`` and
      a ``[q, T_max]`` boolean mask over the whole static buffer (True = attend).
    """

    c: int
    cos: Tensor
    sin: Tensor
    use_cache: bool
    pos: Tensor | None = None
    mask: Tensor | None = None


def causal_mask(q_len: int, n_keys: int, device: torch.device) -> Tensor:
    """Lower-right aligned causal mask ``[q, n_k]``: query i sees keys 0 .. n_k - q + i."""
    return torch.ones(q_len, n_keys, dtype=torch.bool, device=device).tril(n_keys - q_len)


class AttentionCore(nn.Module):
    """softmax(q k^T / sqrt(dh)) v over the new queries and the cached keys (no parameters).

    ``materialize`` selects the explicit matmul-softmax-matmul of the hf-legacy profile;
    otherwise scaled_dot_product_attention runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.materialize = False
        # transformers 4.39 GPT-NeoX eager attention (`_neox_eager`), set by `setup_neox_eager`
        # (plain attributes, not buffers: one pair shared by every layer of a stack)
        self.blocked: Tensor | None = None  # [T, T] bool, True above the diagonal
        self.padding: Tensor | None = None  # [B, 1, 1, 1, T] additive padding mask (zeros)

    def setup_neox_eager(self, blocked: Tensor | None, padding: Tensor | None) -> None:
        """Run `_neox_eager` with these masks (None, None: the generic paths)."""
        self.blocked, self.padding = blocked, padding

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                cached: bool = False) -> Tensor:
        # q: [B, H, q, dh]; k, v: [B, K, n_k, dh]; mask: [q, n_k] bool or None (causal);
        # cached: a forward of the request the cache was set up for (a training forward after
        # it takes the generic paths)
        n_q, n_k = q.shape[2], k.shape[2]
        if self.materialize and cached and self.padding is not None:
            if mask is not None:
                raise RuntimeError("AttentionCore: the GPT-NeoX eager path takes no mask")
            return self._neox_eager(q, k, v)
        # keys cached in fp32 (official profiles) are read, then cast (one kernel before the
        # fused kernel; the tracer counts it as such, docs/conventions.md "Fused kernels")
        k = k.to(q.dtype)
        if mask is None and n_q > 1 and n_k > n_q:
            mask = causal_mask(n_q, n_k, q.device)
        if self.materialize:
            return self._materialized(q, k, v, mask)
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and n_q > 1,
            enable_gqa=k.shape[1] != q.shape[1],
        )

    def _neox_eager(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """GPT-NeoX's eager ``_attn`` in transformers 4.39 (docs/published.md 1), kernel by
        kernel, in the keys' dtype (fp32 in the official profiles): zeros, ``baddbmm`` with
        alpha = dh^-0.5, the causal mask (HF's ``where(causal, scores, min)``, here the same
        numbers as ``masked_fill`` of its complement), + the additive padding mask, softmax,
        a cast to v's dtype, AV. HF's rotary writes fp32 q; this reference's writes 16-bit q,
        cast here by one kernel. Query heads are grouped under their KV head (GQA) by a view
        of that contiguous copy."""
        assert self.blocked is not None and self.padding is not None
        b, h, n_q, dh = q.shape
        kv, n_k = k.shape[1], k.shape[2]
        g = h // kv
        qf = q.to(dtype=k.dtype, memory_format=torch.contiguous_format, copy=True)
        qf = qf.view(b * kv, g * n_q, dh)  # [B K, G q, dh]
        scores = torch.zeros(b * kv, g * n_q, n_k, dtype=k.dtype, device=q.device)
        scores = torch.baddbmm(scores, qf, k.transpose(-1, -2).reshape(b * kv, dh, n_k),
                               beta=1.0, alpha=dh**-0.5)
        scores = scores.view(b, kv, g, n_q, n_k)
        # query i (position n_k - q + i) may not see keys after it; a decode step masks nothing
        # but still runs the kernel, as HF does
        blocked = self.blocked[n_k - n_q : n_k, :n_k]  # [q, n_k]
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
        scores = scores + self.padding[..., :n_k]  # [B, 1, 1, 1, n_k]
        probs = torch.softmax(scores, dim=-1).to(v.dtype).view(b, kv, g * n_q, n_k)
        return (probs @ v).view(b, h, n_q, dh)  # [B, H, q, dh]

    @staticmethod
    def _materialized(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, h, n_q, dh = q.shape
        kv, n_k = k.shape[1], k.shape[2]
        g = h // kv
        qg = q.reshape(b, kv, g * n_q, dh)  # query heads grouped under their KV head
        scores = (qg @ k.transpose(-1, -2)) * dh**-0.5  # [B, K, G*q, n_k]
        scores = scores.view(b, kv, g, n_q, n_k)
        if mask is None and n_q > 1:
            mask = causal_mask(n_q, n_k, q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1).view(b, kv, g * n_q, n_k)
        return (probs @ v).view(b, h, n_q, dh)  # [B, H, q, dh]


class Attention(nn.Module):
    """Causal self-attention with rotary and a KV cache (docs/model.md 1.6)."""

    def __init__(self, stack: StackSpec) -> None:
        super().__init__()
        self.n_heads, self.kv_heads, self.head_dim = stack.n_heads, stack.kv_heads, stack.dh
        self.qkv = Linear(
            stack.d_model, (stack.n_heads + 2 * stack.kv_heads) * stack.dh, bias=stack.qkv_bias
        )
        self.rotary = Rotary(stack.rotary_dims, stack.rotary_base)
        self.kv_cache = KVCache()
        self.core = AttentionCore()
        self.dense = Linear(stack.n_heads * stack.dh, stack.d_model, bias=stack.out_bias)

    def forward(self, x: Tensor, step: Step) -> Tensor:
        # x: [B, q, D]
        b, n_q, _ = x.shape
        kv, g, dh = self.kv_heads, self.n_heads // self.kv_heads, self.head_dim
        qkv = self.qkv(x).view(b, n_q, kv, g + 2, dh)  # per KV head: [q_1..q_G | k | v]
        qk = self.rotary(qkv[:, :, :, : g + 1], step.cos, step.sin)  # [B, q, K, G+1, dh]
        q = qk[:, :, :, :g].reshape(b, n_q, kv * g, dh).transpose(1, 2)  # [B, H, q, dh]
        k = qk[:, :, :, g].transpose(1, 2)  # [B, K, q, dh]
        v = qkv[:, :, :, g + 1].transpose(1, 2)  # [B, K, q, dh]
        if step.pos is not None:
            k, v = self.kv_cache.update_at(k, v, step.pos)  # [B, K, T_max, dh]
        elif step.use_cache:
            k, v = self.kv_cache.update(k, v, step.c)  # [B, K, c+q, dh]
        out = self.core(q, k, v, step.mask, cached=step.use_cache)  # [B, H, q, dh]
        return self.dense(out.transpose(1, 2).reshape(b, n_q, self.n_heads * dh))
