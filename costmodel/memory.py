"""Memory footprint: weights, KV cache at the final context, activation workspace, max batch.

- Weights: parameters (docs/model.md 1.8) x their bytes: linears at s_w plus s_wc per output channel,
  embeddings, norms and biases at s_e (docs/precision.md 1); the hf-legacy profile also holds
  the unused block-decoder embed_in (V x D_b, docs/model.md 1.3).
- KV cache per sequence (docs/model.md 2.3): 2 N K (d_h s_kv + s_kvs) bytes per entry; entries: vanilla S + G - 1
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
- Per GPU (docs/parallelism.md 4): with tensor parallelism one rank holds its shard of every
  matrix, the replicated norms and row-parallel biases, KV of its KV heads (at least one), and a
  workspace whose head- and MLP-sized transients shrink by tp (the all-gathered logits do not):
  the formulas above on the rank's stack sizes (`ops.rank_symbols`). With pipeline stages each
  GPU holds its stage's layers (vanilla: first stage ceil(N/pp) layers plus the embedding, last
  stage floor(N/pp) plus final norm and LM head, a tied embedding stored on both; block: block
  decoder and embedder | the rest). The per-GPU figures are the largest stage's; the max batch
  is the smallest over stages.
"""

from __future__ import annotations

import sympy as sp

from . import symbols as sy
from .ops import (
    ImplStructure,
    StackStructure,
    final_norm_weight_bytes,
    kv_position_bytes,
    layer_weight_bytes,
    linear_weight_bytes,
    rank_symbols,
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


def vanilla_memory(st: StackStructure, im: ImplStructure, tied: bool,
                   tp: sp.Expr | None = None, pp: sp.Expr | None = None) -> dict[str, sp.Expr]:
    x, S, G = sy.VANILLA, sy.S, sy.G
    # embedding table dense (s_e); an untied LM head is a linear in the weight format
    weights = stack_weight_bytes(st, x) + sy.V * x.D * sy.s_e
    if not tied:
        weights += linear_weight_bytes(x.D, sy.V, bias=False)
    entries = S + G - 1
    if st.sliding_window:  # the cache keeps the last W entries (docs/sliding-window.md)
        entries = sp.Min(entries, sy.W)
    transient = _cat_transient(im, [(x, entries)])
    kv = kv_bytes_per_entry(x, im) * entries + transient
    head_rows = sp.Integer(1) if im.logits == "last" else S
    work = _forward_workspace(st, im.for_stack(""), x, S, S, head_rows)
    out = _finish(weights, kv, work, transient)
    if tp is None and pp is None:
        return out
    # one GPU's share (docs/parallelism.md 4): the same formulas on one rank's sizes; weights in
    # their stored format, each linear's scales sharded with its rows or columns
    t = 1 if tp is None else tp
    xr = rank_symbols(x, tp)
    kv_gpu = kv_bytes_per_entry(xr, im) * entries
    tr_gpu = _cat_transient(im, [(xr, entries)])
    work_gpu = _forward_workspace(st, im.for_stack(""), xr, S, S, head_rows)
    embed = sy.V * x.D / t * sy.s_e  # vocab-parallel lookup table, dense
    head = embed if tied else linear_weight_bytes(x.D, sy.V / t, bias=False)
    if pp is None:
        w = stack_weight_bytes(st, x, tp) + embed + (0 if tied else head)
        return out | _per_gpu([(w, kv_gpu, tr_gpu, work_gpu)])
    first_n, last_n = sp.ceiling(x.N / pp), sp.floor(x.N / pp)
    lw = layer_weight_bytes(st, x, tp)
    first = embed + first_n * lw
    last = last_n * lw + final_norm_weight_bytes(st, x) + head
    kv_layer = kv_gpu / x.N
    return out | _per_gpu([(first, first_n * kv_layer, tr_gpu, work_gpu),
                           (last, last_n * kv_layer, tr_gpu, work_gpu)])


def block_memory(sb: StackStructure, stt: StackStructure, im: ImplStructure,
                 unused_embedding: bool, tp: sp.Expr | None = None,
                 pp: sp.Expr | None = None) -> dict[str, sp.Expr]:
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
    out = _finish(weights, kv, work, transient)
    if tp is None and pp is None:
        return out
    t = 1 if tp is None else tp
    xbr, xtr = rank_symbols(xb, tp), rank_symbols(xt, tp)
    # stage 0: embedder + block decoder; stage 1: expansion, token decoder, its embed_in and head
    # (stored formats as above, sharded per rank)
    w0 = sy.V * xb.D / L_B / t * sy.s_e + stack_weight_bytes(sb, xb, tp)
    if unused_embedding:
        w0 += sy.V * xb.D / t * sy.s_e
    w1 = (linear_weight_bytes(xb.D, P * xt.D / t, bias=True) + stack_weight_bytes(stt, xt, tp)
          + sy.V * xt.D / t * sy.s_e + linear_weight_bytes(xt.D, sy.V / t, bias=False))
    kv0 = kv_bytes_per_entry(xbr, im) * blocks
    kv1 = kv_bytes_per_entry(xtr, im) * local
    work0 = _forward_workspace(sb, im.for_stack("block_decoder."), xbr, n_p, n_p, sp.Integer(0))
    work1 = _forward_workspace(stt, im.for_stack("token_decoder."), xtr, P, P, sp.Integer(1))
    if pp is None:
        return out | _per_gpu([(w0 + w1, kv0 + kv1,
                                _cat_transient(im, [(xbr, blocks), (xtr, local)]),
                                sp.Max(work0, work1))])
    return out | _per_gpu([(w0, kv0, _cat_transient(im, [(xbr, blocks)]), work0),
                           (w1, kv1, _cat_transient(im, [(xtr, local)]), work1)])


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
        "weights_bytes_per_gpu": weights,
        "memory_bytes_per_gpu": weights + sy.B * per_sample,
        "kv_cache_bytes_per_sample_per_gpu": kv,
        "kv_transient_bytes_per_sample_per_gpu": transient,
    }


def _per_gpu(stages: list[tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]]) -> dict[str, sp.Expr]:
    """Per-GPU memory of (weights, KV cache per sequence at rest, its ``torch.cat`` transient,
    workspace per sequence) per pipeline stage: the largest stage, and the max batch of the
    tightest one (every stage holds all B sequences' caches)."""
    per = [(w, kv + tr, tr, work) for w, kv, tr, work in stages]
    fits = [sp.floor((sy.M_cap - sy.M_res - w) / (kv + work)) for w, kv, _, work in per]
    return {
        "weights_bytes_per_gpu": sp.Max(*[w for w, _, _, _ in per]),
        "memory_bytes_per_gpu": sp.Max(*[w + sy.B * (kv + work) for w, kv, _, work in per]),
        "kv_cache_bytes_per_sample_per_gpu": sp.Max(*[kv for _, kv, _, _ in per]),
        "kv_transient_bytes_per_sample_per_gpu": sp.Max(*[tr for _, _, tr, _ in per]),
        "max_batch": sp.Max(0, sp.Min(*fits)),
    }
