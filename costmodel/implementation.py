"""How a model is executed: the implementation profiles of the cost model (DESIGN.md idea 4).

Two named profiles share every formula and differ only in these switches:

- ``static``: our reference's fast path. KV cache preallocated and written in place; attention
  reads only the valid prefix of the cache; LM head on the last position of a prefill only;
  fused attention (scores never reach memory, masked tiles skipped).
- ``hf-legacy``: the official code (SPEC.md 2.1, 2.2, 2.5). KV cache grown by ``torch.cat``
  (old cache read and the whole new one written on every forward); vanilla prefill logits for
  every prompt position; eager attention that materialises the full masked score matrix; the
  unused block-decoder ``embed_in`` table allocated (SPEC.md 1.3); one token-decoder
  ``generate()`` call per block (a forward-call overhead, see `Hardware` efficiencies).

FLOPs: "executed" counts what the kernels compute (the full masked score matrix in attention,
as `FlopCounterMode` counts SDPA); "useful" counts the causal part only. Roofline time uses
executed FLOPs, except for attention with ``skips_masked_tiles`` (flash-style kernels), which
uses the useful count.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .errors import UserError

ComputeDtype = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1,
}


class Implementation(BaseModel, frozen=True, extra="forbid"):
    name: str = "static"
    kv_cache: Literal["static", "concat"] = "static"
    logits: Literal["last", "all"] = "last"
    attention: Literal["fused", "materialized"] = "fused"
    skips_masked_tiles: bool = Field(
        default=True, description="fused causal attention skips fully masked tiles"
    )
    allocates_unused_block_embedding: bool = False
    compute_dtype: ComputeDtype = "bf16"
    weight_bytes_per_element: float = Field(default=2.0, gt=0)
    activation_bytes_per_element: float = Field(default=2.0, gt=0)
    kv_bytes_per_element: float = Field(default=2.0, gt=0)

    @property
    def structure_key(self) -> tuple[str, str, str, bool]:
        """The discrete switches that change the shape of the formulas."""
        return (self.kv_cache, self.logits, self.attention, self.skips_masked_tiles)

    def with_dtype(self, dtype: ComputeDtype) -> Implementation:
        """Same profile computing and storing in `dtype` (e.g. fp32 for CPU measurements)."""
        s = BYTES_PER_ELEMENT[dtype]
        return Implementation.model_validate(
            self.model_dump()
            | {
                "compute_dtype": dtype,
                "weight_bytes_per_element": s,
                "activation_bytes_per_element": s,
                "kv_bytes_per_element": s,
            }
        )


STATIC = Implementation(name="static")
HF_LEGACY = Implementation(
    name="hf-legacy",
    kv_cache="concat",
    logits="all",
    attention="materialized",
    skips_masked_tiles=False,
    allocates_unused_block_embedding=True,
)
PROFILES: dict[str, Implementation] = {"static": STATIC, "hf-legacy": HF_LEGACY}


def get_implementation(name_or_impl: str | Implementation, dtype: ComputeDtype | None = None) -> Implementation:
    if isinstance(name_or_impl, Implementation):
        impl = name_or_impl
    else:
        try:
            impl = PROFILES[name_or_impl]
        except KeyError:
            raise UserError(
                f"implementation: unknown profile {name_or_impl!r} (known: {', '.join(PROFILES)})"
            ) from None
    return impl.with_dtype(dtype) if dtype else impl
