"""Vanilla parity with Hugging Face transformers (GPT-NeoX and Llama), same weights (issue 3)."""

from __future__ import annotations

import pytest
import torch

from costmodel.spec import StackSpec, VanillaSpec
from reference import VanillaLM, build_model
from reference.hf_interop import (
    llama_config_kwargs,
    load_into_hf,
    neox_config_kwargs,
    to_llama_state_dict,
    to_neox_state_dict,
)

transformers = pytest.importorskip("transformers")

VOCAB = 101


def _perturbed(spec: VanillaSpec, seed: int = 0) -> VanillaLM:
    """A random model whose biases and norm parameters are non-trivial too."""
    model = build_model(spec, seed=seed)
    assert isinstance(model, VanillaLM)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name or "ln_" in name else 0.0))
    return model


def _neox(spec: VanillaSpec, model: VanillaLM) -> torch.nn.Module:
    config = transformers.GPTNeoXConfig(**neox_config_kwargs(spec))
    hf = transformers.GPTNeoXForCausalLM(config).eval()
    load_into_hf(hf, to_neox_state_dict(model))
    return hf


def _llama(spec: VanillaSpec, model: VanillaLM) -> torch.nn.Module:
    config = transformers.LlamaConfig(**llama_config_kwargs(spec))
    hf = transformers.LlamaForCausalLM(config).eval()
    load_into_hf(hf, to_llama_state_dict(model))
    return hf


NEOX_SPECS = {
    "pythia-like": VanillaSpec(vocab_size=VOCAB, stack=StackSpec(
        n_layers=3, d_model=64, n_heads=4, d_ffn=256)),
    "sequential-full-rotary-tied": VanillaSpec(vocab_size=VOCAB, tie_embeddings=True, stack=StackSpec(
        n_layers=2, d_model=48, n_heads=3, d_ffn=96, rotary_fraction=1.0,
        parallel_residual=False, rotary_base=500.0)),
}
LLAMA_SPECS = {
    "gqa": VanillaSpec(vocab_size=VOCAB, stack=StackSpec(
        n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ffn=160, mlp="gated_silu",
        norm="rmsnorm", qkv_bias=False, out_bias=False, mlp_bias=False, rotary_fraction=1.0,
        parallel_residual=False, norm_eps=1e-6, rotary_base=500000.0)),
    "mqa-head-dim-biases": VanillaSpec(vocab_size=VOCAB, stack=StackSpec(
        n_layers=2, d_model=40, n_heads=4, n_kv_heads=1, head_dim=16, d_ffn=72,
        mlp="gated_silu", norm="rmsnorm", qkv_bias=True, out_bias=True, mlp_bias=True,
        rotary_fraction=1.0, parallel_residual=False, norm_eps=1e-6)),
}


def _check_logits(ours: VanillaLM, hf: torch.nn.Module, batch: int = 3, s: int = 13) -> None:
    ids = torch.randint(0, VOCAB, (batch, s), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids).logits
    assert expected.abs().max() > 0.1  # the comparison is not between near-zero tensors
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)
    # the cached hf-legacy prefill logits of every prompt position, and the static last row
    ours.setup_inference(batch, s, "hf-legacy")
    torch.testing.assert_close(ours.prefill(ids), expected, rtol=1e-5, atol=2e-5)
    ours.setup_inference(batch, s, "static")
    torch.testing.assert_close(ours.prefill(ids)[:, 0], expected[:, -1], rtol=1e-5, atol=2e-5)


def _check_generate(ours: VanillaLM, hf: torch.nn.Module, g: int = 12) -> None:
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=g, min_new_tokens=g,
            do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True,
        )[:, ids.shape[1]:]
    for mode in ("static", "hf-legacy", "official", "official-eager"):
        assert torch.equal(ours.generate(ids, g, mode=mode).tokens, expected), mode


@pytest.mark.parametrize("name", NEOX_SPECS)
def test_gpt_neox_parity(name: str) -> None:
    spec = NEOX_SPECS[name]
    ours = _perturbed(spec)
    hf = _neox(spec, ours)
    _check_logits(ours, hf)
    _check_generate(ours, hf)


@pytest.mark.parametrize("name", LLAMA_SPECS)
def test_llama_parity(name: str) -> None:
    spec = LLAMA_SPECS[name]
    ours = _perturbed(spec)
    hf = _llama(spec, ours)
    _check_logits(ours, hf)
    _check_generate(ours, hf)


def test_parity_is_sensitive_to_the_qkv_layout() -> None:
    """Swapping K and V rows breaks parity: the layout mapping is really exercised."""
    spec = LLAMA_SPECS["gqa"]
    ours = _perturbed(spec)
    state = to_llama_state_dict(ours)
    k, v = "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"
    state[k], state[v] = state[v], state[k]
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama_config_kwargs(spec))).eval()
    load_into_hf(hf, state)
    ids = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        assert not torch.allclose(ours(ids).logits, hf(ids).logits, atol=1e-3)


def test_config_helpers_reject_other_architectures() -> None:
    with pytest.raises(ValueError, match="GPT-NeoX"):
        neox_config_kwargs(LLAMA_SPECS["gqa"])
    with pytest.raises(ValueError, match="Llama"):
        llama_config_kwargs(NEOX_SPECS["pythia-like"])
