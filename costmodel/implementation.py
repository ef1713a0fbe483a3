"""How a model is executed: the implementation profiles of the cost model (docs/design.md idea 4).

Two named profiles share every formula and differ only in these switches:

- ``static``: our reference's fast path. KV cache preallocated and written in place; attention
  reads only the valid prefix of the cache; LM head on the last position of a prefill only;
  fused attention (scores never reach memory, masked tiles skipped).
- ``hf-legacy``: the official code (docs/model.md 2.1, 2.2, 2.5). KV cache grown by ``torch.cat``
  (old cache read and the whole new one written on every forward); vanilla prefill logits for
  every prompt position; eager attention that materialises the full masked score matrix; the
  unused block-decoder ``embed_in`` table allocated (docs/model.md 1.3); one token-decoder
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

from pydantic import BaseModel, Field, field_validator, model_validator

from . import precision
from .errors import UserError

ComputeDtype = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]

BYTES_PER_ELEMENT: dict[str, float] = precision.DENSE_BYTES


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
    # precision (costmodel.precision, docs/precision.md)
    compute_dtype: ComputeDtype = Field(default="bf16",
                                        description="dtype the matmul kernels multiply in")
    weight_dtype: str = Field(default="bf16", description="linear weights: fp32, bf16, fp16, "
                              "fp8, int8 (per-channel scale), int4-g<N> (group scale + zero)")
    kv_dtype: str = Field(default="bf16",
                          description="KV cache: fp32, bf16, fp16, fp8, int8 (scale per vector)")

    @field_validator("weight_dtype")
    @classmethod
    def _known_weight(cls, v: str) -> str:
        precision.weight_format(v)
        return v

    @field_validator("kv_dtype")
    @classmethod
    def _known_kv(cls, v: str) -> str:
        return precision.kv_check(v)

    @model_validator(mode="after")
    def _quantised_kv_needs_one_key_dtype(self) -> Implementation:
        if self.key_cache_fp32 and self.kv_dtype in ("fp8", "int8"):
            raise ValueError(f"kv_dtype: {self.kv_dtype} is not modelled for profile "
                             f"{self.name!r}, which caches keys in fp32; use static or hf-legacy")
        return self

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

    @property
    def precision_values(self) -> dict[str, float]:
        """Bytes and dequantisation FLOPs per element, by symbol name (`costmodel.precision`)."""
        return precision.precision_values(self.weight_dtype, self.kv_dtype, self.compute_dtype)

    @property
    def weight_bytes_per_element(self) -> float:
        """Bytes per linear weight element, group scales and zero points included."""
        return self.precision_values["s_w"]

    @property
    def dense_weight_bytes_per_element(self) -> float:
        """Bytes per parameter outside linears (embeddings, norms, biases)."""
        return self.precision_values["s_e"]

    @property
    def activation_bytes_per_element(self) -> float:
        return self.precision_values["s_a"]

    @property
    def kv_bytes_per_element(self) -> float:
        """Bytes per KV element, not counting int8 scales (`kv_scale_bytes_per_vector`)."""
        return self.precision_values["s_kv"]

    @property
    def kv_scale_bytes_per_vector(self) -> float:
        return self.precision_values["s_kvs"]

    @property
    def precision_label(self) -> str:
        return f"weights {self.weight_dtype}, compute {self.compute_dtype}, KV {self.kv_dtype}"

    def with_dtype(self, dtype: ComputeDtype) -> Implementation:
        """Same profile computing and storing in `dtype` (e.g. fp32 for CPU measurements)."""
        stored = "fp32" if dtype == "tf32" else dtype
        return self.with_precision(weight_dtype=stored, kv_dtype=stored, compute_dtype=dtype)

    def with_precision(self, weight_dtype: str | None = None, kv_dtype: str | None = None,
                       compute_dtype: str | None = None) -> Implementation:
        """A re-validated copy with some precision fields changed; `weight_dtype` and
        `kv_dtype` also accept the presets (``w8a16``, ``w4a16-g32``, ``w8a8-fp8``, ``kv-int8``,
        ...). A preset's compute dtype (w8a8-fp8: fp8) applies unless `compute_dtype` is given."""
        changes: dict[str, str] = {}
        if weight_dtype is not None:
            changes["weight_dtype"], implied = precision.resolve_weight(weight_dtype)
            if implied and compute_dtype is None:
                changes["compute_dtype"] = implied
        if kv_dtype is not None:
            changes["kv_dtype"] = precision.resolve_kv(kv_dtype)
        if compute_dtype is not None:
            changes["compute_dtype"] = compute_dtype
        return Implementation.model_validate(self.model_dump() | changes)


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


def get_implementation(name_or_impl: str | Implementation, dtype: ComputeDtype | None = None,
                       *, weight_dtype: str | None = None, kv_dtype: str | None = None,
                       compute_dtype: str | None = None) -> Implementation:
    """A profile by name (or as given), with `dtype` for everything (`with_dtype`), then the
    precision fields given (`with_precision`: dtypes or presets such as ``w8a16``)."""
    if isinstance(name_or_impl, Implementation):
        impl = name_or_impl
    else:
        try:
            impl = PROFILES[name_or_impl]
        except KeyError:
            raise UserError(
                f"implementation: unknown profile {name_or_impl!r} (known: {', '.join(PROFILES)})"
            ) from None
    if dtype:
        impl = impl.with_dtype(dtype)
    if weight_dtype or kv_dtype or compute_dtype:
        impl = impl.with_precision(weight_dtype, kv_dtype, compute_dtype)
    return impl
