"""The phases of a request, each a forward (or a range of forwards) over the op inventory.

Vanilla (docs/model.md 2.1): ``prefill`` over the S prompt tokens (the first new token comes from its
logits), then ``decode``: G - 1 one-token steps at cached context c = S .. S + G - 2.

Block Transformer (docs/model.md 2.2), with n_p = ceil(S / L_B) prompt blocks (left-padded),
n_g = ceil(G / L_B) generated blocks and g_last = G - (n_g - 1) L_B tokens in the last block:
- ``prefill``: embedder over the n_p prompt blocks, block decoder over n_p positions;
- ``block_decoder.step``: for blocks j = 1 .. n_g - 1, the embedder on the block just generated
  and one block-decoder position at cached context n_p + j - 1;
- ``token_decoder.prefix``: for every generated block, the expansion layer and one forward over
  the P prefix vectors that emits the block's first token (LM head on 1 row);
- ``token_decoder.step``: single-token forwards k = 2 .. g at local context P + k - 2
  (g = L_B for the first n_g - 1 blocks, g_last for the last one); the local cache is reset
  every block, so these costs do not depend on j.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sympy as sp

from . import symbols as sy
from .collectives import send_time
from .ops import ImplStructure, OpCost, StackStructure, embedder_ops, expansion_ops, stack_ops

ONE = sp.Integer(1)


@dataclass(frozen=True)
class Phase:
    """Ops of one forward, repeated for index = lo..hi (if any) and `repeat` times over that."""

    name: str
    ops: tuple[OpCost, ...]
    index: sp.Symbol | None = None
    lo: sp.Expr = ONE
    hi: sp.Expr = ONE
    repeat: sp.Expr = ONE
    forwards: sp.Expr = ONE  # forward calls per occurrence
    generate_calls: sp.Expr = sp.Integer(0)  # HF generate() calls per occurrence
    # how much of this phase happens before the first generated token exists
    ttft: Literal["all", "one", "none"] = "none"

    @property
    def occurrences(self) -> sp.Expr:
        return self.repeat * (self.hi - self.lo + 1)


def n_prompt_blocks() -> sp.Expr:
    return sp.ceiling(sy.S / sy.L_B)


def n_generated_blocks() -> sp.Expr:
    return sp.ceiling(sy.G / sy.L_B)


def send_op(name: str, payload_bytes: sp.Expr, sends: sp.Expr = ONE) -> OpCost:
    """`sends` point-to-point sends of `payload_bytes` between pipeline stages (one forward)."""
    zero = sp.Integer(0)
    return OpCost(name, zero, zero, zero, zero, zero, kernels=sends,
                  comm_bytes=sends * payload_bytes, comm_sent_bytes=sends * payload_bytes,
                  comm_time=sends * send_time(payload_bytes))


def vanilla_phases(st: StackStructure, im: ImplStructure, tp: sp.Expr | None = None,
                   pp: sp.Expr | None = None) -> list[Phase]:
    """`tp`: tensor-parallel ops (docs/parallelism.md 1); `pp`: adds the hidden states'
    sends between the pp stages (``pipeline.send``, pp - 1 per forward)."""
    x, B, S, G, c = sy.VANILLA, sy.B, sy.S, sy.G, sy.c
    head_rows = ONE if im.logits == "last" else S  # HF 4.39 computes logits on every position
    prefill = stack_ops("", st, im, x, B, S, sp.Integer(0), embed=True, head_rows=head_rows,
                        tp=tp)
    step = stack_ops("", st, im, x, B, ONE, c, embed=True, head_rows=ONE, tp=tp)
    if pp is not None:
        prefill.append(send_op("pipeline.send", B * S * x.D * sy.s_a, pp - 1))
        step.append(send_op("pipeline.send", B * x.D * sy.s_a, pp - 1))
    if not st.sliding_window:
        return [
            # the request is one generate() call (docs/published.md 1)
            Phase("prefill", tuple(prefill), ttft="all", generate_calls=ONE),
            Phase("decode", tuple(step), index=c, lo=S, hi=S + G - 2),
        ]
    # Sliding window (docs/sliding-window.md): steps whose query sees c + 1 <= W keys grow as
    # usual; from c = W - 1 on, every step sees exactly W keys and the cache stops growing.
    last = S + G - 2
    grow_hi = sp.Max(S - 1, sp.Min(sy.W - 1, last))
    full = stack_ops("", st, im, x, B, ONE, sy.W - 1, embed=True, head_rows=ONE, tp=tp)
    if pp is not None:
        full.append(send_op("pipeline.send", B * x.D * sy.s_a, pp - 1))
    return [
        # the request is one generate() call (docs/published.md 1)
        Phase("prefill", tuple(prefill), ttft="all", generate_calls=ONE),
        Phase("decode", tuple(step), index=c, lo=S, hi=grow_hi),
        Phase("decode", tuple(full), repeat=last - grow_hi),
    ]


def vanilla_step_context(st: StackStructure) -> sp.Expr:
    """Cached entries a decode step right after the prompt attends to: S, or at most W - 1."""
    return sp.Min(sy.S, sy.W - 1) if st.sliding_window else sy.S


def block_phases(sb: StackStructure, stt: StackStructure, im: ImplStructure,
                 tp: sp.Expr | None = None, pp: sp.Expr | None = None) -> list[Phase]:
    """`tp` as in `vanilla_phases`; `pp` (= 2): the block decoder sends each new context
    embedding [B, D_b] to the token decoder's stage (``block_decoder.send``)."""
    xb, xt, B = sy.BLOCK_DEC, sy.TOKEN_DEC, sy.B
    P, L_B, j, k = sy.P, sy.L_B, sy.j, sy.k
    n_p, n_g = n_prompt_blocks(), n_generated_blocks()
    g_last = sy.G - (n_g - 1) * L_B
    zero = sp.Integer(0)

    prefill = embedder_ops(B, n_p, xb.D, tp)
    prefill += stack_ops("block_decoder.", sb, im, xb, B, n_p, zero, embed=False, head_rows=None,
                         tp=tp)
    bstep = embedder_ops(B, ONE, xb.D, tp)
    bstep += stack_ops("block_decoder.", sb, im, xb, B, ONE, n_p + j - 1, embed=False,
                       head_rows=None, tp=tp)
    if pp is not None:
        prefill.append(send_op("block_decoder.send", B * xb.D * sy.s_a))
        bstep.append(send_op("block_decoder.send", B * xb.D * sy.s_a))
    prefix = expansion_ops(B, xb.D, P, xt.D, tp)
    prefix += stack_ops("token_decoder.", stt, im, xt, B, P, zero, embed=False, head_rows=ONE,
                        tp=tp)
    tstep = tuple(stack_ops("token_decoder.", stt, im, xt, B, ONE, P + k - 2, embed=True,
                            head_rows=ONE, tp=tp))
    return [
        Phase("prefill", tuple(prefill), ttft="all", generate_calls=ONE),
        Phase("block_decoder.step", tuple(bstep), index=j, lo=ONE, hi=n_g - 1),
        # the official code calls the token decoder's generate() once per block (docs/model.md
        # 2.2)
        Phase("token_decoder.prefix", tuple(prefix), repeat=n_g, ttft="one",
              generate_calls=ONE if im.token_decoder_generate_per_block else sp.Integer(0)),
        # full blocks, then the last (possibly shorter) block
        Phase("token_decoder.step", tstep, index=k, lo=sp.Integer(2), hi=L_B, repeat=n_g - 1),
        Phase("token_decoder.step", tstep, index=k, lo=sp.Integer(2), hi=g_last),
    ]
