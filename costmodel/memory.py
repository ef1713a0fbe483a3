"""Memory footprint: weights, KV cache at the final context, activation workspace, max batch.

- Weights: parameters (SPEC.md 1.8) x their bytes: linears at s_w plus s_wc per output channel,
  embeddings, norms and biases at s_e (docs/precision.md 1); the hf-legacy profile also holds
  the unused block-decoder embed_in (V x D_b, SPEC.md 1.3).
- KV cache per sequence (SPEC.md 2.3): 2 N K (d_h s_kv + s_kvs) bytes per entry; entries: vanilla S + G - 1
  (the last generated token is never fed back), block decoder n_p + n_g - 1 blocks, token
  decoder P + L_B - 1 local entries (reset every block; a static cache is allocated that
  size, a ``torch.cat`` one only grows to P + min(L_B, G) - 1). With ``torch.cat`` growth
  K and V are grown one after the other (reference/kv_cache.py, as transformers'
  DynamicCache does), so during a copy one layer's old and new K (or V) coexist: one extra
  K tensor, K d_h s_kv bytes per entry, of the stack whose tensor is largest. The official
  profile's legacy tuple cache (docs/published.md 1) keeps the previous tuple of every layer
  alive until the forward returns: the transient is then the whole cache of the stack being
  stepped (the largest), and keys are cached in fp32 (4 + s_kv bytes per k, v element pair).
  ``kv_transient_bytes_per_sample`` (in the formulas, not an `Estimate` field) is that term.
- Workspace per sequence (an estimate, largest over the forwards of a request): the residual
  stream and one layer input (2 q D) plus the largest transient among the attention operands
  and scores (q (H + 2K) d_h, plus H q n_k when scores are materialised), the MLP intermediate
  (q F, 2 q F gated) and the logits (rows x V).
- Max batch: floor((M_cap - M_res - weights) / per-sequence memory).
"""

from __future__ import annotations

import sympy as sp

from . import symbols as sy
from .ops import (
    ImplStructure,
    StackStructure,
    kv_position_bytes,
    linear_weight_bytes,
    stack_weight_bytes,
)
from .phases import n_generated_blocks, n_prompt_blocks
from .symbols import StackSymbols


def kv_bytes_per_entry(x: StackSymbols, im: ImplStructure | None = None) -> sp.Expr:
    """K and V of every layer for one cached position (vanilla_410 bf16: 98,304 bytes)."""
    if im is None:
        return 2 * x.N * x.K * (x.d_h * sy.s_kv + sy.s_kvs)
    return x.N * kv_position_bytes(im, x.K, x.d_h)


def _cat_transient(im: ImplStructure, caches: list[tuple[StackSymbols, sp.Expr]]) -> sp.Expr:
    """Extra bytes alive while a ``torch.cat`` grows the cache (module docstring): one layer's
    K per entry, or the previous tuple of the whole stack; the largest over the stacks."""
    if im.kv_cache != "concat":
        return sp.Integer(0)
    if im.cat_keeps_previous_cache:
        return sp.Max(*(kv_bytes_per_entry(x, im) * n for x, n in caches))
    return sp.Max(*(x.K * (x.d_h * sy.s_kv + sy.s_kvs) * n for x, n in caches))


def _forward_workspace(st: StackStructure, im: ImplStructure, x: StackSymbols, q: sp.Expr,
                       n_k: sp.Expr, head_rows: sp.Expr) -> sp.Expr:
    attn = q * (x.H + 2 * x.K) * x.d_h * sy.s_a
    if im.attention == "materialized":  # the caller passes the stack's kind (for_stack)
        if im.key_cache_fp32:  # fp32 scores, input and output of one kernel alive (ops.py)
            attn += 2 * 4 * x.H * q * n_k
        else:
            attn += x.H * q * n_k * sy.s_a
    mlp = q * x.F * (1 if st.mlp == "gelu" else 2) * sy.s_a
    return sy.s_a * 2 * q * x.D + sp.Max(attn, mlp, head_rows * sy.V * sy.s_a)


def vanilla_memory(st: StackStructure, im: ImplStructure, tied: bool) -> dict[str, sp.Expr]:
    x, S, G = sy.VANILLA, sy.S, sy.G
    # embedding table dense (s_e); an untied LM head is a linear in the weight format
    weights = stack_weight_bytes(st, x) + sy.V * x.D * sy.s_e
    if not tied:
        weights += linear_weight_bytes(x.D, sy.V, bias=False)
    entries = S + G - 1
    transient = _cat_transient(im, [(x, entries)])
    kv = kv_bytes_per_entry(x, im) * entries + transient
    head_rows = sp.Integer(1) if im.logits == "last" else S
    work = _forward_workspace(st, im.for_stack(""), x, S, S, head_rows)
    return _finish(weights, kv, work, transient)


def block_memory(sb: StackStructure, stt: StackStructure, im: ImplStructure,
                 unused_embedding: bool) -> dict[str, sp.Expr]:
    xb, xt, P, L_B = sy.BLOCK_DEC, sy.TOKEN_DEC, sy.P, sy.L_B
    # lookup tables dense (s_e); expansion and LM head are linears in the weight format
    weights = (sy.V * xb.D / L_B * sy.s_e + stack_weight_bytes(sb, xb)
               + linear_weight_bytes(xb.D, P * xt.D, bias=True) + stack_weight_bytes(stt, xt)
               + sy.V * xt.D * sy.s_e + linear_weight_bytes(xt.D, sy.V, bias=False))
    if unused_embedding:
        weights += sy.V * xb.D * sy.s_e
    n_p = n_prompt_blocks()
    blocks = n_p + n_generated_blocks() - 1
    local = P + L_B - 1
    if im.kv_cache == "concat":
        local = P + sp.Min(L_B, sy.G) - 1
    transient = _cat_transient(im, [(xb, blocks), (xt, local)])
    kv = kv_bytes_per_entry(xb, im) * blocks + kv_bytes_per_entry(xt, im) * local + transient
    work = sp.Max(
        _forward_workspace(sb, im.for_stack("block_decoder."), xb, n_p, n_p, sp.Integer(0)),
        _forward_workspace(stt, im.for_stack("token_decoder."), xt, P, P, sp.Integer(1)),
    )
    return _finish(weights, kv, work, transient)


def _finish(weights: sp.Expr, kv: sp.Expr, work: sp.Expr, transient: sp.Expr
            ) -> dict[str, sp.Expr]:
    per_sample = kv + work
    return {
        "weights_bytes": weights,
        "kv_transient_bytes_per_sample": transient,
        "kv_cache_bytes_per_sample": kv,
        "workspace_bytes_per_sample": work,
        "memory_bytes_per_sample": per_sample,
        "memory_bytes_total": weights + sy.B * per_sample,
        "max_batch": sp.Max(0, sp.floor((sy.M_cap - sy.M_res - weights) / per_sample)),
    }
