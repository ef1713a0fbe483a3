"""Small Streamlit helpers shared by the pages."""

from __future__ import annotations

from collections.abc import Callable

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
