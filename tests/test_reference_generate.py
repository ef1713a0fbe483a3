"""Reference inference: cached generation equals recomputation without a cache (issue 3).

Tiny random models, fp32 on CPU, both inference modes (static, hf-legacy). Prompt lengths and
generated lengths are deliberately not multiples of the block length.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel.spec import BlockSpec, StackSpec, VanillaSpec
from reference import BlockLM, VanillaLM, build_model, select_next

VOCAB = 67
NEOX = StackSpec(n_layers=2, d_model=64, n_heads=4, d_ffn=128)  # parallel, LN, 25% rotary
LLAMA = StackSpec(  # GQA, gated SiLU, RMSNorm, sequential, full rotary, no biases
    n_layers=2, d_model=48, n_heads=4, n_kv_heads=2, head_dim=16, d_ffn=96, mlp="gated_silu",
    norm="rmsnorm", qkv_bias=False, out_bias=False, mlp_bias=False, rotary_fraction=1.0,
    parallel_residual=False,
)
MODES = ["static", "hf-legacy", "official", "official-eager"]


def vanilla(stack: StackSpec = NEOX, seed: int = 0) -> VanillaLM:
    model = build_model(VanillaSpec(vocab_size=VOCAB, stack=stack), seed=seed)
    assert isinstance(model, VanillaLM)
    return model


def block(seed: int = 0, block_length: int = 4, prefix_length: int = 2) -> BlockLM:
    spec = BlockSpec(
        vocab_size=VOCAB, block_length=block_length, prefix_length=prefix_length,
        block_decoder=NEOX, token_decoder=LLAMA,  # different widths: expansion D_b -> P * D_t
    )
    model = build_model(spec, seed=seed)
    assert isinstance(model, BlockLM)
    return model


def prompt(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def naive_vanilla(
    model: VanillaLM, ids: torch.Tensor, g: int, temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full forward over the whole sequence, no cache, for every new token."""
    seq, logits = ids, []
    for _ in range(g):
        last = model(seq).logits[:, -1]
        logits.append(last)
        seq = torch.cat([seq, select_next(last, temperature, generator)[:, None]], dim=1)
    return seq[:, ids.shape[1]:], torch.stack(logits, dim=1)


@torch.no_grad()
def naive_block(
    model: BlockLM, ids: torch.Tensor, g: int, pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block decoder over all complete blocks and token decoder over the block so far, no cache."""
    lb = model.block_length
    seq = model.pad_prompt(ids, pad_id)
    new: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    while len(new) < g:
        ctx = model.block_decoder(model.embedder(seq))[:, -1]  # [B, D_b]
        blk = seq.new_empty(seq.shape[0], 0)
        for _ in range(min(lb, g - len(new))):
            last = model.token_decoder(ctx, blk)[:, -1]  # [B, V]
            logits.append(last)
            nxt = last.argmax(-1)
            new.append(nxt)
            blk = torch.cat([blk, nxt[:, None]], dim=1)
        seq = torch.cat([seq, blk], dim=1)
    return torch.stack(new, dim=1), torch.stack(logits, dim=1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("stack", "batch", "s", "g"), [
    (NEOX, 1, 5, 9), (NEOX, 3, 7, 6), (LLAMA, 2, 9, 7), (LLAMA, 3, 1, 1),
])
def test_vanilla_cached_equals_recompute(
    mode: str, stack: StackSpec, batch: int, s: int, g: int
) -> None:
    model = vanilla(stack)
    ids = prompt(batch, s)
    out = model.generate(ids, g, mode=mode, return_logits=True)  # type: ignore[arg-type]
    tokens, logits = naive_vanilla(model, ids, g)
    assert out.tokens.shape == (batch, g)
    assert torch.equal(out.tokens, tokens)
    assert out.logits is not None
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("batch", "s", "g"), [(1, 5, 9), (3, 7, 6), (2, 4, 4), (2, 1, 1), (3, 13, 11)])
def test_block_cached_equals_recompute(mode: str, batch: int, s: int, g: int) -> None:
    model = block()
    ids = prompt(batch, s)
    out = model.generate(ids, g, mode=mode, return_logits=True)  # type: ignore[arg-type]
    tokens, logits = naive_block(model, ids, g)
    assert out.tokens.shape == (batch, g)
    assert torch.equal(out.tokens, tokens)
    assert out.logits is not None
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("s", "g"), [(6, 10), (8, 8), (3, 2)])
def test_block_generation_matches_training_forward(mode: str, s: int, g: int) -> None:
    """Context embeddings and token logits of generation are the training forward's (docs/model.md 1.7)."""
    model, lb = block(seed=3), 4
    ids = prompt(2, s, seed=5)
    out = model.generate(ids, g, mode=mode, pad_id=1, return_logits=True)  # type: ignore[arg-type]
    assert out.logits is not None and out.contexts is not None
    seq = torch.cat([model.pad_prompt(ids, 1), out.tokens], dim=1)
    seq = torch.nn.functional.pad(seq, (0, -seq.shape[1] % lb), value=0)  # complete last block
    with torch.no_grad():
        train = model(seq)
    n_p = -(-s // lb)
    for j in range(out.contexts.shape[1]):
        torch.testing.assert_close(out.contexts[:, j], train.contexts[:, n_p - 1 + j],
                                   rtol=1e-4, atol=1e-5)
        n_tok = min(lb, g - j * lb)
        torch.testing.assert_close(
            out.logits[:, j * lb : j * lb + n_tok], train.logits[:, n_p - 1 + j, :n_tok],
            rtol=1e-4, atol=1e-5,
        )


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 1000),
    n_kv=st.sampled_from([1, 2]),
    mlp=st.sampled_from(["gelu", "gated_silu"]),
    norm=st.sampled_from(["layernorm", "rmsnorm"]),
    parallel=st.booleans(),
    rotary=st.sampled_from([0.0, 0.25, 1.0]),
    s=st.integers(1, 9),
    g=st.integers(1, 9),
)
def test_drawn_architectures_cached_equals_recompute(
    seed: int, n_kv: int, mlp: str, norm: str, parallel: bool, rotary: float, s: int, g: int
) -> None:
    stack = StackSpec(
        n_layers=2, d_model=32, n_heads=4, n_kv_heads=n_kv, head_dim=8, d_ffn=64,
        mlp=mlp, norm=norm, parallel_residual=parallel, rotary_fraction=rotary,  # type: ignore[arg-type]
    )
    model = vanilla(stack, seed=seed)
    ids = prompt(2, s, seed=seed)
    for mode in MODES:
        out = model.generate(ids, g, mode=mode, return_logits=True)  # type: ignore[arg-type]
        tokens, logits = naive_vanilla(model, ids, g)
        assert torch.equal(out.tokens, tokens)
        torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)


def test_sampling_is_the_same_draw_as_recompute() -> None:
    model = vanilla(LLAMA)
    ids = prompt(3, 5)
    out = model.generate(ids, 8, temperature=0.8, generator=torch.Generator().manual_seed(7))
    tokens, _ = naive_vanilla(model, ids, 8, 0.8, torch.Generator().manual_seed(7))
    assert torch.equal(out.tokens, tokens)
    greedy = model.generate(ids, 8).tokens
    assert not torch.equal(out.tokens, greedy)  # temperature 0.8 on near-uniform logits
    again = model.generate(ids, 8, temperature=0.8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(again.tokens, out.tokens)

    bm = block()
    a = bm.generate(ids, 7, temperature=1.0, generator=torch.Generator().manual_seed(3)).tokens
    b = bm.generate(ids, 7, temperature=1.0, generator=torch.Generator().manual_seed(3)).tokens
    assert torch.equal(a, b) and a.min() >= 0 and a.max() < VOCAB


def test_fixed_shape_steps_equal_the_eager_ones() -> None:
    """compile=True runs the fixed-shape steps (device position tensors); on a CPU they run
    eagerly, with a warning, and must choose the same tokens from the same logits."""
    ids = prompt(2, 6)
    for model, g in ((vanilla(LLAMA), 7), (block(), 9)):
        eager = model.generate(ids, g, return_logits=True)
        with pytest.warns(UserWarning, match="compile=True"):
            fixed = model.generate(ids, g, compile=True, return_logits=True)
        assert torch.equal(fixed.tokens, eager.tokens)
        torch.testing.assert_close(fixed.logits, eager.logits, rtol=1e-4, atol=1e-5)


def test_static_and_legacy_cache_sizes() -> None:
    """KV bytes: vanilla S+G-1 entries; block n_p+n_g-1 blocks and P+L_B-1 local (docs/model.md 2.3)."""
    b, s, g = 3, 7, 6
    model = vanilla(LLAMA)
    kv_entry = 2 * LLAMA.kv_heads * LLAMA.dh * 4  # k and v, fp32
    for mode in MODES:
        model.generate(prompt(b, s), g, mode=mode)  # type: ignore[arg-type]
        assert model.kv_cache_bytes() == LLAMA.n_layers * b * (s + g - 1) * kv_entry
    cache = model.layers[0].attn.kv_cache
    assert cache.mode == "concat" and cache.k is not None  # grown to S + G - 1 by torch.cat
    assert cache.k.shape == (b, 2, s + g - 1, 16)
    model.generate(prompt(b, s), g)
    assert cache.mode == "static" and cache.k is not None
    assert cache.k.shape == (b, 2, s + g - 1, 16)  # [B, K, T_max, dh], preallocated

    bm = block()
    n_p, n_g = 2, 2  # ceil(7/4), ceil(6/4)
    bm.generate(prompt(b, s), g)
    blk = NEOX.n_layers * b * (n_p + n_g - 1) * 2 * NEOX.kv_heads * NEOX.dh * 4
    tok = LLAMA.n_layers * b * (2 + 4 - 1) * kv_entry
    assert bm.kv_cache_bytes() == blk + tok
    bm.generate(prompt(b, s), g, mode="hf-legacy")  # last block has 2 tokens: P + 2 - 1 entries
    assert bm.kv_cache_bytes() == blk + LLAMA.n_layers * b * (2 + 2 - 1) * kv_entry


def test_left_padding_and_block_positions() -> None:
    bm = block()
    ids = prompt(2, 5)
    padded = bm.pad_prompt(ids, pad_id=9)
    assert padded.shape == (2, 8) and torch.all(padded[:, :3] == 9)
    assert torch.equal(padded[:, 3:], ids)
    assert bm.pad_prompt(padded) is padded
    # a different pad id changes the first block's embedding, hence the output
    a = bm.generate(ids, 6, pad_id=0, return_logits=True).logits
    b = bm.generate(ids, 6, pad_id=9, return_logits=True).logits
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("kind", ["vanilla", "block"])
def test_fixed_shape_step_for_compile(kind: str) -> None:
    """compile=True on CPU warns and runs the fixed-shape (full-buffer, masked) step eagerly."""
    model = vanilla(LLAMA) if kind == "vanilla" else block()
    ids = prompt(2, 6)
    ref = model.generate(ids, 9, return_logits=True)
    with pytest.warns(UserWarning, match="CUDA only"):
        out = model.generate(ids, 9, compile=True, return_logits=True)
    assert torch.equal(out.tokens, ref.tokens)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="compile"):
        model.generate(ids, 3, compile=True, mode="hf-legacy")


def test_no_host_synchronisation_in_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tensor value reaches Python during generate (no .item(), bool(), tolist(), ...)."""
    models = [vanilla(LLAMA), block()]

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("host synchronisation inside generate")

    for name in ["item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy"]:
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    ids = prompt(2, 6)
    for model in models:
        for mode in MODES:
            model.generate(ids, 7, mode=mode, temperature=0.5)  # type: ignore[arg-type]


def test_static_cache_rejects_overflow_and_training_after_inference() -> None:
    model = vanilla()
    ids = prompt(2, 4)
    model.setup_inference(2, 5, "static")
    model.prefill(ids)
    model.decode_step(ids[:, :1], 4)
    with pytest.raises(RuntimeError, match="exceed"):
        model.decode_step(ids[:, :1], 5)
    # training after inference: no cache involved, gradients flow
    loss = model(prompt(2, 9), compute_loss=True).loss
    assert loss is not None
    loss.backward()
    assert model.layers[0].attn.qkv.weight.grad is not None


@pytest.mark.parametrize("kind", ["vanilla", "block"])
def test_bf16_generation_runs(kind: str) -> None:
    """The CUDA dtype also works on CPU (slowly): same shapes, valid tokens, both modes."""
    model = (vanilla(LLAMA) if kind == "vanilla" else block()).to(torch.bfloat16)
    ids = prompt(2, 5)
    for mode in MODES:
        out = model.generate(ids, 6, mode=mode, return_logits=True)  # type: ignore[arg-type]
        assert out.tokens.shape == (2, 6) and out.logits is not None
        assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all()
        assert int(out.tokens.min()) >= 0 and int(out.tokens.max()) < VOCAB
