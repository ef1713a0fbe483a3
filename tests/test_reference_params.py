"""Reference models: structure and parameter counts equal the cost model's (issue 3)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel.presets import PRESET_NAMES, get_preset
from costmodel.spec import BlockSpec, StackSpec, VanillaSpec
from reference import BlockLM, VanillaLM, build_model, count_parameters


@st.composite
def stack_specs(draw: st.DrawFn, width_multiple: int = 4) -> StackSpec:
    """Valid stacks by construction: draw KV heads, group size and head_dim, derive width."""
    kv_heads = draw(st.integers(1, 3))
    group = draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([8, 16, 24]))  # rotary dims stay even
    explicit_head_dim = draw(st.booleans())
    if explicit_head_dim:  # Llama-style: H * dh need not equal D
        d_model = width_multiple * draw(st.integers(2, 16))
    else:
        d_model = kv_heads * group * head_dim
    return StackSpec(
        n_layers=draw(st.integers(1, 3)),
        d_model=d_model,
        n_heads=kv_heads * group,
        n_kv_heads=None if group == 1 and draw(st.booleans()) else kv_heads,
        head_dim=head_dim if explicit_head_dim else None,
        d_ffn=draw(st.integers(1, 8)) * 8,
        mlp=draw(st.sampled_from(["gelu", "gated_silu"])),
        norm=draw(st.sampled_from(["layernorm", "rmsnorm"])),
        qkv_bias=draw(st.booleans()),
        out_bias=draw(st.booleans()),
        mlp_bias=draw(st.booleans()),
        rotary_fraction=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
        parallel_residual=draw(st.booleans()),
    )


@st.composite
def vanilla_specs(draw: st.DrawFn) -> VanillaSpec:
    return VanillaSpec(
        vocab_size=draw(st.integers(2, 300)),
        tie_embeddings=draw(st.booleans()),
        stack=draw(stack_specs()),
    )


@st.composite
def block_specs(draw: st.DrawFn) -> BlockSpec:
    block_length = draw(st.sampled_from([1, 2, 4]))
    return BlockSpec(
        vocab_size=draw(st.integers(2, 300)),
        block_length=block_length,
        prefix_length=draw(st.integers(1, 3)),
        block_decoder=draw(stack_specs(width_multiple=4)),
        token_decoder=draw(stack_specs()),
    )


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_parameter_count_on_meta(name: str) -> None:
    spec = get_preset(name)
    model = build_model(spec, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert count_parameters(model) == spec.params_total


@settings(max_examples=40, deadline=None)
@given(vanilla_specs())
def test_drawn_vanilla_parameter_count(spec: VanillaSpec) -> None:
    model = build_model(spec, device="meta")
    assert isinstance(model, VanillaLM)
    assert count_parameters(model) == spec.params_total
    assert (model.lm_head.weight is model.embed_in.weight) == spec.tie_embeddings


@settings(max_examples=40, deadline=None)
@given(block_specs())
def test_drawn_block_parameter_count(spec: BlockSpec) -> None:
    model = build_model(spec, device="meta")
    assert isinstance(model, BlockLM)
    assert count_parameters(model) == spec.params_total
    assert model.embedder.weight.shape == (spec.vocab_size, spec.embedder_width)


def test_module_paths_are_the_cost_model_names() -> None:
    spec = get_preset("block_main_b4_5")
    model = build_model(spec, device="meta")
    names = {n for n, _ in model.named_modules()}
    for path in [
        "embedder", "block_decoder.layers.0.ln_attn", "block_decoder.layers.0.attn.qkv",
        "block_decoder.layers.0.attn.rotary", "block_decoder.layers.0.attn.kv_cache",
        "block_decoder.layers.0.attn.core", "block_decoder.layers.0.attn.dense",
        "block_decoder.layers.0.ln_mlp", "block_decoder.layers.0.mlp.up",
        "block_decoder.layers.0.mlp.act", "block_decoder.layers.0.mlp.down",
        "block_decoder.final_norm", "token_decoder.expansion", "token_decoder.embed_in",
        "token_decoder.layers.2.attn.core", "token_decoder.final_norm", "token_decoder.lm_head",
    ]:
        assert path in names
    assert "block_decoder.embed_in" not in names  # the official code's unused table (docs/model.md 1.3)
    assert dict(model.embedder.named_children()) == {}
    # parameter-free modules
    layer = model.block_decoder.layers[0]
    for m in (layer.attn.rotary, layer.attn.kv_cache, layer.attn.core, layer.mlp.act):
        assert sum(p.numel() for p in m.parameters()) == 0
    assert model.token_decoder.expansion.bias is not None
    assert model.token_decoder.lm_head.bias is None

    vanilla = build_model(get_preset("vanilla_70"), device="meta")
    assert [n for n, _ in vanilla.named_children()] == ["layers", "final_norm", "embed_in", "lm_head"]
    gated = build_model(
        VanillaSpec(vocab_size=11, stack=StackSpec(
            n_layers=1, d_model=16, n_heads=2, d_ffn=32, mlp="gated_silu", norm="rmsnorm")),
        device="meta",
    )
    assert [n for n, _ in gated.layers[0].mlp.named_children()] == ["gate", "up", "act", "down"]
    assert isinstance(gated.final_norm, torch.nn.RMSNorm)


def test_initialisation() -> None:
    spec = BlockSpec(
        vocab_size=500,
        block_decoder=StackSpec(n_layers=1, d_model=256, n_heads=4, d_ffn=512),
        token_decoder=StackSpec(n_layers=1, d_model=128, n_heads=4, d_ffn=512),
    )
    model = build_model(spec, seed=0)
    assert isinstance(model, BlockLM)
    td, layer = model.token_decoder, model.block_decoder.layers[0]
    assert abs(layer.attn.qkv.weight.std().item() - 0.02) < 0.002
    assert abs(model.embedder.weight.std().item() - 0.02) < 0.002
    assert abs(td.expansion.weight.std().item() - 256**-0.5) < 0.005  # docs/model.md 1.4
    assert torch.count_nonzero(td.expansion.bias) == 0
    assert torch.count_nonzero(layer.attn.qkv.bias) == 0
    assert torch.all(layer.ln_attn.weight == 1) and torch.count_nonzero(layer.ln_attn.bias) == 0


def test_dtype_and_errors() -> None:
    spec = VanillaSpec(vocab_size=11, stack=StackSpec(n_layers=1, d_model=16, n_heads=2, d_ffn=32))
    model = build_model(spec, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with pytest.raises(TypeError, match="spec"):
        build_model(spec.stack)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 2, mode="eager")  # type: ignore[arg-type]
