"""Memory footprint: weights, KV cache at the final context, activation workspace, max batch.

- Weights: parameters (SPEC.md 1.8) x s_w; the hf-legacy profile also holds the unused
  block-decoder embed_in (V x D_b, SPEC.md 1.3).
- KV cache per sequence (SPEC.md 2.3): 2 N K d_h s_kv bytes per entry; entries: vanilla S + G - 1
  (the last generated token is never fed back), block decoder n_p + n_g - 1 blocks, token
  decoder P + L_B - 1 local entries (reset every block; a static cache is allocated that
  size, a ``torch.cat`` one only grows to P + min(L_B, G) - 1). With ``torch.cat`` growth
  K and V are grown one after the other (reference/kv_cache.py, as transformers'
  DynamicCache does), so during a copy one layer's old and new K (or V) coexist: one extra
  K tensor, K d_h s_kv bytes per entry, of the stack whose tensor is largest.
- Workspace per sequence (an estimate, largest over the forwards of a request): the residual
  stream and one layer input (2 q D) plus the largest transient among the attention operands
  and scores (q (H + 2K) d_h, plus H q n_k when scores are materialised), the MLP intermediate
  (q F, 2 q F gated) and the logits (rows x V).
- Max batch: floor((M_cap - M_res - weights) / per-sequence memory).
- Per GPU (docs/parallelism.md 4): with tensor parallelism one rank holds its shard of every
  matrix, the replicated norms and row-parallel biases, KV of its KV heads (at least one), and a
  workspace whose head- and MLP-sized transients shrink by tp (the all-gathered logits do not).
  With pipeline stages each GPU holds its stage's layers (vanilla: first stage ceil(N/pp)
  layers plus the embedding, last stage floor(N/pp) plus final norm and LM head, a tied
  embedding stored on both; block: block decoder and embedder | the rest). The per-GPU
  figures are the largest stage's; the max batch is the smallest over stages.
"""

from __future__ import annotations

import sympy as sp

from . import symbols as sy
from .ops import ImplStructure, StackStructure, final_norm_params, layer_params, shard, stack_params
from .phases import n_generated_blocks, n_prompt_blocks
from .symbols import StackSymbols


def kv_bytes_per_entry(x: StackSymbols, tp: sp.Expr | None = None) -> sp.Expr:
    """K and V of every layer for one cached position (vanilla_410 bf16: 98,304 bytes); with
    `tp`, what one rank holds."""
    return 2 * x.N * shard(x, tp).K * x.d_h * sy.s_kv


def _cat_transient_per_entry(x: StackSymbols, tp: sp.Expr | None = None) -> sp.Expr:
    """One layer's K (or V) per entry: the extra copy alive during a ``torch.cat`` growth."""
    return shard(x, tp).K * x.d_h * sy.s_kv


def _forward_workspace(st: StackStructure, im: ImplStructure, x: StackSymbols, q: sp.Expr,
                       n_k: sp.Expr, head_rows: sp.Expr, tp: sp.Expr | None = None) -> sp.Expr:
    sh = shard(x, tp)
    attn = q * (sh.H + 2 * sh.K) * x.d_h
    if im.attention == "materialized":
        attn += sh.H * q * n_k
    mlp = q * sh.F * (1 if st.mlp == "gelu" else 2)
    return sy.s_a * (2 * q * x.D + sp.Max(attn, mlp, head_rows * sy.V))


def vanilla_memory(st: StackStructure, im: ImplStructure, tied: bool,
                   tp: sp.Expr | None = None, pp: sp.Expr | None = None) -> dict[str, sp.Expr]:
    x, S, G = sy.VANILLA, sy.S, sy.G
    params = stack_params(st, x) + (1 if tied else 2) * sy.V * x.D
    entries = S + G - 1

    def kv_of(tp_: sp.Expr | None) -> sp.Expr:
        kv_ = kv_bytes_per_entry(x, tp_) * entries
        if im.kv_cache == "concat":
            kv_ += _cat_transient_per_entry(x, tp_) * entries
        return kv_

    kv = kv_of(None)
    head_rows = sp.Integer(1) if im.logits == "last" else S
    work = _forward_workspace(st, im, x, S, S, head_rows)
    out = _finish(params * sy.s_w, kv, work)
    if tp is None and pp is None:
        return out
    # one GPU's share (docs/parallelism.md 4)
    t = sp.Integer(1) if tp is None else tp
    kv_gpu = kv_of(tp) if tp is not None else kv
    work_gpu = _forward_workspace(st, im, x, S, S, head_rows, tp)
    embed = sy.V * x.D / t
    if pp is None:
        w = (stack_params(st, x, tp) + (1 if tied else 2) * embed) * sy.s_w
        return out | _per_gpu([(w, kv_gpu, work_gpu)])
    first_n, last_n = sp.ceiling(x.N / pp), sp.floor(x.N / pp)
    lp = layer_params(st, x, tp)
    first = (embed + first_n * lp) * sy.s_w
    last = (last_n * lp + final_norm_params(st, x) + embed) * sy.s_w
    kv_layer = kv_gpu / x.N
    return out | _per_gpu([(first, first_n * kv_layer, work_gpu),
                           (last, last_n * kv_layer, work_gpu)])


def block_memory(sb: StackStructure, stt: StackStructure, im: ImplStructure,
                 unused_embedding: bool, tp: sp.Expr | None = None,
                 pp: sp.Expr | None = None) -> dict[str, sp.Expr]:
    xb, xt, P, L_B = sy.BLOCK_DEC, sy.TOKEN_DEC, sy.P, sy.L_B
    params = (sy.V * xb.D / L_B + stack_params(sb, xb) + P * xt.D * (xb.D + 1)
              + stack_params(stt, xt) + 2 * sy.V * xt.D)
    if unused_embedding:
        params += sy.V * xb.D
    n_p = n_prompt_blocks()
    blocks = n_p + n_generated_blocks() - 1
    local = P + L_B - 1
    if im.kv_cache == "concat":
        local = P + sp.Min(L_B, sy.G) - 1
    kv = kv_bytes_per_entry(xb) * blocks + kv_bytes_per_entry(xt) * local
    if im.kv_cache == "concat":
        kv += sp.Max(_cat_transient_per_entry(xb) * blocks, _cat_transient_per_entry(xt) * local)
    work = sp.Max(
        _forward_workspace(sb, im, xb, n_p, n_p, sp.Integer(0)),
        _forward_workspace(stt, im, xt, P, P, sp.Integer(1)),
    )
    out = _finish(params * sy.s_w, kv, work)
    if tp is None and pp is None:
        return out
    t = sp.Integer(1) if tp is None else tp
    # stage 0: embedder + block decoder; stage 1: expansion, token decoder, its embed_in and head
    w0 = sy.V * xb.D / L_B / t + stack_params(sb, xb, tp)
    if unused_embedding:
        w0 += sy.V * xb.D / t
    w1 = P * xt.D * (xb.D + 1) / t + stack_params(stt, xt, tp) + 2 * sy.V * xt.D / t
    kv0 = kv_bytes_per_entry(xb, tp) * blocks
    kv1 = kv_bytes_per_entry(xt, tp) * local
    work0 = _forward_workspace(sb, im, xb, n_p, n_p, sp.Integer(0), tp)
    work1 = _forward_workspace(stt, im, xt, P, P, sp.Integer(1), tp)
    t0 = t1 = sp.Integer(0)
    if im.kv_cache == "concat":  # the torch.cat transient, as above
        t0 = _cat_transient_per_entry(xb, tp) * blocks
        t1 = _cat_transient_per_entry(xt, tp) * local
    if pp is None:
        return out | _per_gpu([((w0 + w1) * sy.s_w, kv0 + kv1 + sp.Max(t0, t1),
                                sp.Max(work0, work1))])
    return out | _per_gpu([(w0 * sy.s_w, kv0 + t0, work0), (w1 * sy.s_w, kv1 + t1, work1)])


def _finish(weights: sp.Expr, kv: sp.Expr, work: sp.Expr) -> dict[str, sp.Expr]:
    per_sample = kv + work
    return {
        "weights_bytes": weights,
        "kv_cache_bytes_per_sample": kv,
        "workspace_bytes_per_sample": work,
        "memory_bytes_per_sample": per_sample,
        "memory_bytes_total": weights + sy.B * per_sample,
        "max_batch": sp.Max(0, sp.floor((sy.M_cap - sy.M_res - weights) / per_sample)),
        "weights_bytes_per_gpu": weights,
        "memory_bytes_per_gpu": weights + sy.B * per_sample,
        "kv_cache_bytes_per_sample_per_gpu": kv,
    }


def _per_gpu(stages: list[tuple[sp.Expr, sp.Expr, sp.Expr]]) -> dict[str, sp.Expr]:
    """Per-GPU memory of (weights, KV per sequence, workspace per sequence) per pipeline stage:
    the largest stage, and the max batch of the tightest one (every stage holds all B
    sequences' caches)."""
    fits = [sp.floor((sy.M_cap - sy.M_res - w) / (kv + work)) for w, kv, work in stages]
    return {
        "weights_bytes_per_gpu": sp.Max(*[w for w, _, _ in stages]),
        "memory_bytes_per_gpu": sp.Max(*[w + sy.B * (kv + work) for w, kv, work in stages]),
        "kv_cache_bytes_per_sample_per_gpu": sp.Max(*[kv for _, kv, _ in stages]),
        "max_batch": sp.Max(0, sp.Min(*fits)),
    }
