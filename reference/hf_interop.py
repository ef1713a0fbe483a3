"""Weights and configs shared with Hugging Face `transformers` (for parity tests and benchmarks).

Nothing here imports transformers: configs are plain keyword dicts for `GPTNeoXConfig` /
`LlamaConfig` (transformers 5.x names; rotary settings in ``rope_parameters``), and weights are
state dicts keyed by the transformers parameter names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from costmodel.spec import VanillaSpec

from .vanilla import VanillaLM


def neox_config_kwargs(spec: VanillaSpec) -> dict[str, Any]:
    """`transformers.GPTNeoXConfig(**kwargs)` for a GPT-NeoX-shaped vanilla spec."""
    s = spec.stack
    if s.mlp != "gelu" or s.norm != "layernorm" or s.kv_heads != s.n_heads:
        raise ValueError("neox_config_kwargs: GPT-NeoX needs gelu MLP, LayerNorm and K = H")
    if s.qkv_bias != s.out_bias or not s.mlp_bias or s.dh * s.n_heads != s.d_model:
        raise ValueError("neox_config_kwargs: GPT-NeoX ties qkv/out biases, has MLP biases, dh=D/H")
    return dict(
        vocab_size=spec.vocab_size,
        hidden_size=s.d_model,
        num_hidden_layers=s.n_layers,
        num_attention_heads=s.n_heads,
        intermediate_size=s.d_ffn,
        hidden_act="gelu",
        rope_parameters={
            "rope_type": "default",
            "rope_theta": s.rotary_base,
            "partial_rotary_factor": s.rotary_fraction,
        },
        use_parallel_residual=s.parallel_residual,
        layer_norm_eps=s.norm_eps,
        attention_bias=s.qkv_bias,
        tie_word_embeddings=spec.tie_embeddings,
        max_position_embeddings=4096,
        bos_token_id=0,
        eos_token_id=0,
    )


def llama_config_kwargs(spec: VanillaSpec) -> dict[str, Any]:
    """`transformers.LlamaConfig(**kwargs)` for a gated-SiLU / RMSNorm / sequential spec."""
    s = spec.stack
    if s.mlp != "gated_silu" or s.norm != "rmsnorm" or s.parallel_residual:
        raise ValueError("llama_config_kwargs: Llama needs gated_silu, RMSNorm, sequential")
    if s.qkv_bias != s.out_bias:
        raise ValueError("llama_config_kwargs: Llama uses one attention_bias for qkv and out")
    return dict(
        vocab_size=spec.vocab_size,
        hidden_size=s.d_model,
        num_hidden_layers=s.n_layers,
        num_attention_heads=s.n_heads,
        num_key_value_heads=s.kv_heads,
        head_dim=s.dh,
        intermediate_size=s.d_ffn,
        hidden_act="silu",
        rms_norm_eps=s.norm_eps,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": s.rotary_base,
            "partial_rotary_factor": s.rotary_fraction,
        },
        attention_bias=s.qkv_bias,
        mlp_bias=s.mlp_bias,
        tie_word_embeddings=spec.tie_embeddings,
        max_position_embeddings=4096,
    )


def _split_qkv(w: Tensor, h: int, k: int, dh: int) -> tuple[Tensor, Tensor, Tensor]:
    # w: [(H + 2K) * dh, ...] in our per-KV-head [q_1..q_G | k | v] layout
    g = h // k
    blocks = w.reshape(k, g + 2, dh, *w.shape[1:])
    q = blocks[:, :g].reshape(h * dh, *w.shape[1:])
    return q, blocks[:, g].reshape(k * dh, *w.shape[1:]), blocks[:, g + 1].reshape(k * dh, *w.shape[1:])


def to_neox_state_dict(model: VanillaLM) -> dict[str, Tensor]:
    """Our weights under `GPTNeoXForCausalLM` names (the fused QKV layouts coincide)."""
    out: dict[str, Tensor] = {}
    rename = {
        "ln_attn": "input_layernorm", "ln_mlp": "post_attention_layernorm",
        "attn.qkv": "attention.query_key_value", "attn.dense": "attention.dense",
        "mlp.up": "mlp.dense_h_to_4h", "mlp.down": "mlp.dense_4h_to_h",
    }
    for name, t in model.state_dict().items():
        if name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            for ours, theirs in rename.items():
                if rest.startswith(ours + "."):
                    rest = theirs + rest[len(ours):]
            out[f"gpt_neox.layers.{i}.{rest}"] = t
        elif name.startswith("final_norm."):
            out["gpt_neox.final_layer_norm." + name.split(".", 1)[1]] = t
        elif name.startswith("embed_in."):
            out["gpt_neox." + name] = t
        elif name.startswith("lm_head."):
            out["embed_out." + name.split(".", 1)[1]] = t
    return out


def to_llama_state_dict(model: VanillaLM) -> dict[str, Tensor]:
    """Our weights under `LlamaForCausalLM` names (fused QKV split into q/k/v_proj)."""
    s = model.spec.stack
    out: dict[str, Tensor] = {}
    rename = {
        "ln_attn": "input_layernorm", "ln_mlp": "post_attention_layernorm",
        "attn.dense": "self_attn.o_proj", "mlp.gate": "mlp.gate_proj",
        "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj",
    }
    for name, t in model.state_dict().items():
        if name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            prefix = f"model.layers.{i}."
            if rest.startswith("attn.qkv."):
                kind = rest.rsplit(".", 1)[1]  # weight or bias
                q, k, v = _split_qkv(t, s.n_heads, s.kv_heads, s.dh)
                for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                    out[f"{prefix}self_attn.{proj}.{kind}"] = part.contiguous()
                continue
            for ours, theirs in rename.items():
                if rest.startswith(ours + "."):
                    rest = theirs + rest[len(ours):]
            out[prefix + rest] = t
        elif name.startswith("final_norm."):
            out["model.norm." + name.split(".", 1)[1]] = t
        elif name.startswith("embed_in."):
            out["model.embed_tokens." + name.split(".", 1)[1]] = t
        elif name.startswith("lm_head."):
            out[name] = t
    return out


@torch.no_grad()
def load_into_hf(hf_model: torch.nn.Module, state: dict[str, Tensor]) -> None:
    """Copy `state` into a transformers model; every parameter must be covered.

    GPT-NeoX's LM head is ``embed_out`` in transformers 4.x and ``lm_head`` in 5.x: either works.
    """
    keys = hf_model.state_dict().keys()
    if "embed_out.weight" in state and "embed_out.weight" not in keys and "lm_head.weight" in keys:
        state = dict(state)
        state["lm_head.weight"] = state.pop("embed_out.weight")
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("inv_freq")]
    if missing or unexpected:
        raise ValueError(f"load_into_hf: missing {missing}, unexpected {unexpected}")
