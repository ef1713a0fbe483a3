"""FlopCounterMode counts of the reference, per module, against closed forms (issue 3).

attn.core: 4 * B * H * q * n_k * dh (full rectangle, GQA counted with query heads);
a Linear: 2 * rows * in * out. Checked in both inference modes, for prefill and decode steps,
with both counting helpers of `reference.counting`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import pytest
import torch

from costmodel.presets import get_preset
from costmodel.spec import BlockSpec, StackSpec, VanillaSpec
from reference import BlockLM, VanillaLM, build_model, counting_mode, flop_counter, flops_by_module

V = 53
STACK = StackSpec(  # GQA and a gated MLP: the general case
    n_layers=2, d_model=48, n_heads=4, n_kv_heads=2, head_dim=16, d_ffn=80, mlp="gated_silu",
    norm="rmsnorm", parallel_residual=False, rotary_fraction=1.0,
)


def linear_flops(stack: StackSpec, rows: int) -> dict[str, int]:
    d, f, h, k, dh = stack.d_model, stack.d_ffn, stack.n_heads, stack.kv_heads, stack.dh
    out = {"attn.qkv": 2 * rows * d * (h + 2 * k) * dh, "attn.dense": 2 * rows * h * dh * d,
           "mlp.up": 2 * rows * d * f, "mlp.down": 2 * rows * f * d}
    if stack.mlp == "gated_silu":
        out["mlp.gate"] = 2 * rows * d * f
    return out


def core_flops(stack: StackSpec, b: int, q: int, n_k: int) -> int:
    return 4 * b * stack.n_heads * q * n_k * stack.dh


def counted(fn: Callable[[], object], math_backend: bool) -> dict[str, int]:
    with counting_mode() if math_backend else nullcontext(), flop_counter() as counter:
        fn()
    return flops_by_module(counter)


def check_stack(flops: dict[str, int], prefix: str, stack: StackSpec, rows: int, b: int,
                q: int, n_k: int) -> None:
    for i in range(stack.n_layers):
        assert flops[f"{prefix}layers.{i}.attn.core"] == core_flops(stack, b, q, n_k)
        for name, expected in linear_flops(stack, rows).items():
            assert flops[f"{prefix}layers.{i}.{name}"] == expected, name


@pytest.mark.parametrize("math_backend", [False, True])
@pytest.mark.parametrize("mode", ["static", "hf-legacy"])
def test_vanilla_prefill_and_decode_counts(mode: str, math_backend: bool) -> None:
    model = build_model(VanillaSpec(vocab_size=V, stack=STACK), seed=0)
    assert isinstance(model, VanillaLM)
    b, s = 3, 7
    ids = torch.randint(0, V, (b, s))
    model.setup_inference(b, s + 4, mode)  # type: ignore[arg-type]
    flops = counted(lambda: model.prefill(ids), math_backend)
    check_stack(flops, "", STACK, b * s, b, s, s)
    head_rows = b if mode == "static" else b * s  # docs/model.md 2.1: hf-legacy logits on all rows
    assert flops["lm_head"] == 2 * head_rows * STACK.d_model * V
    assert "embed_in" not in flops  # a lookup: no FLOPs
    for c in (s, s + 1, s + 2):
        flops = counted(lambda c=c: model.decode_step(ids[:, :1], c), math_backend)
        check_stack(flops, "", STACK, b, b, 1, c + 1)
        assert flops["lm_head"] == 2 * b * STACK.d_model * V


@pytest.mark.parametrize("mode", ["static", "hf-legacy"])
def test_block_generate_counts(mode: str) -> None:
    """Whole-request totals per module equal the sums over the docs/model.md 2.2 schedule."""
    spec = BlockSpec(vocab_size=V, block_length=4, prefix_length=2,
                     block_decoder=StackSpec(n_layers=2, d_model=64, n_heads=4, d_ffn=128),
                     token_decoder=STACK)
    model = build_model(spec, seed=0)
    assert isinstance(model, BlockLM)
    b, s, g = 2, 6, 7  # n_p = 2, n_g = 2, last block 3 tokens
    ids = torch.randint(0, V, (b, s))
    flops = counted(lambda: model.generate(ids, g, mode=mode), math_backend=False)  # type: ignore[arg-type]
    bd, td, p, lb = spec.block_decoder, spec.token_decoder, 2, 4
    n_p, n_g = 2, 2
    # block decoder: prefill over n_p blocks, then 1 block at c = n_p + j - 1
    core = core_flops(bd, b, n_p, n_p) + sum(core_flops(bd, b, 1, n_p + j) for j in range(1, n_g))
    rows = b * (n_p + n_g - 1)
    assert flops["block_decoder.layers.0.attn.core"] == core
    assert flops["block_decoder.layers.1.attn.qkv"] == linear_flops(bd, rows)["attn.qkv"]
    # token decoder: per block, P prefix positions then single tokens at c = P + k - 2
    tokens_per_block = [4, 3]
    core = sum(
        core_flops(td, b, p, p) + sum(core_flops(td, b, 1, p + k - 1) for k in range(2, n + 1))
        for n in tokens_per_block
    )
    rows = sum(b * (p + n - 1) for n in tokens_per_block)
    assert flops["token_decoder.layers.1.attn.core"] == core
    assert flops["token_decoder.layers.0.mlp.gate"] == linear_flops(td, rows)["mlp.gate"]
    assert flops["token_decoder.expansion"] == n_g * 2 * b * bd.d_model * p * td.d_model
    assert flops["token_decoder.lm_head"] == 2 * b * g * td.d_model * V  # one row per token
    assert "embedder" not in flops and lb == spec.block_length


def test_full_size_preset_counts_on_meta() -> None:
    """A 1.4B model costs nothing to count on the meta device."""
    spec = get_preset("block_main_b4_1.2b")
    model = build_model(spec, device="meta")
    assert isinstance(model, BlockLM)
    b, n_p = 4, 512
    model.setup_inference(b, n_p, 1, "static")
    x = torch.empty(b, n_p, spec.block_decoder.d_model, device="meta")
    with counting_mode(), flop_counter() as counter:
        model.block_decode(x, 0)
    flops = flops_by_module(counter)
    bd = spec.block_decoder
    check_stack(flops, "block_decoder.", bd, b * n_p, b, n_p, n_p)
    # cache bytes are nominal (numel * element size), so meta models report full-size caches
    td = spec.token_decoder
    assert model.kv_cache_bytes() == (
        bd.n_layers * 2 * b * bd.kv_heads * n_p * bd.dh * 4
        + td.n_layers * 2 * b * td.kv_heads * spec.local_cache_entries * td.dh * 4
    )
