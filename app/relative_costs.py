"""The paper's relative-cost table (docs/model.md 4.1, paper v1 Table 1) derived from the formulas.

How it is derived (no numbers typed in):

1. Take the vanilla model and `blockify` it with both decoders as deep and as wide as the
   vanilla stack (N_b = N_t = N, D_b = D_t = D), as the paper's table compares "one decoder
   against a vanilla stack of the same N and D".
2. For each item, sum the cost model's own row expressions (`costmodel.formula`) of the layer
   ops of one stack over the whole request (prefill and decode phases; embeddings, LM head and
   the expansion layer are left out, as in the paper):
   parameter IO = weight_bytes; KV-cache IO = kv_read_bytes + kv_write_bytes; attention FLOPs
   = FLOPs of ``attn.core``; linear FLOPs = FLOPs of the other layer ops. Memory items take the
   layer part N_x * d/dN_x of the ``weights_bytes`` and ``kv_cache_bytes_per_sample`` metrics
   (exact: those are linear in each stack's depth).
3. Substitute the decoders' symbols by the vanilla ones (N_b, N_t -> N, ...), so the ratio
   decoder / vanilla is a function of L_B, P, the prompt S and the generated length G = L.
4. "Derived (L -> inf)": the limit of that ratio as L = G -> infinity, with ceiling(x)
   replaced by x (exact in the limit). When the limit is 0 the leading term c / L is shown,
   c = lim L * ratio. "At current inputs": the exact ratio (ceilings kept) evaluated at the
   dashboard's model, prompt and generated lengths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sympy as sp

from costmodel import symbols as sy
from costmodel.api import formula, formula_names, impl_values, model_values
from costmodel.implementation import get_implementation
from costmodel.presets import blockify
from costmodel.spec import VanillaSpec

L = sp.Symbol("L", positive=True)  # context (generated) length in the derived factors

# (metric, item, bottleneck in prefill, in decode, vanilla order, paper block, paper token)
PAPER_ROWS: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("Memory", "Parameters", "–", "–", r"O(N D^2)", "1", "1"),
    ("Memory", "KV cache", "–", "–", r"O(N D B L)", r"\frac{1}{L_B}", r"\frac{L_B}{L} \approx 0"),
    ("IO", "Parameters", "✗", "✗", r"O(N D^2 L)", r"\frac{1}{L_B}", "1"),
    ("IO", "KV cache", "✗", "✓", r"O(N D B L^2)", r"\frac{1}{L_B^2}", r"\frac{L_B}{L} \approx 0"),
    ("FLOPs", "Attention scores", "✗", "✓", r"O(N D B L^2)", r"\frac{1}{L_B^2}",
     r"\frac{L_B}{L} \approx 0"),
    ("FLOPs", "Linear projections", "✓", "✗", r"O(N D^2 B L)", r"\frac{1}{L_B}", "1"),
)
DECODERS = {"block": ("block_decoder.layers.", sy.BLOCK_DEC),
            "token": ("token_decoder.layers.", sy.TOKEN_DEC)}


@dataclass(frozen=True)
class DerivedItem:
    metric: str
    item: str
    decoder: str  # "block" or "token"
    exact: sp.Expr  # decoder / vanilla, in vanilla symbols, L_B, P, S, G (and B, s_*)
    leading: sp.Expr  # limit G -> oo (or c / L when that limit is 0)
    fn: Callable[..., Any]  # exact ratio compiled over `args`
    args: tuple[sp.Symbol, ...]


def _layer_sum(model: Any, prefix: str, quantities: tuple[str, ...],
               keep: Callable[[str], bool]) -> sp.Expr:
    total = sp.Integer(0)
    for name in formula_names(model):
        parts = name.split("/")
        if len(parts) == 3 and parts[1].startswith(prefix) and parts[2] in quantities \
                and keep(parts[1]):
            total += formula(name, model).expr
    return total


def _to_vanilla(expr: sp.Expr) -> sp.Expr:
    sub = {}
    for v, b, t in zip(sy.VANILLA, sy.BLOCK_DEC, sy.TOKEN_DEC, strict=True):
        sub[b] = v
        sub[t] = v
    return expr.xreplace(sub)


def _leading(ratio: sp.Expr) -> sp.Expr:
    smooth = ratio.replace(sp.ceiling, lambda x: x).replace(sp.floor, lambda x: x)
    lim = sp.limit(smooth, sy.G, sp.oo)
    if lim == 0:
        c = sp.simplify(sp.limit(smooth * sy.G, sy.G, sp.oo))
        return c / L
    return sp.simplify(lim)


def _items(vanilla: VanillaSpec, blk: Any, impl: str) -> dict[tuple[str, str], tuple[sp.Expr,
                                                                                     sp.Expr]]:
    """(item, decoder) -> (vanilla expression, decoder expression)."""
    def attn(op: str) -> bool:
        return op.endswith("attn.core")

    def linear(op: str) -> bool:
        return not op.endswith("attn.core")

    def every(op: str) -> bool:
        return True

    kv = ("kv_read_bytes", "kv_write_bytes")
    w_v = formula("weights_bytes", vanilla, impl).expr
    w_b = formula("weights_bytes", blk, impl).expr
    m_v = formula("kv_cache_bytes_per_sample", vanilla, impl).expr
    m_b = formula("kv_cache_bytes_per_sample", blk, impl).expr
    out = {}
    for dec, (prefix, syms) in DECODERS.items():
        n_v, n_x = sy.VANILLA.N, syms.N
        out[("Memory/Parameters", dec)] = (n_v * sp.diff(w_v, n_v), n_x * sp.diff(w_b, n_x))
        out[("Memory/KV cache", dec)] = (n_v * sp.diff(m_v, n_v), n_x * sp.diff(m_b, n_x))
        for key, qs, keep in (("IO/Parameters", ("weight_bytes",), every),
                              ("IO/KV cache", kv, every),
                              ("FLOPs/Attention scores", ("flops",), attn),
                              ("FLOPs/Linear projections", ("flops",), linear)):
            out[(key, dec)] = (_layer_sum(vanilla, "layers.", qs, keep),
                               _layer_sum(blk, prefix, qs, keep))
    return out


def derive(vanilla: VanillaSpec, implementation: str = "static") -> list[DerivedItem]:
    """Every (item, decoder) ratio of docs/model.md 4.1, derived symbolically (a few seconds; cache
    the result: it depends only on the vanilla model's structure and the profile)."""
    impl = get_implementation(implementation).name
    lb = next(x for x in (4, 2, 1) if vanilla.stack.d_model % x == 0)
    blk = blockify(vanilla, lb, layer_split=(vanilla.stack.n_layers, vanilla.stack.n_layers))
    # the sums only, without the vanilla-side model being `blk`: formulas use symbols
    pairs = _items(vanilla, blk, impl)
    out = []
    for (key, dec), (e_v, e_x) in pairs.items():
        metric, item = key.split("/")
        ratio = _to_vanilla(e_x) / e_v
        args = tuple(sorted(ratio.free_symbols, key=lambda s: s.name))
        fn = sp.lambdify(args, ratio, "math")
        out.append(DerivedItem(metric, item, dec, ratio, _leading(ratio), fn, args))
    return out


def evaluate(items: list[DerivedItem], vanilla: VanillaSpec, block_length: int,
             prefix_length: int, prompt_tokens: int, generated_tokens: int,
             implementation: str = "static") -> dict[tuple[str, str, str], float]:
    """Exact ratios at the given sizes: (metric, item, decoder) -> decoder / vanilla."""
    values: dict[sp.Symbol, float] = dict(model_values(vanilla))
    values |= impl_values(get_implementation(implementation))
    values |= {sy.L_B: float(block_length), sy.P: float(prefix_length), sy.B: 1.0,
               sy.S: float(prompt_tokens), sy.G: float(generated_tokens)}
    out = {}
    for it in items:
        try:
            out[(it.metric, it.item, it.decoder)] = float(it.fn(*[values[a] for a in it.args]))
        except (ZeroDivisionError, KeyError, ValueError):
            out[(it.metric, it.item, it.decoder)] = float("nan")
    return out


def latex(expr: sp.Expr) -> str:
    return sp.latex(expr, symbol_names={L: "L"})


def markdown_table(items: list[DerivedItem], at_inputs: Mapping[tuple[str, str, str], float],
                   decoder: str) -> str:
    """The docs/model.md 4.1 table for one decoder ("block" or "token"): the paper's factor, the
    derived factor and its value at the current inputs; LaTeX in $...$ (Streamlit markdown
    renders it)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder: expected one of {', '.join(DECODERS)}, got {decoder!r}")
    by = {(it.metric, it.item, it.decoder): it for it in items}
    lines = ["| Metric | Item | Prefill bottleneck? | Decode bottleneck? | Vanilla | Paper | "
             "Derived (L → ∞) | At the inputs |", "|" + "---|" * 8]
    for metric, item, pre, dec, van, p_blk, p_tok in PAPER_ROWS:
        paper = p_blk if decoder == "block" else p_tok
        it = by[(metric, item, decoder)]
        cells = [metric, item, pre, dec, f"${van}$", f"${paper}$", f"${latex(it.leading)}$",
                 f"{at_inputs[(metric, item, decoder)]:.4g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
