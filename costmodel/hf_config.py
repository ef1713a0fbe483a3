"""Read a Hugging Face `config.json` (GPT-NeoX or Llama family) into a `VanillaSpec`.

Only plain JSON is read (never code). Keys follow the transformers config classes; defaults are
those classes' defaults where a key is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import UserError, read_json
from .spec import StackSpec, VanillaSpec

NEOX_TYPES = {"gpt_neox"}
LLAMA_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "olmo", "olmo2"}


class ConfigImportError(UserError):
    pass


def _need(cfg: dict[str, Any], key: str) -> Any:
    if key not in cfg:
        raise ConfigImportError(f"config.json: missing required key {key!r}")
    return cfg[key]


def spec_from_hf_config(cfg: dict[str, Any], name: str | None = None) -> VanillaSpec:
    """A vanilla spec from a parsed config.json dict; errors name the offending key."""
    if not isinstance(cfg, dict):
        raise ConfigImportError("config.json: the top level must be a JSON object")
    model_type = cfg.get("model_type")
    name = name or cfg.get("_name_or_path") or str(model_type or "imported")
    try:
        if model_type in NEOX_TYPES:
            stack = StackSpec(
                n_layers=_need(cfg, "num_hidden_layers"),
                d_model=_need(cfg, "hidden_size"),
                n_heads=_need(cfg, "num_attention_heads"),
                d_ffn=_need(cfg, "intermediate_size"),
                mlp="gelu",
                norm="layernorm",
                qkv_bias=cfg.get("attention_bias", True),
                out_bias=cfg.get("attention_bias", True),
                mlp_bias=True,
                rotary_fraction=cfg.get("rotary_pct", 0.25),
                rotary_base=cfg.get("rotary_emb_base", cfg.get("rope_theta", 10000.0)),
                parallel_residual=cfg.get("use_parallel_residual", True),
                norm_eps=cfg.get("layer_norm_eps", 1e-5),
            )
            tie = cfg.get("tie_word_embeddings", False)
        elif model_type in LLAMA_TYPES:
            attn_bias = cfg.get("attention_bias", model_type == "qwen2")
            stack = StackSpec(
                n_layers=_need(cfg, "num_hidden_layers"),
                d_model=_need(cfg, "hidden_size"),
                n_heads=_need(cfg, "num_attention_heads"),
                n_kv_heads=cfg.get("num_key_value_heads"),
                head_dim=cfg.get("head_dim"),
                d_ffn=_need(cfg, "intermediate_size"),
                mlp="gated_silu",
                norm="rmsnorm",
                qkv_bias=attn_bias,
                out_bias=cfg.get("attention_bias", False),
                mlp_bias=cfg.get("mlp_bias", False),
                rotary_fraction=cfg.get("partial_rotary_factor", 1.0),
                rotary_base=cfg.get("rope_theta", 10000.0),
                parallel_residual=False,
                norm_eps=cfg.get("rms_norm_eps", 1e-6),
            )
            tie = cfg.get("tie_word_embeddings", False)
        else:
            known = ", ".join(sorted(NEOX_TYPES | LLAMA_TYPES))
            raise ConfigImportError(
                f"config.json: model_type {model_type!r} is not supported (supported: {known})"
            )
        return VanillaSpec(
            name=name, vocab_size=_need(cfg, "vocab_size"), tie_embeddings=tie, stack=stack
        )
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigImportError(f"config.json: {loc}: {first['msg']}") from None


def read_json_file(path: str | Path, field: str = "config file") -> Any:
    """Parsed JSON of a user's file; errors name `field` and say what is wrong
    (`costmodel.errors.read_json`)."""
    try:
        return read_json(path, field)
    except UserError as e:
        raise ConfigImportError(str(e)) from None


def load_hf_config(path: str | Path, name: str | None = None) -> VanillaSpec:
    path = Path(path)
    cfg = read_json_file(path)
    return spec_from_hf_config(cfg, name=name or path.parent.name or None)
