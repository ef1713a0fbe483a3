"""Number formats of weights, activations and the KV cache, and what each costs (docs/precision.md).

Three choices make up a precision (fields of `Implementation`):

- ``weight_dtype``: how linear-layer weights are stored. Dense ``fp32``/``bf16``/``fp16``; ``fp8``
  (e4m3, one scale per output channel); ``int8`` (symmetric, one scale per output channel);
  ``int4-g<N>`` (asymmetric, one scale and one zero point per group of N input elements).
  Embedding tables, norms and biases stay dense: in the weight dtype when it is dense, in the
  activation dtype when it is quantised (what gpt-fast-style module swaps do, docs/precision.md 2).
- ``compute_dtype``: the dtype the matmul kernels multiply in, whose peak the roofline uses.
  Weight-only formats (int8, int4, fp8 weights with a 16-bit compute dtype) dequantise in the
  kernel and multiply at the compute dtype's rate; ``fp8`` weights with ``fp8`` compute are W8A8
  (fp8 tensor-core peaks), ``int8`` with ``int8`` compute is W8A8 int8.
- ``kv_dtype``: the KV cache. Dense ``fp32``/``bf16``/``fp16``; ``fp8`` (one scale per tensor,
  held outside the cache: 1 byte per element); ``int8`` (one scale per cached vector, i.e. per
  token per KV head, in the activation dtype: 1 + s/d_h bytes per element).

Scales and zero points are stored in the activation dtype (torch's packed int8/int4 kernels
require it). Activations between kernels are stored in the compute dtype when it is a float of
16 or 32 bits, else in bf16 (W8A8 kernels quantise their input on the fly, fused with the
preceding op).

Symbols (`costmodel.symbols`): s_w bytes per linear weight element with per-group scales and
zero points amortised; s_wc bytes per linear output channel (per-channel scale); s_e bytes per
dense parameter outside linears; s_kv bytes per KV element; s_kvs bytes per cached vector
(int8 scale); q_w / q_kv the dequantisation FLOPs per weight / per KV element, charged at the
vector rate pi_v (docs/precision.md 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UserError

DENSE_BYTES: dict[str, float] = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
FLOAT_ACTIVATIONS = ("fp32", "tf32", "bf16", "fp16")

# Named presets: the names serving stacks use (docs/precision.md 4).
WEIGHT_PRESETS: dict[str, tuple[str, str | None]] = {  # preset -> (weight dtype, compute dtype)
    "w8a16": ("int8", None),
    "w4a16-g128": ("int4-g128", None),
    "w4a16-g32": ("int4-g32", None),
    "w8a16-fp8": ("fp8", None),
    "w8a8-fp8": ("fp8", "fp8"),
    "w8a8-int8": ("int8", "int8"),
}
KV_PRESETS: dict[str, str] = {"kv-fp8": "fp8", "kv-int8": "int8", "kv-bf16": "bf16",
                              "kv-fp16": "fp16", "kv-fp32": "fp32"}
WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4-g<N>")
KV_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8")
_INT4 = re.compile(r"^int4-g([1-9][0-9]*)$")


@dataclass(frozen=True)
class WeightFormat:
    """How one linear weight element is stored and dequantised."""

    name: str
    bits: int
    group_size: int | None  # int4: elements per (scale, zero) group along the input dim
    channel_scale: bool  # one scale per output channel
    dequant_flops: int  # per weight element per forward, weight-only formats (docs/precision.md 3)

    @property
    def quantized(self) -> bool:
        return self.name not in ("fp32", "bf16", "fp16")


def weight_format(name: str) -> WeightFormat:
    """A weight dtype by name (`WEIGHT_DTYPES`; int4 with any group size, e.g. int4-g32)."""
    if name in ("fp32", "bf16", "fp16"):
        return WeightFormat(name, 8 * int(DENSE_BYTES[name]), None, False, 0)
    if name in ("int8", "fp8"):
        # dequantise: one multiply by the channel scale (the conversion itself is not a FLOP)
        return WeightFormat(name, 8, None, True, 1)
    m = _INT4.match(name)
    if m:
        # (q - zero) * scale: two FLOPs per element
        return WeightFormat(name, 4, int(m.group(1)), False, 2)
    raise UserError(f"weight_dtype: unknown format {name!r} (known: {', '.join(WEIGHT_DTYPES)}, "
                     f"presets {', '.join(WEIGHT_PRESETS)})")


def kv_check(name: str) -> str:
    if name not in KV_DTYPES:
        raise UserError(f"kv_dtype: unknown format {name!r} (known: {', '.join(KV_DTYPES)}, "
                         f"presets {', '.join(KV_PRESETS)})")
    return name


def activation_dtype(compute_dtype: str) -> str:
    """Where activations live between kernels: the compute dtype if a 16/32-bit float, else bf16."""
    return compute_dtype if compute_dtype in FLOAT_ACTIVATIONS else "bf16"


def precision_values(weight_dtype: str, kv_dtype: str, compute_dtype: str) -> dict[str, float]:
    """s_w, s_wc, s_e, s_a, s_kv, s_kvs, q_w, q_kv of one precision (docs/precision.md 1-3).

    >>> precision_values("int4-g32", "int8", "bf16")["s_w"]   # 0.5 + (2 + 2) / 32
    0.625
    """
    wf = weight_format(weight_dtype)
    kv_check(kv_dtype)
    s_a = DENSE_BYTES[activation_dtype(compute_dtype)]
    w8a8 = weight_dtype in ("fp8", "int8") and compute_dtype == weight_dtype
    s_w = wf.bits / 8
    if wf.group_size is not None:
        s_w += 2 * s_a / wf.group_size  # a scale and a zero point per group
    return {
        "s_w": s_w,
        "s_wc": s_a if wf.channel_scale else 0.0,
        "s_e": s_a if wf.quantized else DENSE_BYTES[weight_dtype],
        "s_a": s_a,
        "s_kv": DENSE_BYTES[kv_dtype],
        "s_kvs": s_a if kv_dtype == "int8" else 0.0,
        # W8A8 kernels multiply the stored values directly; the scale applies to the output
        "q_w": 0.0 if w8a8 else float(wf.dequant_flops),
        # int8 KV: one multiply per element read (dequantise) and one per element written
        # (quantise); fp8 KV: its per-tensor scale folds into the attention scale
        "q_kv": 1.0 if kv_dtype == "int8" else 0.0,
    }


def resolve_weight(text: str) -> tuple[str, str | None]:
    """--weight-dtype text (a dtype or a preset) -> (weight dtype, compute dtype it implies)."""
    if text in WEIGHT_PRESETS:
        return WEIGHT_PRESETS[text]
    weight_format(text)
    return text, None


def resolve_kv(text: str) -> str:
    return KV_PRESETS.get(text) or kv_check(text)




def check_group_size(weight_dtype: str, input_dims: dict[str, int]) -> None:
    """int4-g<N>: N must divide the input width of every linear (named in the error)."""
    g = weight_format(weight_dtype).group_size
    if g is None:
        return
    for name, d_in in input_dims.items():
        if d_in % g:
            raise UserError(f"weight_dtype: group size {g} of {weight_dtype!r} does not divide "
                             f"the input width {d_in} of {name}")
