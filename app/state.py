"""The dashboard's what-if (models, hardware, workload, profile) and its URL query parameters.

`WhatIf` holds raw user choices (plain values, not yet validated by the specs), so a shared URL
with a bad value still loads and shows the same error as the widget would. Field names are the
sidebar's widget keys. `from_query_params` parses a URL (unknown or unparsable parameters fall
back to the default with a warning naming the parameter); `to_query_params` writes the URL.

Query parameters: vanilla, block, hw, profile, batch ("max" or a number), prompt, gen,
reserve_gib; for a custom vanilla v_layers, v_width, v_heads, v_ffn; for a custom block
b_lb, b_prefix, b_nb, b_nt, b_width, b_heads, b_ffn; for a blockified vanilla bf_lb; for
efficiencies that override the hardware record's (`EFFICIENCY_FIELDS`) eff_mm, eff_bw, eff_ov,
t_kernel_us, t_forward_us (absent = the record's own); for precision (docs/precision.md, absent
= bf16 everywhere) wdtype, kvdtype, cdtype and dtype_on (which side they apply to: both,
vanilla or block); for parallelism tp, pp (absent = 1; docs/parallelism.md).
An uploaded config.json cannot travel in a URL: "vanilla=upload" asks for the file again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pydantic import BaseModel

from costmodel.errors import UserError, check_field
from costmodel.hardware import DTYPES, Efficiency, hardware_ids
from costmodel.implementation import PROFILES
from costmodel.precision import KV_DTYPES, resolve_kv, resolve_weight
from costmodel.presets import PRESET_NAMES, get_preset, resolve_preset_name
from costmodel.spec import BlockSpec, StackSpec
from costmodel.workload import Workload

VANILLA_PRESETS: tuple[str, ...] = tuple(n for n in PRESET_NAMES if get_preset(n).kind == "vanilla")
BLOCK_PRESETS: tuple[str, ...] = tuple(n for n in PRESET_NAMES if get_preset(n).kind == "block")
CUSTOM = "custom"
UPLOAD = "upload"
BLOCKIFY = "blockify"
VANILLA_CHOICES: tuple[str, ...] = (*VANILLA_PRESETS, CUSTOM, UPLOAD)
BLOCK_CHOICES: tuple[str, ...] = (*BLOCK_PRESETS, BLOCKIFY, CUSTOM)
PROFILE_CHOICES: tuple[str, ...] = tuple(PROFILES)
BATCH_MODES: tuple[str, ...] = ("max", "fixed")
# the sidebar's choices; a URL may name any valid format (int4-g64, presets)
WEIGHT_DTYPE_CHOICES: tuple[str, ...] = ("bf16", "fp16", "fp32", "fp8", "int8", "int4-g128",
                                         "int4-g32")
KV_DTYPE_CHOICES: tuple[str, ...] = ("bf16", "fp16", "fp32", "fp8", "int8")
COMPUTE_DTYPE_CHOICES: tuple[str, ...] = DTYPES
DTYPE_SCOPES: tuple[str, ...] = ("both", "vanilla", "block")


@dataclass(frozen=True)
class WhatIf:
    """Raw sidebar choices; the defaults are the paper's prefill-heavy setting on one H100."""

    vanilla: str = "vanilla_410"
    block: str = "block_main_b4_1.2b"
    hardware: str = "h100-sxm-80gb"
    profile: str = "static"
    batch_mode: str = "max"
    batch: int = 64
    prompt_tokens: int = 2048
    generated_tokens: int = 128
    reserve_GiB: float = 0.0
    # custom vanilla (a GPT-NeoX stack)
    v_layers: int = 24
    v_width: int = 1024
    v_heads: int = 16
    v_ffn: int = 4096
    # custom block (block and token decoders of one width)
    b_block_length: int = 4
    b_prefix: int = 2
    b_layers_block: int = 12
    b_layers_token: int = 12
    b_width: int = 2048
    b_heads: int = 16
    b_ffn: int = 8192
    # blockify the vanilla side
    bf_block_length: int = 4
    # efficiencies overriding the hardware record's (None: the record's own)
    eff_matmul: float | None = None
    eff_bandwidth: float | None = None
    eff_overlap: float | None = None
    kernel_overhead_us: float | None = None
    forward_overhead_us: float | None = None
    # precision (costmodel.precision) and the side(s) it applies to
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    compute_dtype: str = "bf16"
    dtype_scope: str = "both"
    # parallelism: GPUs per replica = tp x pp (docs/parallelism.md)
    tp: int = 1
    pp: int = 1

    def widget_values(self) -> dict[str, Any]:
        """Session-state values of the sidebar widgets (keys = field names)."""
        return asdict(self)


DEFAULT = WhatIf()

# query parameter -> field; order is the URL's order
_MAIN = {"vanilla": "vanilla", "block": "block", "hw": "hardware", "profile": "profile",
         "prompt": "prompt_tokens", "gen": "generated_tokens"}
_CUSTOM_VANILLA = {"v_layers": "v_layers", "v_width": "v_width", "v_heads": "v_heads",
                   "v_ffn": "v_ffn"}
_CUSTOM_BLOCK = {"b_lb": "b_block_length", "b_prefix": "b_prefix", "b_nb": "b_layers_block",
                 "b_nt": "b_layers_token", "b_width": "b_width", "b_heads": "b_heads",
                 "b_ffn": "b_ffn"}
_BLOCKIFY = {"bf_lb": "bf_block_length"}
_PARALLEL = {"tp": "tp", "pp": "pp"}
_EFFICIENCY = {"eff_mm": "eff_matmul", "eff_bw": "eff_bandwidth", "eff_ov": "eff_overlap",
               "t_kernel_us": "kernel_overhead_us", "t_forward_us": "forward_overhead_us"}
# WhatIf field -> (costmodel.hardware.Efficiency field, factor from the widget's unit to SI)
EFFICIENCY_FIELDS: dict[str, tuple[str, float]] = {
    "eff_matmul": ("matmul", 1.0), "eff_bandwidth": ("bandwidth", 1.0),
    "eff_overlap": ("overlap", 1.0), "kernel_overhead_us": ("kernel_overhead_s", 1e-6),
    "forward_overhead_us": ("forward_overhead_s", 1e-6),
}
_PRECISION = {"wdtype": "weight_dtype", "kvdtype": "kv_dtype", "cdtype": "compute_dtype",
              "dtype_on": "dtype_scope"}
# WhatIf field -> (model, field, factor to SI) whose rule a URL value must meet before it
# reaches a widget (widgets clamp out-of-range values silently); docs/reliability.md
RULES: dict[str, tuple[type[BaseModel], str, float]] = {
    "batch": (Workload, "batch", 1.0), "prompt_tokens": (Workload, "prompt_tokens", 1.0),
    "generated_tokens": (Workload, "generated_tokens", 1.0),
    "reserve_GiB": (Workload, "memory_reserve_bytes", 2.0**30),
    "v_layers": (StackSpec, "n_layers", 1), "v_width": (StackSpec, "d_model", 1),
    "v_heads": (StackSpec, "n_heads", 1), "v_ffn": (StackSpec, "d_ffn", 1),
    "b_block_length": (BlockSpec, "block_length", 1), "b_prefix": (BlockSpec, "prefix_length", 1),
    "b_layers_block": (StackSpec, "n_layers", 1), "b_layers_token": (StackSpec, "n_layers", 1),
    "b_width": (StackSpec, "d_model", 1), "b_heads": (StackSpec, "n_heads", 1),
    "b_ffn": (StackSpec, "d_ffn", 1), "bf_block_length": (BlockSpec, "block_length", 1),
} | {k: (Efficiency, name, f) for k, (name, f) in EFFICIENCY_FIELDS.items()}


def check_value(field: str, value: Any, text: str) -> Any:
    """`value` (of WhatIf `field`) if it meets its model's rule (`RULES`), else ValueError
    quoting `text`, the value as the URL gave it."""
    model, name, to_si = RULES[field]
    try:
        check_field(model, name, value * to_si if to_si != 1 else value, name, shown=text)
    except UserError as e:
        raise ValueError(str(e)) from None
    return value


QUERY_KEYS: tuple[str, ...] = (*_MAIN, "batch", "reserve_gib", *_CUSTOM_VANILLA, *_CUSTOM_BLOCK,
                               *_BLOCKIFY, *_EFFICIENCY, *_PARALLEL, *_PRECISION)
# query parameter -> WhatIf field, every parameter
QUERY_FIELD: dict[str, str] = _MAIN | {"batch": "batch", "reserve_gib": "reserve_GiB"} \
    | _CUSTOM_VANILLA | _CUSTOM_BLOCK | _BLOCKIFY | _EFFICIENCY | _PARALLEL \
    | _PRECISION
STREAMLIT_KEYS: tuple[str, ...] = ("embed", "embed_options")  # Streamlit's own; left alone


def _model_choice(kind: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        key = text.strip()
        if key.lower() in choices:
            return key.lower()
        name = resolve_preset_name(key)  # raises with close matches
        if name not in choices:
            raise ValueError(f"{name!r} is not a {kind} model")
        return name
    return parse


def _choice(choices: Callable[[], list[str]] | tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        known = list(choices() if callable(choices) else choices)
        key = text.strip().lower()
        if key not in known:
            raise ValueError(f"unknown value {text!r} (known: {', '.join(known)})")
        return key
    return parse


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _weight_dtype(text: str) -> str:
    key = text.strip().lower()
    resolve_weight(key)  # raises "weight_dtype: unknown format ..."
    return key


def _kv_dtype(text: str) -> str:
    key = text.strip().lower()
    resolve_kv(key)
    return key


_PARSERS: dict[str, Callable[[str], Any]] = {
    "vanilla": _model_choice("vanilla", VANILLA_CHOICES),
    "block": _model_choice("block", BLOCK_CHOICES),
    "hardware": _choice(hardware_ids),
    "profile": _choice(PROFILE_CHOICES),
    "weight_dtype": _weight_dtype,
    "kv_dtype": _kv_dtype,
    "compute_dtype": _choice(COMPUTE_DTYPE_CHOICES),
    "dtype_scope": _choice(DTYPE_SCOPES),
}
assert set(KV_DTYPE_CHOICES) <= set(KV_DTYPES)


def _first(value: str | list[str]) -> str:
    return value[-1] if isinstance(value, list) else str(value)


def from_query_params(params: Mapping[str, str | list[str]]) -> tuple[WhatIf, list[str]]:
    """A `WhatIf` from URL query parameters, and one warning per ignored parameter."""
    changes: dict[str, Any] = {}
    warnings: list[str] = []
    types = {f.name: f.type for f in fields(WhatIf)}
    mapping = _MAIN | _CUSTOM_VANILLA | _CUSTOM_BLOCK | _BLOCKIFY | _PARALLEL | _PRECISION
    for key, raw in params.items():
        text = _first(raw)
        try:
            if key in _EFFICIENCY:
                name = _EFFICIENCY[key]
                changes[name] = check_value(name, _float(text), text)
            elif key in mapping:
                name = mapping[key]
                parser = _PARSERS.get(name) or (_int if types[name] in (int, "int") else _float)
                value = parser(text)
                changes[name] = check_value(name, value, text) if name in RULES else value
            elif key == "batch":
                if text.strip().lower() == "max":
                    changes["batch_mode"] = "max"
                else:
                    changes |= {"batch_mode": "fixed",
                                "batch": check_value("batch", _int(text), text)}
            elif key == "reserve_gib":
                changes["reserve_GiB"] = check_value("reserve_GiB", _float(text), text)
            elif key in STREAMLIT_KEYS:
                continue
            else:
                warnings.append(f"URL parameter {key!r} is unknown and was ignored "
                                f"(known: {', '.join(QUERY_KEYS)})")
        except ValueError as e:
            msg = str(e).split(": ", 1)[-1] if str(e).startswith("model:") else str(e)
            warnings.append(f"URL parameter {key}={text!r} was ignored: {msg}")
    return replace(DEFAULT, **changes), warnings


def to_query_params(w: WhatIf) -> dict[str, str]:
    """URL query parameters for `w`: the main choices always, custom fields when used."""
    out = {key: str(getattr(w, name)) for key, name in _MAIN.items()}
    out["batch"] = "max" if w.batch_mode == "max" else str(w.batch)
    if w.reserve_GiB:
        out["reserve_gib"] = f"{w.reserve_GiB:g}"
    extra: dict[str, str] = {}
    if w.vanilla == CUSTOM:
        extra = _CUSTOM_VANILLA
    if w.block == CUSTOM:
        extra = extra | _CUSTOM_BLOCK
    elif w.block == BLOCKIFY:
        extra = extra | _BLOCKIFY
    out |= {key: str(getattr(w, name)) for key, name in extra.items()}
    out |= {key: f"{getattr(w, name):g}" for key, name in _EFFICIENCY.items()
            if getattr(w, name) is not None}
    out |= {key: str(getattr(w, name)) for key, name in _PRECISION.items()
            if getattr(w, name) != getattr(DEFAULT, name)}
    out |= {key: str(getattr(w, name)) for key, name in _PARALLEL.items()
            if getattr(w, name) != 1}
    return out


def from_widget_values(values: Mapping[str, Any]) -> WhatIf:
    """A `WhatIf` from session-state values (missing keys keep their defaults)."""
    names = {f.name for f in fields(WhatIf)}
    return replace(DEFAULT, **{k: v for k, v in values.items() if k in names})
