"""Small Streamlit helpers shared by the pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

# Streamlit >= 1.52 builds a download's bytes only when it is clicked (data=callable) and can
# skip the rerun a click causes; older versions get the bytes on every run.
_VERSION = tuple(int(p) for p in st.__version__.split(".")[:2] if p.isdigit())
LAZY_DOWNLOADS = _VERSION >= (1, 52)


def download(label: str, make: Callable[[], str], file_name: str, mime: str, key: str) -> None:
    """A download button whose content `make()` is built on click (when supported)."""
    if LAZY_DOWNLOADS:
        st.download_button(label, data=make, file_name=file_name, mime=mime, key=key,
                           on_click="ignore")
    else:
        st.download_button(label, data=make(), file_name=file_name, mime=mime, key=key)


NOT_READY = "No valid model, hardware and workload yet: fix the inputs in the sidebar."


def models_or_stop(ctx: Any) -> dict[str, Any]:
    """`ctx.models()` when hardware and workload are valid too; otherwise the page stops
    with a hint."""
    models = ctx.models()
    if not ctx.ready or not models:
        st.info(NOT_READY)
        st.stop()
    return models


def estimates_or_stop(ctx: Any) -> dict[str, Any]:
    """`compute.estimates` for the page's what-if: each failure as an st.error, and the page
    stops with a hint when no side could be estimated."""
    from app import compute

    ests, problems = compute.estimates(ctx)
    for p in problems:
        st.error(p)
    if not ests:
        st.info(NOT_READY)
        st.stop()
    return ests
