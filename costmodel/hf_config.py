"""Read a Hugging Face `config.json` (GPT-NeoX or Llama family) into a `VanillaSpec`.

Only plain JSON is read (never code). Keys follow the transformers config classes; defaults are
those classes' defaults where a key is absent.
"""

from __future__ import annotations

import re
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


# Keys whose feature changes the cost and is not modelled: refused by name, never ignored.
UNSUPPORTED_KEYS = {
    "num_local_experts": "mixture-of-experts layers",
    "num_experts": "mixture-of-experts layers",
    "n_routed_experts": "mixture-of-experts layers",
    "moe_intermediate_size": "mixture-of-experts layers",
    "sliding_window_pattern": "sliding-window attention on only some layers",
    "cross_attention_layers": "cross-attention layers",
    "quantization_config": "quantized checkpoint weights (choose the precision in the "
                           "implementation profile instead)",
}


def _unsupported(cfg: dict[str, Any]) -> None:
    for key, what in UNSUPPORTED_KEYS.items():
        value = cfg.get(key)
        if value not in (None, 0, False, [], {}):
            raise ConfigImportError(f"config.json: {key}: {what} are not modelled by blockroof")
    kinds = cfg.get("layer_types")
    if isinstance(kinds, list) and len(set(map(str, kinds))) > 1:
        raise ConfigImportError(
            "config.json: layer_types: layers of different kinds "
            f"({', '.join(sorted(set(map(str, kinds))))}) are not modelled by blockroof")


def _sliding_window(cfg: dict[str, Any], model_type: str) -> int | None:
    """The attention window every layer uses, or None (docs/sliding-window.md).

    Mistral: ``sliding_window`` (null in later versions). Qwen2/Qwen3: ``sliding_window`` counts
    only when ``use_sliding_window`` is true, and then only on layers from
    ``max_window_layers`` on: all layers (0) is modelled, a mix is refused.
    """
    window = cfg.get("sliding_window")
    if window is None:
        return None
    if "use_sliding_window" in cfg or model_type in ("qwen2", "qwen3"):
        if not cfg.get("use_sliding_window", False):
            return None
        first = cfg.get("max_window_layers", 0)
        n = cfg.get("num_hidden_layers")
        if isinstance(first, int) and isinstance(n, int) and first >= n:
            return None
        if first not in (0, None):
            raise ConfigImportError(
                f"config.json: max_window_layers: a sliding window on layers {first} and later "
                "only (a mix of windowed and full layers) is not modelled by blockroof")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigImportError(
            f"config.json: sliding_window: expected a whole number of tokens >= 1 or null, "
            f"got {window!r}")
    return window


def spec_from_hf_config(cfg: dict[str, Any], name: str | None = None) -> VanillaSpec:
    """A vanilla spec from a parsed config.json dict; errors name the offending key."""
    if not isinstance(cfg, dict):
        raise ConfigImportError("config.json: the top level must be a JSON object")
    model_type = cfg.get("model_type")
    name = name or cfg.get("_name_or_path") or str(model_type or "imported")
    _unsupported(cfg)
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
                sliding_window=_sliding_window(cfg, model_type),
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
        raise ConfigImportError(
            f"config.json: {describe_error(e.errors(include_url=False)[0], _KEY_OF_FIELD)}") \
            from None


# spec field -> the config.json key it was read from (the user knows the key, not the field)
_KEY_OF_FIELD = {
    "n_layers": "num_hidden_layers", "d_model": "hidden_size", "n_heads": "num_attention_heads",
    "n_kv_heads": "num_key_value_heads", "head_dim": "head_dim", "d_ffn": "intermediate_size",
    "rotary_fraction": "partial_rotary_factor (rotary_pct)", "rotary_base": "rope_theta",
    "norm_eps": "rms_norm_eps (layer_norm_eps)", "vocab_size": "vocab_size",
    "tie_embeddings": "tie_word_embeddings", "qkv_bias": "attention_bias",
    "out_bias": "attention_bias", "mlp_bias": "mlp_bias",
    "parallel_residual": "use_parallel_residual", "sliding_window": "sliding_window",
}


def describe_error(err: dict[str, Any], keys: dict[str, str] | None = None) -> str:
    """One pydantic error as '<field>: <rule>' in this project's words; `keys` renames spec
    fields to the names the user wrote (config.json keys)."""
    if keys is None:  # a spec file: the field's path as written, without the union's tag
        fields = [str(p) for p in err["loc"] if str(p) not in ("vanilla", "block")]
        key = ".".join(fields) or "spec"
        keys = {}
    else:
        fields = [str(p) for p in err["loc"] if str(p) not in ("stack",)]
        key = keys.get(fields[-1], fields[-1]) if fields else "config"
    got = err.get("input")
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "")
        rule = f"must be {op} {bound}, got {got!r}"
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        rule = f"must be a whole number, got {got!r}"
    elif kind in ("float_type", "float_parsing"):
        rule = f"must be a number, got {got!r}"
    elif kind in ("bool_type", "bool_parsing"):
        rule = f"must be true or false, got {got!r}"
    elif kind == "missing":
        rule = "is required"
    elif kind == "extra_forbidden":
        rule = "is not a known field (misspelled?)"
    elif kind == "literal_error":
        rule = f"must be one of {ctx.get('expected', '')}, got {got!r}"
    elif kind == "value_error":
        # our own validators' messages (spec.py), which already name the sizes involved
        rule = str(err["msg"]).removeprefix("Value error, ")
        for field, name in keys.items():
            rule = re.sub(rf"\b{field}\b", name.split(" ")[0], rule)
        if not fields or (keys and fields[-1] not in keys):
            return rule
    else:
        rule = f"is not acceptable here ({got!r})"
    return f"{key}: {rule}"


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
