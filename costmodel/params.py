"""Parameter counts: the one formula, evaluated on numbers (`costmodel.spec`) and on sympy
symbols (`costmodel.ops`, `costmodel.memory`) alike (docs/model.md 1.8).

Plain arithmetic only, so the same function serves ints and sympy expressions.
"""

from __future__ import annotations

from typing import Any

Num = Any  # int or sympy expression


def norm_params(norm: str, D: Num) -> Num:
    """LayerNorm: weight and bias (2D); RMSNorm: weight (D)."""
    return 2 * D if norm == "layernorm" else D


def layer_linears(D: Num, H: Num, K: Num, d_h: Num, F: Num, *, mlp: str, qkv_bias: bool,
                  out_bias: bool, mlp_bias: bool) -> list[tuple[Num, Num, bool]]:
    """(d_in, d_out, bias) of every Linear of one decoder layer (docs/model.md 1.6, 1.8): QKV
    D -> (H + 2K) d_h, dense H d_h -> D, the MLP's up projection(s) D -> F (two when gated) and
    down F -> D. The one inventory that parameter counts (`layer_params`) and stored bytes
    (`costmodel.ops.layer_weight_bytes`) both evaluate."""
    n_up = 1 if mlp == "gelu" else 2
    return [(D, (H + 2 * K) * d_h, qkv_bias), (H * d_h, D, out_bias),
            *[(D, F, mlp_bias)] * n_up, (F, D, mlp_bias)]


def linear_params(d_in: Num, d_out: Num, bias: bool) -> Num:
    """Weight d_in x d_out plus a bias of d_out."""
    return d_in * d_out + (d_out if bias else 0)


def layer_params(D: Num, H: Num, K: Num, d_h: Num, F: Num, *, mlp: str, norm: str,
                 qkv_bias: bool, out_bias: bool, mlp_bias: bool) -> Num:
    """One decoder layer: its linears and two norms. GPT-NeoX with F = 4D: 12 D^2 + 13 D."""
    linears = layer_linears(D, H, K, d_h, F, mlp=mlp, qkv_bias=qkv_bias, out_bias=out_bias,
                            mlp_bias=mlp_bias)
    return sum(linear_params(*lin) for lin in linears) + 2 * norm_params(norm, D)


def stack_params(N: Num, layer: Num, final_norm: Num) -> Num:
    """N layers plus the final norm."""
    return N * layer + final_norm


def expansion_params(D_b: Num, P: Num, D_t: Num) -> Num:
    """Expansion Linear D_b -> P D_t with bias (docs/model.md 1.4)."""
    return D_b * P * D_t + P * D_t


def vanilla_params(stack: Num, V: Num, D: Num, tied: bool) -> Num:
    """Stack plus input table and LM head (one table when tied)."""
    return stack + (1 if tied else 2) * V * D


def block_params(V: Num, embedder_width: Num, block_stack: Num, expansion: Num,
                 token_stack: Num, D_t: Num) -> Num:
    """Paper-style total (docs/model.md 1.8): embedder V x D_b/L_B, both stacks, the
    expansion, the token decoder's input table and LM head; without the unused block-decoder
    table."""
    return V * embedder_width + block_stack + expansion + token_stack + 2 * V * D_t
