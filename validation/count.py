"""Counted (reference) vs predicted (cost model) FLOPs and bytes, op by op: must be EQUAL.

One request of a model (`generate` of G tokens after an S-token prompt, batch B, one profile)
is counted by `validation.tracing` and set beside the cost model's executed counts:

| counted on the reference (`validation.tracing`)      | cost model (`costmodel.metrics`)       |
| ---------------------------------------------------- | -------------------------------------- |
| FLOPs of op X in phase P, summed over P's forwards   | row (P, X) ``flops`` (= OpRow.flops)   |
| weight bytes read by X in P (params per call; rows   | row (P, X) ``weight_bytes``            |
| gathered by lookups)                                 |                                        |
| KV entries read / written by X in P                  | row (P, X) ``kv_read_bytes`` /         |
|                                                      | ``kv_write_bytes`` (OpRow.kv_bytes is  |
|                                                      | their sum)                             |
| activation bytes read / written and kernels of X in  | row (P, X) ``act_read_bytes``,         |
| P (`validation.traffic`; fused kernels counted at    | ``act_write_bytes``, ``kernels``       |
| their granularity: `TRAFFIC`'s comment)              |                                        |
| tensor bytes handed to each collective (tp > 1)      | row (P, X) ``comm_bytes``              |
| parameter bytes of the module                        | ``weights_bytes`` (hf-legacy block:    |
|                                                      | minus the unused V x D_b ``embed_in``  |
|                                                      | the reference does not allocate)       |
| largest KV-cache bytes held per stack, summed        | B x ``kv_cache_bytes_per_sample``      |
|                                                      | minus the concat transient (below)     |

FLOPs of X over a whole request = the sum over phases, so equality per (phase, op) implies it.
The cost-model side is evaluated EXACTLY (sympy rationals on the same row expressions that
`costmodel.api.estimate` lambdifies into float64), so "equal" means zero difference, not a
tolerance; `Estimate.ops` floats agree with these to float64 rounding (tests check it).

Two documented adjustments, both memory-only (no FLOP or traffic count is adjusted):
- hf-legacy block models: the cost model holds the official code's unused block-decoder
  ``embed_in`` (V x D_b, docs/model.md 1.3, `BlockSpec.params_unused_embed_in`); the reference does
  not allocate it, so it is subtracted before comparing parameter bytes.
- concat (hf-legacy, official) caches: `costmodel.memory` adds the transient of ``torch.cat``
  (old and new copies coexist: one layer's K, or the official profile's whole previous tuple);
  the reference's caches are measured at rest after each forward, so that term (the formulas'
  ``kv_transient_bytes_per_sample``) is subtracted.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import sympy as sp
import torch
from sympy.printing.pycode import SymPyPrinter

from costmodel import symbols as sy
from costmodel.api import impl_values, model_values, structure_key
from costmodel.errors import UserError
from costmodel.implementation import Implementation, get_implementation
from costmodel.metrics import ARGS, formulas
from costmodel.parallel import Parallelism
from costmodel.spec import BlockSpec, VanillaSpec
from reference import build_model
from reference.quantize import quantize_kv_cache, quantize_model

from .microbench import TORCH_DTYPE
from .tracing import RequestCounts, trace_request

COMPARED: tuple[str, ...] = ("flops", "weight_bytes", "kv_read_bytes", "kv_write_bytes")
# with tensor parallelism also the tensor bytes of every collective (validation/collectives.py)
COMPARED_ALL: tuple[str, ...] = (*COMPARED, "comm_bytes")
# activation traffic and kernels of every aten op (validation/traffic.py, docs/conventions.md),
# compared for every profile (the reference runs each profile's kernels; official and
# official-eager: transformers 4.39 GPT-NeoX's fp32-key cast and eager fp32-score kernels,
# docs/published.md 1), in every weight and KV format and with tensor parallelism. Where the
# cost model times a fused kernel the tracer counts at that kernel's granularity: flash
# attention and the rotary as one kernel each, a quantised linear as one dequantise-in-the-
# matmul kernel, an int8 cache update as one quantise-and-store kernel per tensor with the
# dequantisation inside attention (docs/precision.md 3); each collective is one kernel of its
# op, an all-gather's concatenation a second (docs/parallelism.md 6).
TRAFFIC: tuple[str, ...] = ("act_read_bytes", "act_write_bytes", "kernels")
EVALUATED: tuple[str, ...] = (*COMPARED_ALL, *TRAFFIC)
REQUEST_PHASE = "(request)"


@dataclass(frozen=True)
class CountRow:
    """One (phase, op): counted and predicted values of every compared quantity."""

    phase: str
    op: str
    counted: dict[str, int]
    predicted: dict[str, int]

    @property
    def differences(self) -> dict[str, int]:
        keys = set(self.counted) | set(self.predicted)
        return {k: self.predicted.get(k, 0) - self.counted.get(k, 0) for k in sorted(keys)}

    @property
    def ok(self) -> bool:
        return not any(self.differences.values())


@dataclass(frozen=True)
class CountReport:
    model: str
    implementation: str
    dtype: str
    batch: int
    prompt_tokens: int
    generated_tokens: int
    rows: list[CountRow]
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"

    @property
    def mismatches(self) -> int:
        return sum(not r.ok for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "rows"}
        out["rows"] = [asdict(r) | {"differences": r.differences, "ok": r.ok}
                       for r in self.rows]
        out["mismatches"] = self.mismatches
        return out


# --- the cost model, exactly ----------------------------------------------------------------

def _exact(value: float) -> sp.Rational:
    return sp.Rational(str(value)) if not float(value).is_integer() else sp.Integer(int(value))


@functools.lru_cache(maxsize=32)
def _exact_fn(key: Any) -> tuple[list[tuple[str, str]], Any]:
    f = formulas(key)
    rows = [(r.phase, r.op) for r in f.rows]
    exprs = [[r.quantities[q] for q in EVALUATED] for r in f.rows]
    # one GPU's share (= the whole model without tensor parallelism)
    exprs.append([f.metrics["weights_bytes_per_gpu"], f.metrics["kv_cache_bytes_per_sample_per_gpu"],
                  f.metrics["kv_transient_bytes_per_sample_per_gpu"]])
    return rows, sp.lambdify(ARGS, exprs, modules=[{"sympy": sp}, "sympy"],
                             printer=_ExactPrinter)


class _ExactPrinter(SymPyPrinter):
    """Rationals as sympy Rationals: the default printer writes ``1/2`` (a Python float), and
    a float result is not an exact count (``nsimplify`` of 1552.0 is not even 1552)."""

    def _print_Rational(self, e: sp.Rational) -> str:
        return f"sympy.Rational({e.p}, {e.q})"

    _print_Half = _print_Rational


def _as_int(x: sp.Expr, what: str) -> int:
    x = sp.sympify(x)
    if not x.is_Integer:
        raise ValueError(f"{what}: the cost model gives a non-integer count {x}")
    return int(x)


def exact_values(spec: VanillaSpec | BlockSpec, impl: Implementation, batch: int,
                 prompt_tokens: int, generated_tokens: int,
                 tp: int = 1) -> dict[sp.Symbol, sp.Rational]:
    vals: dict[sp.Symbol, Any] = dict(model_values(spec)) | dict(impl_values(impl))
    vals[sy.tp] = tp
    vals |= {sy.B: batch, sy.S: prompt_tokens, sy.G: generated_tokens, sy.M_res: 0}
    vals |= {s: 1 for s in sy.HARDWARE_SYMBOLS if s is not sy.M_res}  # rates: irrelevant here
    vals[sy.pi_v] = 1
    return {k: _exact(v) for k, v in vals.items()}


def predicted_counts(spec: VanillaSpec | BlockSpec, impl: Implementation, batch: int,
                     prompt_tokens: int, generated_tokens: int, at_rest: bool = False,
                     tp: int = 1) -> tuple[dict[tuple[str, str], dict[str, int]], int, int]:
    """Exact cost-model counts per (phase, op), weights bytes and KV-cache bytes per sample
    (``kv_cache_bytes_per_sample``; `at_rest`: without the ``torch.cat`` transient); with
    tensor parallelism over `tp` ranks, one rank's (collectives' bytes included)."""
    rows, fn = _exact_fn(structure_key(spec, impl, Parallelism(tp=tp)))
    vals = exact_values(spec, impl, batch, prompt_tokens, generated_tokens, tp)
    out = fn(*[vals[a] for a in ARGS])
    counts = {}
    for (phase, op), q in zip(rows, out[:-1], strict=True):
        if op == "(forward calls)":
            continue
        counts[(phase, op)] = {name: _as_int(v, f"{phase}/{op}/{name}")
                               for name, v in zip(EVALUATED, q, strict=True)}
    weights, kv, transient = out[-1]
    if at_rest:
        kv -= transient
    return counts, _as_int(weights, "weights_bytes"), _as_int(kv, "kv_cache_bytes_per_sample")


# --- counting and comparing -----------------------------------------------------------------

def count_request(spec: VanillaSpec | BlockSpec, batch: int, prompt_tokens: int,
                  generated_tokens: int, implementation: str = "static", dtype: str = "bf16",
                  device: str = "meta", weight_dtype: str | None = None,
                  kv_dtype: str | None = None, tp: int = 1) -> RequestCounts:
    """Build the reference (on `device`, default meta: no memory, no arithmetic), shard it
    (rank 0 of `tp`, collectives recorded), quantise its linears / KV cache if asked
    (`reference.quantize`, on the rank's shards) and count one `generate` request."""
    if dtype not in TORCH_DTYPE:
        raise UserError(f"dtype: expected one of {', '.join(TORCH_DTYPE)}, got {dtype!r}")
    model = build_model(spec, device=device, dtype=TORCH_DTYPE[dtype], seed=0)
    if tp > 1:
        from reference.tp import shard_model

        shard_model(model, 0, tp)
    if weight_dtype or kv_dtype:
        impl = get_implementation(implementation, dtype=dtype,  # type: ignore[arg-type]
                                  weight_dtype=weight_dtype, kv_dtype=kv_dtype)
        quantize_model(model, impl.weight_dtype)
        quantize_kv_cache(model, impl.kv_dtype)
    vocab = spec.vocab_size
    if device == "meta":
        ids = torch.zeros(batch, prompt_tokens, dtype=torch.long, device="meta")
    else:
        ids = torch.randint(0, vocab, (batch, prompt_tokens), device=device)
    return trace_request(model, ids, generated_tokens, implementation,
                         collectives=tp > 1)


def compare(spec: VanillaSpec | BlockSpec, batch: int, prompt_tokens: int,
            generated_tokens: int, implementation: str = "static", dtype: str = "bf16",
            device: str = "meta", weight_dtype: str | None = None,
            kv_dtype: str | None = None, tp: int = 1) -> CountReport:
    """Count the reference and compare with the cost model (module docstring).

    `weight_dtype` / `kv_dtype` (docs/precision.md; presets allowed): quantised linears and an
    int8 KV cache on the reference, the same formats in the cost model; activations and
    scales stay in `dtype`. With `tp`, rank 0 of the sharded reference against one rank's
    rows, collectives' bytes included."""
    impl = get_implementation(implementation, dtype=dtype,  # type: ignore[arg-type]
                              weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    if impl.compute_dtype != dtype:
        raise UserError(f"weight_dtype: {weight_dtype!r} changes the compute dtype; the "
                        f"reference computes in {dtype} (weight-only formats only)")
    counted = count_request(spec, batch, prompt_tokens, generated_tokens, implementation,
                            dtype, device, weight_dtype, kv_dtype, tp)
    predicted, weights, kv_per_sample = predicted_counts(spec, impl, batch, prompt_tokens,
                                                         generated_tokens, at_rest=True, tp=tp)
    compared = (*(COMPARED_ALL if tp > 1 else COMPARED), *TRAFFIC)
    rows = []
    keys = list(predicted) + [k for k in counted.counts if k not in predicted]
    for key in keys:
        c = counted.counts.get(key, {})
        p = predicted.get(key, {})
        rows.append(CountRow(key[0], key[1], {q: int(c.get(q, 0)) for q in compared},
                             {q: int(p.get(q, 0)) for q in compared}))
    unused = 0
    if isinstance(spec, BlockSpec) and impl.allocates_unused_block_embedding:
        # vocab-parallel like every table: one rank holds 1/tp of it
        unused = int(spec.params_unused_embed_in * impl.dense_weight_bytes_per_element) // tp
    rows.append(CountRow(REQUEST_PHASE, "(parameters)",
                         {"bytes": counted.parameter_bytes}, {"bytes": weights - unused}))
    rows.append(CountRow(REQUEST_PHASE, "(kv cache)",
                         {"bytes": sum(counted.kv_cache_peak_bytes.values())},
                         {"bytes": batch * kv_per_sample}))
    return CountReport(spec.name, implementation, dtype, batch, prompt_tokens,
                       generated_tokens, rows, impl.weight_dtype, impl.kv_dtype)


SHORT = {"flops": "flops", "weight_bytes": "weight_B", "kv_read_bytes": "kv_read_B",
         "kv_write_bytes": "kv_write_B", "comm_bytes": "comm_B", "act_read_bytes": "act_read_B",
         "act_write_bytes": "act_write_B", "kernels": "kernels"}


def format_table(report: CountReport) -> str:
    """The per-op table the CLI prints: counted values and (predicted - counted) ``d_``."""
    shown = [q for q in SHORT if any(q in r.counted for r in report.rows)]
    header = ["phase", "op"]
    for q in shown:
        header += [SHORT[q], "d_" + SHORT[q].removesuffix("_B")]
    header.append("ok")
    lines = []
    for r in report.rows:
        d = r.differences
        if r.phase == REQUEST_PHASE:  # memory rows: bytes in the weight_B columns
            cells = [r.phase, r.op, "", "", str(r.counted["bytes"]), str(d["bytes"])]
            cells += [""] * (len(header) - len(cells) - 1)
        else:
            cells = [r.phase, r.op]
            for q in shown:
                cells += [str(r.counted.get(q, "")), str(d.get(q, ""))]
        cells.append("ok" if r.ok else "MISMATCH")
        lines.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join(out)
