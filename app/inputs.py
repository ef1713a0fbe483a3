"""The sidebar: what-if widgets shared by every page, validated, mirrored in the URL.

`sidebar()` runs in the entry script before the page, so every page sees the same `Context`
(`context()`). Widget keys are the `WhatIf` field names; their values are seeded once per
session from the URL query parameters and written back to the URL on every run.
"""

from __future__ import annotations

import streamlit as st

from costmodel.errors import field_bounds
from costmodel.hardware import Efficiency, Hardware
from costmodel.presets import display_name

from . import cache
from .resolve import Context, resolve
from .state import (
    BATCH_MODES,
    BLOCK_CHOICES,
    BLOCKIFY,
    COMPUTE_DTYPE_CHOICES,
    CUSTOM,
    DEFAULT,
    DTYPE_SCOPES,
    EFFICIENCY_FIELDS,
    KV_DTYPE_CHOICES,
    PROFILE_CHOICES,
    UPLOAD,
    VANILLA_CHOICES,
    WEIGHT_DTYPE_CHOICES,
    from_query_params,
    from_widget_values,
    to_query_params,
)

_CTX = "_blockroof_context"
_LOADED = "_blockroof_url_loaded"
_URL_WARNINGS = "_blockroof_url_warnings"
UPLOAD_KEY = "vanilla_upload"

_SPECIAL = {CUSTOM: "Custom (edit below)", UPLOAD: "Upload a config.json",
            BLOCKIFY: "Blockify the vanilla model"}
_PROFILE_HELP = ("static: our reference (preallocated KV cache, fused attention, last-position "
                 "logits). hf-legacy: torch.cat KV cache, eager attention, all-position "
                 "logits. official: the released code (FA2 vanilla and block decoder, eager "
                 "token decoder, fp32 keys). official-eager: the same with eager attention "
                 "everywhere, what paper Table 1 measured (docs/published.md).")


def _model_label(name: str) -> str:
    return _SPECIAL.get(name) or f"{display_name(name)} ({name})"


def _seed_from_url() -> None:
    """Once per session: widget values from the URL, then defaults for anything missing."""
    if not st.session_state.get(_LOADED):
        whatif, warnings = from_query_params(st.query_params.to_dict())
        for key, value in whatif.widget_values().items():
            st.session_state[key] = value
        st.session_state[_URL_WARNINGS] = warnings
        st.session_state[_LOADED] = True
    for key, value in DEFAULT.widget_values().items():
        if key not in st.session_state:  # a hidden widget's value was dropped
            st.session_state[key] = value


def _int_input(label: str, key: str, help: str | None = None) -> None:
    st.number_input(label, key=key, min_value=0, step=1, help=help)


def _custom_vanilla() -> None:
    c1, c2 = st.columns(2)
    with c1:
        _int_input("Layers N", "v_layers")
        _int_input("Heads H", "v_heads")
    with c2:
        _int_input("Width D", "v_width", help="must be divisible by the heads")
        _int_input("MLP width F", "v_ffn")


def _custom_block() -> None:
    c1, c2 = st.columns(2)
    with c1:
        _int_input("Block length L_B", "b_block_length", help="must divide the width D")
        _int_input("Block-decoder layers", "b_layers_block")
        _int_input("Width D", "b_width")
        _int_input("MLP width F", "b_ffn")
    with c2:
        _int_input("Prefix length P", "b_prefix")
        _int_input("Token-decoder layers", "b_layers_token")
        _int_input("Heads H", "b_heads")


# WhatIf field -> (label, step, help); units and Efficiency fields in state.EFFICIENCY_FIELDS,
# the largest value is the Efficiency field's own (costmodel.errors.field_bounds)
_EFFICIENCY_WIDGETS = {
    "eff_matmul": ("Matmul efficiency", 0.05,
                   "fraction of the peak (or measured) matmul rate achieved"),
    "eff_bandwidth": ("Bandwidth efficiency", 0.05, "fraction of the memory bandwidth achieved"),
    "eff_overlap": ("Overlap", 0.1,
                    "1: an op takes max(T_math, T_mem), the roofline; 0: T_math + T_mem "
                    "(eager CPU kernels, validation/results/cpu)"),
    "kernel_overhead_us": ("Per-kernel overhead (us)", 1.0, "fixed time per kernel launch"),
    "forward_overhead_us": ("Per-forward overhead (us)", 10.0,
                            "fixed time per model forward call"),
}


def _efficiencies(hw: Hardware | None) -> None:
    """Overrides of the record's efficiencies; an empty box keeps the record's value."""
    changed = sum(st.session_state.get(k) is not None for k in _EFFICIENCY_WIDGETS)
    label = "Efficiencies" + (f" ({changed} overridden)" if changed else " (the record's)")
    with st.expander(label, expanded=bool(changed)):
        st.caption("Leave a box empty for the hardware record's own value (shown greyed). "
                   "Calibrated values for a device come from `blockroof validate run`.")
        for key, (text, step, help_) in _EFFICIENCY_WIDGETS.items():
            name, to_si = EFFICIENCY_FIELDS[key]
            top = field_bounds(Efficiency, name)[1]
            top = None if top is None else top / to_si
            own = None if hw is None else getattr(hw.efficiency, name) / to_si
            st.number_input(text, key=key, min_value=0.0, max_value=top, step=step, help=help_,
                            placeholder="record: n/a" if own is None else f"record: {own:g}")


_SCOPE_LABELS = {"both": "both models", "vanilla": "vanilla only", "block": "block only"}


def _options(choices: tuple[str, ...], key: str) -> list[str]:
    """The choices, plus the current value when a URL named another valid one (int4-g64)."""
    current = st.session_state.get(key)
    return list(choices) + ([current] if current and current not in choices else [])


def _precision() -> None:
    """Weight, KV-cache and compute dtypes, and the side they apply to (docs/precision.md)."""
    changed = any(st.session_state.get(k) != getattr(DEFAULT, k)
                  for k in ("weight_dtype", "kv_dtype", "compute_dtype"))
    with st.expander("Precision" + (" (changed)" if changed else " (bf16)"), expanded=changed):
        st.selectbox("Weights", _options(WEIGHT_DTYPE_CHOICES, "weight_dtype"),
                     key="weight_dtype",
                     help="int8: per-channel scale; int4-gN: scale and zero per group of N; "
                          "weight-only formats multiply at the compute dtype's rate")
        st.selectbox("KV cache", _options(KV_DTYPE_CHOICES, "kv_dtype"), key="kv_dtype",
                     help="int8 adds one scale per token and KV head")
        st.selectbox("Compute dtype", _options(COMPUTE_DTYPE_CHOICES, "compute_dtype"),
                     key="compute_dtype",
                     help="the matmul rate used; fp8 weights with fp8 compute are W8A8")
        st.radio("Apply to", DTYPE_SCOPES, key="dtype_scope", horizontal=True,
                 format_func=_SCOPE_LABELS.get,
                 help="e.g. 'vanilla only' with KV cache fp8: a quantised-cache vanilla "
                      "model against a bf16 Block Transformer")


def _widgets() -> tuple[str, bytes] | None:
    st.header("What-if")
    st.selectbox("Vanilla model", VANILLA_CHOICES, key="vanilla", format_func=_model_label)
    upload = None
    if st.session_state["vanilla"] == CUSTOM:
        _custom_vanilla()
    elif st.session_state["vanilla"] == UPLOAD:
        f = st.file_uploader("Hugging Face config.json", type=["json"], key=UPLOAD_KEY,
                             help="GPT-NeoX or Llama-family config; read as plain JSON")
        if f is not None:
            upload = (f.name, f.getvalue())
    st.selectbox("Block Transformer", BLOCK_CHOICES, key="block", format_func=_model_label)
    if st.session_state["block"] == CUSTOM:
        _custom_block()
    elif st.session_state["block"] == BLOCKIFY:
        _int_input("Block length L_B", "bf_block_length",
                   help="the vanilla stack split 1:1 into block and token decoders")
    db = cache.hardware_database()
    st.selectbox("Hardware", list(db), key="hardware",
                 format_func=lambda i: f"{db[i].name} ({i})" if i in db else i)
    _efficiencies(db.get(st.session_state["hardware"]))
    st.radio("Implementation profile", PROFILE_CHOICES, key="profile", horizontal=True,
             help=_PROFILE_HELP)
    _precision()
    st.radio("Batch", BATCH_MODES, key="batch_mode", horizontal=True,
             format_func=lambda m: "max (fits memory)" if m == "max" else "fixed")
    if st.session_state["batch_mode"] == "fixed":
        _int_input("Batch size", "batch")
    _int_input("Prompt tokens", "prompt_tokens")
    _int_input("Generated tokens", "generated_tokens")
    st.number_input("Memory reserve (GiB)", key="reserve_GiB", min_value=0.0, step=1.0,
                    help="kept free when sizing the max batch (the paper's search stops at 2 GiB)")
    c1, c2 = st.columns(2)
    with c1:
        _int_input("Tensor parallel (tp)", "tp",
                   help="GPUs sharing every layer, Megatron style (docs/parallelism.md 1)")
    with c2:
        _int_input("Pipeline stages (pp)", "pp",
                   help="layers split over stages; a Block Transformer: block | token decoder")
    return upload


def sidebar() -> Context:
    """Render the what-if widgets, validate them, mirror them in the URL; returns the Context."""
    _seed_from_url()
    with st.sidebar:
        upload = _widgets()
    whatif = from_widget_values(st.session_state)
    ctx = resolve(whatif, upload)
    desired = to_query_params(whatif)
    if st.query_params.to_dict() != desired:
        st.query_params.from_dict(desired)
    st.session_state[_CTX] = ctx
    return ctx


def show_messages(ctx: Context) -> None:
    """URL warnings (st.warning), input errors (st.error) and requests (st.info)."""
    for w in st.session_state.get(_URL_WARNINGS, []):
        st.warning(w)
    for e in ctx.errors:
        (st.info if e.level == "info" else st.error)(e.text())


def context() -> Context:
    """The Context the sidebar built in this run."""
    ctx = st.session_state.get(_CTX)
    if ctx is None:  # a page run on its own (not through the entry script)
        ctx = sidebar()
    return ctx
