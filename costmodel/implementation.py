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
- ``official``: the released code as it runs (docs/model.md 2.1, 2.2, 2.5 and 6; see
  docs/published.md): like ``hf-legacy`` but with the attention kind of each stack as the
  configs request it: FlashAttention-2 (fused, masked tiles skipped) in the vanilla model and
  the block decoder, eager (materialised scores) in the token decoder, whose config sets no
  backend. Each HF ``generate()`` call costs ``t_generate`` (one per request, plus one per
  block for the token decoder). Keys are cached in fp32 (GPT-NeoX's fp32 rotary tables and
  torch.cat's type promotion) and a cat step holds the previous cache tuple until the forward
  returns.
- ``official-eager``: ``official`` with HF's eager GPT-NeoX attention in every stack (fp32
  scores through five kernels): the "Standard" setting that paper Table 1 most likely measured
  (docs/published.md 3).

Attention kind per stack (``vanilla_attention``, ``block_decoder_attention``,
``token_decoder_attention``; None = the profile-wide ``attention``):
- ``fused``: flash-style, scores never reach memory;
- ``materialized``: eager matmul-softmax-matmul, the score matrix written and read;
- ``split_k``: flash-decoding, fused attention whose one-token decode steps split the keys
  into chunks of ``SPLIT_K_CHUNK`` and combine the partial results in a second kernel
  (docs/published.md); prefill forwards run as ``fused``.

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


AttentionKind = Literal["fused", "materialized", "split_k"]
STACK_ROLES: tuple[str, ...] = ("vanilla", "block_decoder", "token_decoder")
# Keys per split of a flash-decoding step (split_k): the partial outputs and their combine
# kernel scale with n_k / SPLIT_K_CHUNK (docs/published.md).
SPLIT_K_CHUNK = 256


class Implementation(BaseModel, frozen=True, extra="forbid"):
    name: str = "static"
    kv_cache: Literal["static", "concat"] = "static"
    logits: Literal["last", "all"] = "last"
    attention: AttentionKind = "fused"
    skips_masked_tiles: bool = Field(
        default=True, description="fused causal attention skips fully masked tiles"
    )
    allocates_unused_block_embedding: bool = False
    compute_dtype: ComputeDtype = "bf16"
    weight_bytes_per_element: float = Field(default=2.0, gt=0)
    activation_bytes_per_element: float = Field(default=2.0, gt=0)
    kv_bytes_per_element: float = Field(default=2.0, gt=0)

    vanilla_attention: AttentionKind | None = Field(
        default=None, description="attention kind of a vanilla model (None: `attention`)")
    block_decoder_attention: AttentionKind | None = Field(
        default=None, description="attention kind of the block decoder (None: `attention`)")
    token_decoder_attention: AttentionKind | None = Field(
        default=None, description="attention kind of the token decoder (None: `attention`)")
    token_decoder_generate_per_block: bool = Field(
        default=False, description="one HF generate() call per block for the token decoder "
        "(docs/model.md 2.2), each costing t_generate")
    key_cache_fp32: bool = Field(
        default=False, description="keys cached in fp32 (4 bytes): GPT-NeoX applies rotary "
        "with fp32 cos/sin tables and torch.cat promotes the cache (docs/published.md 1)")
    cat_keeps_previous_cache: bool = Field(
        default=False, description="a torch.cat step holds the previous cache tuple of every "
        "layer until the forward returns (legacy tuple cache, docs/published.md 1)")

    def attention_for(self, role: str) -> AttentionKind:
        """The attention kind of one stack (`STACK_ROLES`)."""
        if role not in STACK_ROLES:
            raise ValueError(f"role: unknown stack {role!r} (known: {', '.join(STACK_ROLES)})")
        return getattr(self, f"{role}_attention") or self.attention

    @property
    def structure_key(self) -> tuple[str, str, str, bool, tuple[str, ...], bool, bool, bool]:
        """The discrete switches that change the shape of the formulas."""
        return (self.kv_cache, self.logits, self.attention, self.skips_masked_tiles,
                tuple(self.attention_for(r) for r in STACK_ROLES),
                self.token_decoder_generate_per_block, self.key_cache_fp32,
                self.cat_keeps_previous_cache)

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
    token_decoder_generate_per_block=True,
)
# The released code (docs/published.md 1): FA2 where the configs request it (vanilla, block
# decoder), eager token decoder, HF generate's concat cache and all-position prefill logits.
OFFICIAL = Implementation(
    name="official",
    kv_cache="concat",
    logits="all",
    attention="fused",
    skips_masked_tiles=True,
    vanilla_attention="fused",
    block_decoder_attention="fused",
    token_decoder_attention="materialized",
    allocates_unused_block_embedding=True,
    token_decoder_generate_per_block=True,
    key_cache_fp32=True,
    cat_keeps_previous_cache=True,
)
# The same code with HF's eager attention in every stack: what paper Table 1's "Standard"
# numbers most likely ran (docs/model.md 5.1, 8.3; the evidence is in docs/published.md 3).
OFFICIAL_EAGER = Implementation.model_validate(
    OFFICIAL.model_dump() | {"name": "official-eager", "attention": "materialized",
                             "skips_masked_tiles": False, "vanilla_attention": "materialized",
                             "block_decoder_attention": "materialized"})
PROFILES: dict[str, Implementation] = {"static": STATIC, "hf-legacy": HF_LEGACY,
                                       "official": OFFICIAL, "official-eager": OFFICIAL_EAGER}


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
