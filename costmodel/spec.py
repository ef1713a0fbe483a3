"""Model specs: one frozen description of a model, read by the cost model and by the reference.

A spec says *what* a model is (sizes and structural choices). How it is executed (cache kind,
logits rows, bytes per element) is an `Implementation`; what is asked of it is a `Workload`.

Parameter formulas follow docs/model.md 1.8 (GPT-NeoX layer with F = 4D: 12D^2 + 13D) generalised to
GQA, gated MLPs, RMSNorm and optional biases. The ``params_*`` properties are plain Python
integers (exact); the symbolic versions live in `costmodel.ops`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from . import params as counts

PositiveInt = Annotated[int, Field(gt=0)]

MlpKind = Literal["gelu", "gated_silu"]
NormKind = Literal["layernorm", "rmsnorm"]


class StackSpec(BaseModel, frozen=True, extra="forbid"):
    """One decoder stack: `n_layers` identical layers plus a final norm (docs/model.md 1.6)."""

    n_layers: PositiveInt
    d_model: PositiveInt
    n_heads: PositiveInt
    n_kv_heads: PositiveInt | None = Field(
        default=None, description="key/value heads (GQA/MQA); None means n_heads"
    )
    head_dim: PositiveInt | None = Field(default=None, description="None means d_model // n_heads")
    d_ffn: PositiveInt
    mlp: MlpKind = "gelu"
    norm: NormKind = "layernorm"
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    rotary_fraction: float = Field(default=0.25, ge=0.0, le=1.0)
    rotary_base: float = Field(default=10000.0, gt=0.0)
    parallel_residual: bool = True
    norm_eps: float = Field(default=1e-5, gt=0.0)
    sliding_window: PositiveInt | None = Field(
        default=None, description="sliding-window attention: each query sees at most this many "
        "keys (itself included) and the KV cache keeps only that many (docs/sliding-window.md); "
        "None means full causal attention")

    @model_validator(mode="after")
    def _check_shapes(self) -> StackSpec:
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}) "
                "when head_dim is not given"
            )
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.kv_heads})"
            )
        if self.rotary_dims % 2:
            raise ValueError(
                f"rotary dims int(head_dim * rotary_fraction) = {self.rotary_dims} must be even "
                "(rotate-half pairs dimensions)"
            )
        return self

    # Derived sizes (plain properties so that a dump loads back; see docs/engineering-notes.md, pydantic).
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def dh(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def rotary_dims(self) -> int:
        # GPT-NeoX: rotary_ndims = int(head_size * rotary_pct) (docs/model.md 1.6)
        return int(self.dh * self.rotary_fraction)

    @property
    def norm_params(self) -> int:
        return counts.norm_params(self.norm, self.d_model)

    @property
    def params_per_layer(self) -> int:
        return counts.layer_params(
            self.d_model, self.n_heads, self.kv_heads, self.dh, self.d_ffn, mlp=self.mlp,
            norm=self.norm, qkv_bias=self.qkv_bias, out_bias=self.out_bias,
            mlp_bias=self.mlp_bias)

    @property
    def params_layers(self) -> int:
        return self.n_layers * self.params_per_layer

    @property
    def params(self) -> int:
        """Layers plus the final norm."""
        return counts.stack_params(self.n_layers, self.params_per_layer, self.norm_params)


class VanillaSpec(BaseModel, frozen=True, extra="forbid"):
    """A decoder-only LM: token embedding, one stack, LM head (docs/model.md 1.8, vanilla total)."""

    kind: Literal["vanilla"] = "vanilla"
    name: str = "custom-vanilla"
    vocab_size: PositiveInt = 50304
    tie_embeddings: bool = False
    stack: StackSpec

    @property
    def params_embedding(self) -> int:
        v, d = self.vocab_size, self.stack.d_model
        return v * d if self.tie_embeddings else 2 * v * d

    @property
    def params_non_embedding(self) -> int:
        # Paper convention (docs/model.md 3.3): layers + final norm.
        return self.stack.params

    @property
    def params_total(self) -> int:
        return counts.vanilla_params(self.stack.params, self.vocab_size, self.stack.d_model,
                                     self.tie_embeddings)


class BlockSpec(BaseModel, frozen=True, extra="forbid"):
    """A Block Transformer with a prefix token decoder (docs/model.md 1.2-1.5, 1.8).

    embedder: lookup table V x (D_b / L_B), `block_length` embeddings concatenated into one D_b
    vector per block; block decoder over blocks; expansion Linear D_b -> P * D_t (with bias);
    token decoder over [P prefix vectors, first L_B - 1 tokens of the block]; untied LM head.
    """

    kind: Literal["block"] = "block"
    name: str = "custom-block"
    vocab_size: PositiveInt = 50304
    block_length: PositiveInt = 4
    prefix_length: PositiveInt = 2
    block_decoder: StackSpec
    token_decoder: StackSpec

    @model_validator(mode="after")
    def _check_embedder(self) -> BlockSpec:
        for stack in ("block_decoder", "token_decoder"):
            if getattr(self, stack).sliding_window is not None:
                raise ValueError(
                    f"{stack}.sliding_window: sliding-window attention is modelled for vanilla "
                    "models only (docs/sliding-window.md)")
        if self.block_decoder.d_model % self.block_length:
            raise ValueError(
                f"block_decoder.d_model ({self.block_decoder.d_model}) must be divisible by "
                f"block_length ({self.block_length}): the embedder concatenates block_length "
                "embeddings of width d_model / block_length"
            )
        return self

    @property
    def embedder_width(self) -> int:
        return self.block_decoder.d_model // self.block_length

    @property
    def local_cache_entries(self) -> int:
        # docs/model.md 1.4: prefix plus every generated token except the last.
        return self.prefix_length + self.block_length - 1

    @property
    def params_expansion(self) -> int:
        return counts.expansion_params(self.block_decoder.d_model, self.prefix_length,
                                       self.token_decoder.d_model)

    @property
    def params_embedding(self) -> int:
        v = self.vocab_size
        return v * self.embedder_width + 2 * v * self.token_decoder.d_model

    @property
    def params_non_embedding(self) -> int:
        # Paper convention (docs/model.md 3.3, "N-Emb (computed)"): the decoder layers of both stacks;
        # final norms and the expansion layer are counted in the total only.
        return self.block_decoder.params_layers + self.token_decoder.params_layers

    @property
    def params_total(self) -> int:
        # docs/model.md 1.8, paper-style: without the unused block-decoder embed_in (V x D_b).
        return counts.block_params(self.vocab_size, self.embedder_width,
                                   self.block_decoder.params, self.params_expansion,
                                   self.token_decoder.params, self.token_decoder.d_model)

    @property
    def params_unused_embed_in(self) -> int:
        """The official code's unused block-decoder embed_in (docs/model.md 1.3), memory only."""
        return self.vocab_size * self.block_decoder.d_model


ModelSpec = Annotated[VanillaSpec | BlockSpec, Field(discriminator="kind")]


def revalidate(spec: BaseModel, **changes: object) -> BaseModel:
    """What-if edit that re-runs every validator (`model_copy(update=...)` does not)."""
    return type(spec).model_validate(spec.model_dump() | changes)
