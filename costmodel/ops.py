"""The operator inventory: FLOPs and bytes of every op of one forward, as sympy expressions.

Op names equal the reference's module paths with layer indices dropped (docs/design.md idea 2):
``layers.attn.qkv`` is the fused QKV Linear of every layer of a vanilla model,
``token_decoder.layers.mlp.down`` the MLP down-projection of every token-decoder layer. The op
named after a layer itself (``layers``) is the residual addition in the layer's forward.

Conventions (one forward of batch B with q new positions per sequence and c cached entries):
- FLOPs count matmul-class work only, 2 per multiply-add (what `FlopCounterMode` counts);
  norms, activations, rotary and softmax are counted as memory traffic with 0 FLOPs.
- Attention over n_k = c + q keys executes 4*B*H*q*n_k*d_h FLOPs (QK^T and AV over the full,
  masked rectangle); the causal ("useful") part is 4*B*H*d_h*(q*c + q*(q+1)/2).
- Weight bytes are read once per forward, whatever the batch (a gather reads only its rows).
- Activation bytes: each op reads its inputs and writes its outputs once (no fusion across ops).
- KV bytes: the cache entries an op reads and writes (docs/model.md 2.3, 2.5).
Sizes per docs/model.md 1.6 / 1.8: QKV D -> (H + 2K) d_h, dense H d_h -> D, MLP D -> F -> D (gated: two
D -> F projections), LayerNorm 2D parameters, RMSNorm D.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import sympy as sp

from . import params as counts
from .collectives import allgather_sent_bytes, allgather_time, allreduce_sent_bytes, allreduce_time
from .implementation import SPLIT_K_CHUNK, STACK_ROLES, Implementation
from .spec import StackSpec
from .symbols import L_B, StackSymbols, V, W, q_kv, q_w, s_a, s_e, s_kv, s_kvs, s_w, s_wc

ZERO = sp.Integer(0)
ONE = sp.Integer(1)
# Token ids are int64 (torch.long): a lookup reads 8 bytes per id (docs/conventions.md).
ID_BYTES = sp.Integer(8)
# Boolean masks take one byte per element.
BOOL_BYTES = sp.Integer(1)


class StackStructure(NamedTuple):
    """The discrete choices of a stack that change the shape of its formulas."""

    mlp: str
    norm: str
    qkv_bias: bool
    out_bias: bool
    mlp_bias: bool
    parallel_residual: bool
    sliding_window: bool = False  # attention window W (docs/sliding-window.md)

    @classmethod
    def of(cls, stack: StackSpec) -> StackStructure:
        return cls(stack.mlp, stack.norm, stack.qkv_bias, stack.out_bias, stack.mlp_bias,
                   stack.parallel_residual, stack.sliding_window is not None)


class ImplStructure(NamedTuple):
    kv_cache: str
    logits: str
    attention: str
    skips_masked_tiles: bool
    # attention kind per stack, in STACK_ROLES order (vanilla, block decoder, token decoder)
    stack_attention: tuple[str, ...] = ("fused", "fused", "fused")
    token_decoder_generate_per_block: bool = False
    key_cache_fp32: bool = False
    cat_keeps_previous_cache: bool = False

    @classmethod
    def of(cls, impl: Implementation) -> ImplStructure:
        return cls(*impl.structure_key)

    def for_stack(self, prefix: str) -> ImplStructure:
        """This structure with `attention` set to the kind of the stack named by an op prefix
        ("" vanilla, "block_decoder.", "token_decoder.")."""
        role = prefix.rstrip(".") or "vanilla"
        return self._replace(attention=self.stack_attention[STACK_ROLES.index(role)])


@dataclass(frozen=True)
class OpCost:
    """Cost of one op summed over its `count` instances (e.g. all layers) in one forward."""

    name: str
    flops: sp.Expr  # executed matmul FLOPs
    useful_flops: sp.Expr  # causal part for attention; equal to flops elsewhere
    weight_bytes: sp.Expr
    act_read_bytes: sp.Expr
    act_write_bytes: sp.Expr
    kv_read_bytes: sp.Expr = ZERO
    kv_write_bytes: sp.Expr = ZERO
    kernels: sp.Expr = sp.Integer(1)  # kernel launches
    time_uses_useful: bool = False  # roofline time from useful FLOPs (flash-style attention)
    dequant_flops: sp.Expr = ZERO  # (de)quantisation, at the vector rate (docs/precision.md 3)
    # collectives (costmodel.collectives): the tensor bytes one rank hands to the collective,
    # the bytes all ranks send, and the alpha-beta time
    comm_bytes: sp.Expr = ZERO
    comm_sent_bytes: sp.Expr = ZERO
    comm_time: sp.Expr = ZERO

    @property
    def bytes(self) -> sp.Expr:
        return (self.weight_bytes + self.act_read_bytes + self.act_write_bytes
                + self.kv_read_bytes + self.kv_write_bytes)

    @property
    def time_flops(self) -> sp.Expr:
        return self.useful_flops if self.time_uses_useful else self.flops

    def scaled(self, n: sp.Expr) -> OpCost:
        """The same op repeated n times (n layers)."""
        vals = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in QUANTITIES:
            vals[key] = vals[key] * n
        return OpCost(**vals)


# The numeric fields of OpCost, in the order compiled functions return them.
QUANTITIES = ("flops", "useful_flops", "weight_bytes", "act_read_bytes", "act_write_bytes",
              "kv_read_bytes", "kv_write_bytes", "kernels", "dequant_flops", "comm_bytes",
              "comm_sent_bytes", "comm_time")


class Shard(NamedTuple):
    """What one tensor-parallel rank holds of a stack (costmodel.parallel; docs/parallelism.md 1).

    t: the tp degree (1: unsharded); H, K, F: query heads, KV heads (one, replicated, when
    K < t) and MLP columns per rank.
    """

    t: sp.Expr
    H: sp.Expr
    K: sp.Expr
    F: sp.Expr

    @property
    def sharded(self) -> bool:
        return self.t != 1


def shard(x: StackSymbols, tp: sp.Expr | None = None) -> Shard:
    if tp is None:
        return Shard(ONE, x.H, x.K, x.F)
    return Shard(tp, x.H / tp, sp.Max(x.K / tp, 1), x.F / tp)


def rank_symbols(x: StackSymbols, tp: sp.Expr | None) -> StackSymbols:
    """The stack's sizes as one tensor-parallel rank holds them (H, K, F per rank)."""
    sh = shard(x, tp)
    return x._replace(H=sh.H, K=sh.K, F=sh.F)


def allreduce_op(name: str, payload_bytes: sp.Expr, t: sp.Expr) -> OpCost:
    """A ring all-reduce of `payload_bytes` per rank (costmodel.collectives)."""
    return OpCost(name, ZERO, ZERO, ZERO, ZERO, ZERO, comm_bytes=payload_bytes,
                  comm_sent_bytes=allreduce_sent_bytes(payload_bytes, t),
                  comm_time=allreduce_time(payload_bytes, t))


def sharded(t: sp.Expr) -> sp.Expr:
    """1 with tensor parallelism (t >= 2 ranks), 0 at t = 1: the work only a sharded model does
    vanishes there, so the sharded formulas at tp = 1 are the single-GPU ones
    (docs/parallelism.md 1)."""
    return sp.Min(t - 1, 1)


def allgather_op(name: str, gathered_bytes: sp.Expr, t: sp.Expr) -> OpCost:
    """A ring all-gather whose result is `gathered_bytes` (comm_bytes: the result's size).

    Two kernels (docs/parallelism.md 6): the collective, which gathers the t parts one after
    another, and the concatenation that lays them out along the last dimension (vocabulary or
    expansion width), reading and writing the gathered bytes."""
    concat = sharded(t)
    return OpCost(name, ZERO, ZERO, ZERO, concat * gathered_bytes, concat * gathered_bytes,
                  kernels=1 + concat, comm_bytes=gathered_bytes,
                  comm_sent_bytes=allgather_sent_bytes(gathered_bytes, t),
                  comm_time=allgather_time(gathered_bytes, t))


def vocab_parallel_lookup(op: OpCost, ids: sp.Expr, elements: sp.Expr, t: sp.Expr) -> OpCost:
    """A lookup of `ids` token ids into `elements` activations as one rank of a vocab-parallel
    table runs it (docs/parallelism.md 1, 6): ``local = ids - lo``, ``local >= 0``,
    ``local < n``, their ``&``, ``local.clamp(0, n - 1)``, the lookup, the mask cast to the
    activation dtype and the product with it, 8 kernels. Ids are read five times (ID_BYTES)
    and written twice, three bool masks written and read back once more by ``&`` and the cast;
    the lookup's output is written, then read and written by the product, which also reads the
    cast mask (one element per id). Beyond the plain lookup `op` (which reads the ids once and
    writes the output) that is 7 kernels, with t >= 2. The rows gathered (weight bytes) are as
    unsharded."""
    extra = sharded(t)
    read = ids * (4 * ID_BYTES + 3 * BOOL_BYTES + s_a) + elements * s_a
    write = ids * (2 * ID_BYTES + 3 * BOOL_BYTES + s_a) + elements * s_a
    return replace(op, act_read_bytes=op.act_read_bytes + extra * read,
                   act_write_bytes=op.act_write_bytes + extra * write,
                   kernels=op.kernels + 7 * extra)


FP32_BYTES = sp.Integer(4)


def kv_pair_bytes(im: ImplStructure) -> sp.Expr:
    """Bytes of one key element plus one value element in the cache: 2 s_kv, or 4 + s_kv when
    keys are cached in fp32 (`Implementation.key_cache_fp32`, docs/published.md 1)."""
    return (FP32_BYTES if im.key_cache_fp32 else s_kv) + s_kv


def kv_position_bytes(im: ImplStructure, K: sp.Expr, d_h: sp.Expr) -> sp.Expr:
    """Bytes of one cached position's k and v over K heads of one layer: d_h elements each,
    plus an int8 cache's scale per vector, s_kvs (docs/precision.md 1)."""
    return K * (d_h * kv_pair_bytes(im) + 2 * s_kvs)


def _norm_params(st: StackStructure, D: sp.Expr) -> sp.Expr:
    return counts.norm_params(st.norm, D)


def linear_weight_bytes(d_in: sp.Expr, d_out: sp.Expr, bias: bool) -> sp.Expr:
    """Stored bytes of a Linear d_in -> d_out: weight elements (group scales and zeros
    amortised in s_w), per-output-channel scales, dense bias (docs/precision.md 1)."""
    return d_in * d_out * s_w + d_out * s_wc + (d_out * s_e if bias else 0)


def _linear(name: str, rows: sp.Expr, d_in: sp.Expr, d_out: sp.Expr, bias: bool) -> OpCost:
    """y = x W^T (+ b) on `rows` rows: 2*rows*d_in*d_out FLOPs; weight-only formats
    dequantise every weight element once per forward (q_w FLOPs each)."""
    f = 2 * rows * d_in * d_out
    return OpCost(name, f, f, linear_weight_bytes(d_in, d_out, bias),
                  rows * d_in * s_a, rows * d_out * s_a, dequant_flops=q_w * d_in * d_out)


def _elementwise(name: str, read: sp.Expr, write: sp.Expr, weights: sp.Expr = ZERO) -> OpCost:
    return OpCost(name, ZERO, ZERO, weights * s_e, read * s_a, write * s_a)


def _norm(name: str, st: StackStructure, rows: sp.Expr, D: sp.Expr) -> OpCost:
    return _elementwise(name, rows * D, rows * D, _norm_params(st, D))


def layer_ops(prefix: str, st: StackStructure, im: ImplStructure, x: StackSymbols,
              Bq: sp.Expr, B: sp.Expr, q: sp.Expr, c: sp.Expr,
              tp: sp.Expr | None = None) -> list[OpCost]:
    """Ops of ONE decoder layer (docs/model.md 1.6) for a forward of q new positions after c cached.

    Bq = B*q rows. Returned costs are for one layer; `stack_ops` scales them by N. With `tp`
    (a symbol) they are one rank's share of a Megatron-sharded layer plus its two all-reduces
    (docs/parallelism.md 1).
    """
    D, d_h = x.D, x.d_h
    sh = shard(x, tp)
    H, K, F = sh.H, sh.K, sh.F
    im = im.for_stack(prefix)
    p = f"{prefix}layers."
    n_k = c + q  # keys attended: cached plus new
    ops = [
        _norm(p + "ln_attn", st, Bq, D),
        _linear(p + "attn.qkv", Bq, D, (H + 2 * K) * d_h, st.qkv_bias),
        # rotary rewrites q and k (first rotary dims rotated, the rest passed through)
        _elementwise(p + "attn.rotary", Bq * (H + K) * d_h, Bq * (H + K) * d_h),
    ]
    new_kv = 2 * Bq * K * d_h  # k and v elements of the new positions
    pos = kv_position_bytes(im, K, d_h)  # one cached position's k and v (with int8 scales)
    quantise = dict(kernels=sp.Integer(2), dequant_flops=q_kv * new_kv)  # docs/precision.md 3
    if im.kv_cache == "static":
        # preallocated buffers written in place at positions c..c+q-1
        ops.append(OpCost(p + "attn.kv_cache", ZERO, ZERO, ZERO, new_kv * s_a, ZERO,
                          ZERO, Bq * pos, **quantise))
    else:
        # torch.cat(past, new): reads the old cache and writes the whole new one (docs/model.md 2.5.1)
        ops.append(OpCost(p + "attn.kv_cache", ZERO, ZERO, ZERO, new_kv * s_a, ZERO,
                          B * c * pos, B * n_k * pos, **quantise))
    dequant = q_kv * 2 * B * K * d_h * n_k  # int8 KV: every element read is dequantised
    attn_flops = 4 * B * H * q * n_k * d_h
    causal_flops = 4 * B * H * d_h * visible_keys(st, q, c)
    q_and_out = Bq * H * d_h
    # 1 when the forward has several new positions, 0 for a one-position step (q >= 1)
    several = sp.Min(q - 1, 1)
    grouped = sp.Min(H - K, 1)  # 1 with grouped-query attention (H > K), 0 with H = K
    # 1 when the compute dtype is narrower than fp32 (s_a < 4): casting the official profiles'
    # fp32 keys or scores to it is a kernel; 0 with fp32 compute (the cast is a no-op)
    narrow = sp.Min(FP32_BYTES - s_a, 1)
    if im.attention == "split_k" and q == 1:
        # flash-decoding (docs/published.md 1): the n_k keys split into chunks of SPLIT_K_CHUNK;
        # each chunk writes a partial output and its log-sum-exp (d_h + 1 per head), which a
        # second kernel reads and combines
        partial = B * H * (d_h + 1) * n_k / SPLIT_K_CHUNK
        core = OpCost(p + "attn.core", attn_flops, causal_flops, ZERO,
                      (q_and_out + partial) * s_a, (q_and_out + partial) * s_a,
                      B * n_k * pos, ZERO, kernels=sp.Integer(2),
                      time_uses_useful=True, dequant_flops=dequant)
    elif im.attention in ("fused", "split_k"):
        core = OpCost(p + "attn.core", attn_flops, causal_flops, ZERO, q_and_out * s_a,
                      q_and_out * s_a, B * n_k * pos, ZERO,
                      time_uses_useful=im.skips_masked_tiles, dequant_flops=dequant)
    elif im.key_cache_fp32:
        # GPT-NeoX's eager attention in the released code (docs/published.md 1), with 16-bit
        # compute: the keys are fp32, so are the scores [B, H, q, n_k]. Eight kernels: q cast
        # to fp32 (HF's rotary writes fp32 q; ours writes 16-bit, docs/conventions.md
        # "Kernels"), then zeros, baddbmm (reads the zeros and the fp32 q), the causal where
        # (reads the [q, n_k] bool mask), + the padding mask ([B, n_k] at s_a) and softmax,
        # each reading and writing the fp32 scores, a cast to the compute dtype, and AV
        # reading that copy and writing the output
        # (with fp32 compute, s_a = 4, the cast to the compute dtype is no kernel: `narrow`)
        scores = B * H * q * n_k
        masks = q * n_k * BOOL_BYTES + B * n_k * s_a
        core = OpCost(p + "attn.core", attn_flops, causal_flops, ZERO,
                      q_and_out * (s_a + FP32_BYTES) + masks
                      + scores * ((4 + narrow) * FP32_BYTES + s_a),
                      q_and_out * (FP32_BYTES + s_a) + scores * (5 * FP32_BYTES + narrow * s_a),
                      B * n_k * pos, ZERO, kernels=7 + narrow, dequant_flops=dequant)
    else:
        # eager (docs/conventions.md): QK^T writes the scores [B, H, q, n_k]; the scale, the
        # masked_fill (q > 1 only) and the softmax each read and write them; AV reads them.
        # With q > 1 the causal mask [q, n_k] (bool, 1 byte) is built per layer: ones, tril,
        # bitwise_not (each writes it, the last two read it), and masked_fill reads it.
        # With grouped heads and q > 1, grouping the queries under their KV head copies q.
        scores = B * H * q * n_k
        mask = 3 * several * q * n_k * BOOL_BYTES
        traffic = (1 + several * grouped) * q_and_out * s_a + (3 + several) * scores * s_a + mask
        core = OpCost(p + "attn.core", attn_flops, causal_flops, ZERO, traffic, traffic,
                      B * n_k * pos, ZERO,
                      kernels=4 + 4 * several + several * grouped, dequant_flops=dequant)
    if im.key_cache_fp32 and im.attention != "materialized":
        # the fp32 keys are cast to the compute dtype before the kernel (key.to(target_dtype)
        # in the released code, docs/published.md 1): a copy written and read back (none
        # with fp32 compute)
        cast = narrow * B * K * d_h * n_k * s_a
        core = replace(core, act_read_bytes=core.act_read_bytes + cast,
                       act_write_bytes=core.act_write_bytes + cast,
                       kernels=core.kernels + narrow)
    # Layout copies in the attention's own code (docs/conventions.md), each reading and writing
    # B q H d_h: with grouped KV heads (H > K > 1) gathering the query heads out of the fused
    # QKV layout (with K = 1 the gather is a view), and with q > 1 and H > 1 laying the output
    # [B, H, q, d_h] out as [B, q, H d_h] for the dense projection (views otherwise).
    copies = several * sp.Min(H - 1, 1) + grouped * sp.Min(K - 1, 1)
    ops.append(OpCost(p + "attn", ZERO, ZERO, ZERO, copies * q_and_out * s_a,
                      copies * q_and_out * s_a, kernels=copies))
    ops += [core, _linear(p + "attn.dense", Bq, H * d_h, D, st.out_bias)]
    if sh.sharded:  # row-parallel output: partial sums of [B, q, D] all-reduced
        ops.append(allreduce_op(p + "attn.allreduce", Bq * D * s_a, sh.t))
    ops.append(_norm(p + "ln_mlp", st, Bq, D))
    if st.mlp == "gelu":
        ops += [
            _linear(p + "mlp.up", Bq, D, F, st.mlp_bias),
            _elementwise(p + "mlp.act", Bq * F, Bq * F),
        ]
    else:
        ops += [
            _linear(p + "mlp.gate", Bq, D, F, st.mlp_bias),
            _linear(p + "mlp.up", Bq, D, F, st.mlp_bias),
            # eager: silu(gate) in ``mlp.act``, then the product with up in the MLP's own code
            _elementwise(p + "mlp.act", Bq * F, Bq * F),
            _elementwise(p + "mlp", 2 * Bq * F, Bq * F),
        ]
    ops.append(_linear(p + "mlp.down", Bq, F, D, st.mlp_bias))
    if sh.sharded:
        ops.append(allreduce_op(p + "mlp.allreduce", Bq * D * s_a, sh.t))
    # Both forms are two eager adds (x + attn, then + mlp), each reading two [Bq, D] tensors and
    # writing one: 4 reads, 2 writes, 2 kernels (docs/conventions.md; no fusion across ops).
    ops.append(dataclasses.replace(_elementwise(prefix + "layers", 4 * Bq * D, 2 * Bq * D),
                                   kernels=sp.Integer(2)))
    return ops


def visible_keys(st: StackStructure, q: sp.Expr, c: sp.Expr) -> sp.Expr:
    """Keys the q new queries see in total, summed over the queries (causal, after c cached).

    Full attention: q c + q (q + 1) / 2. With a window W (docs/sliding-window.md) query i of a
    prefill (c = 0) sees min(i, W) keys: m (m + 1) / 2 + (q - m) W with m = min(q, W). Decode
    phases keep c + q <= W themselves (the cache stops growing at the window), so the full form
    holds there.
    """
    if st.sliding_window and c == 0 and q != 1:
        m = sp.Min(q, W)
        return m * (m + 1) / 2 + (q - m) * W
    return q * c + q * (q + 1) / 2


def stack_ops(prefix: str, st: StackStructure, im: ImplStructure, x: StackSymbols,
              B: sp.Expr, q: sp.Expr, c: sp.Expr, *, embed: bool,
              head_rows: sp.Expr | None, tp: sp.Expr | None = None) -> list[OpCost]:
    """One forward of a stack: optional token embedding, N layers, final norm, optional LM head.

    head_rows: LM-head rows per sequence (None: no head, as in the block decoder). With `tp`
    the embedding and LM head are vocab-parallel (docs/parallelism.md 1): the masked lookup is
    all-reduced, the V/tp logits of each rank all-gathered.
    """
    Bq = B * q
    t = ONE if tp is None else tp
    ops: list[OpCost] = []
    if embed:
        # gather: reads the Bq token ids and only the Bq rows it looks up (dense table, s_e);
        # sharded, every rank gathers Bq rows of its shard, out-of-range ids clamped and masked
        ops.append(OpCost(prefix + "embed_in", ZERO, ZERO, Bq * x.D * s_e, Bq * ID_BYTES,
                          Bq * x.D * s_a))
        if tp is not None:
            ops[-1] = vocab_parallel_lookup(ops[-1], Bq, Bq * x.D, t)
            ops.append(allreduce_op(prefix + "embed_in.allreduce", Bq * x.D * s_a, t))
    ops += [op.scaled(x.N) for op in layer_ops(prefix, st, im, x, Bq, B, q, c, tp)]
    ops.append(_norm(prefix + "final_norm", st, Bq, x.D))
    if head_rows is not None:
        ops.append(_linear(prefix + "lm_head", B * head_rows, x.D, V / t, bias=False))
        if tp is not None:
            ops.append(allgather_op(prefix + "lm_head.allgather", B * head_rows * V * s_a, t))
    return ops


def embedder_ops(B: sp.Expr, n_blocks: sp.Expr, D_b: sp.Expr,
                 tp: sp.Expr | None = None) -> list[OpCost]:
    """Lookup + concat embedder (docs/model.md 1.2): L_B rows of width D_b/L_B per block = D_b.

    With `tp`: vocab-parallel like ``embed_in`` (masked lookup, then an all-reduce)."""
    rows = B * n_blocks
    ops = [OpCost("embedder", ZERO, ZERO, rows * D_b * s_e, rows * L_B * ID_BYTES,
                  rows * D_b * s_a)]
    if tp is not None:
        ops[0] = vocab_parallel_lookup(ops[0], rows * L_B, rows * D_b, tp)
        ops.append(allreduce_op("embedder.allreduce", rows * D_b * s_a, tp))
    return ops


def expansion_ops(B: sp.Expr, D_b: sp.Expr, P: sp.Expr, D_t: sp.Expr,
                  tp: sp.Expr | None = None) -> list[OpCost]:
    """Expansion Linear D_b -> P*D_t with bias, on one context embedding (docs/model.md 1.4).

    With `tp`: column-parallel (P*D_t/tp outputs per rank), then all-gathered."""
    t = ONE if tp is None else tp
    ops = [_linear("token_decoder.expansion", B, D_b, P * D_t / t, bias=True)]
    if tp is not None:
        ops.append(allgather_op("token_decoder.expansion.allgather", B * P * D_t * s_a, t))
    return ops


def layer_weight_bytes(st: StackStructure, x: StackSymbols, tp: sp.Expr | None = None
                       ) -> sp.Expr:
    """Stored bytes of one layer: `linear_weight_bytes` of every linear, norms at s_e (docs/model.md
    1.8: 12D^2 + 13D parameters per NeoX layer, each at its precision's bytes). With `tp`, what
    one rank holds (docs/parallelism.md 1): column-parallel linears keep their sharded output
    columns with those columns' scales and biases; row-parallel ones a slice of the inputs and
    every output channel's scale and bias; norms replicated."""
    sh = shard(x, tp)
    linears = counts.layer_linears(x.D, sh.H, sh.K, x.d_h, sh.F, mlp=st.mlp,
                                   qkv_bias=st.qkv_bias, out_bias=st.out_bias,
                                   mlp_bias=st.mlp_bias)
    return (sum(linear_weight_bytes(*lin) for lin in linears)
            + 2 * _norm_params(st, x.D) * s_e)


def final_norm_weight_bytes(st: StackStructure, x: StackSymbols) -> sp.Expr:
    return _norm_params(st, x.D) * s_e


def stack_weight_bytes(st: StackStructure, x: StackSymbols, tp: sp.Expr | None = None
                       ) -> sp.Expr:
    """Stored bytes of a stack's layers and final norm (per rank with `tp`)."""
    return x.N * layer_weight_bytes(st, x, tp) + final_norm_weight_bytes(st, x)


def embedder_op(B: sp.Expr, n_blocks: sp.Expr, D_b: sp.Expr) -> OpCost:
    """The unsharded embedder alone (`embedder_ops` without tensor parallelism)."""
    return embedder_ops(B, n_blocks, D_b)[0]


def expansion_op(B: sp.Expr, D_b: sp.Expr, P: sp.Expr, D_t: sp.Expr) -> OpCost:
    """The unsharded expansion Linear alone (`expansion_ops` without tensor parallelism)."""
    return expansion_ops(B, D_b, P, D_t)[0]
