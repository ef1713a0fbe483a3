"""blockroof what-if dashboard: `streamlit run app/streamlit_app.py` (or `blockroof app`).

The sidebar (shared what-if: models, hardware, workload, profile; mirrored in the URL) is built
here, then the selected page runs. Pages live in app/app_pages/ and stay thin: tables and
figures come from pure functions in app/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import inputs  # noqa: E402

st.set_page_config(page_title="blockroof", layout="wide")

COMPARE = st.Page("app_pages/compare.py", title="Compare", url_path="compare")


def _home() -> None:
    """The app's root URL shows Compare under its own address, so that `/compare` (bookmarked
    or shared) is a real page rather than "Page not found" (the default page has no path)."""
    st.switch_page(COMPARE, query_params=st.query_params.to_dict())  # keep the what-if


PAGES = [
    st.Page(_home, title="Home", url_path="home", default=True, visibility="hidden"),
    COMPARE,
    st.Page("app_pages/design_space.py", title="Design space", url_path="design-space"),
    st.Page("app_pages/roofline.py", title="Roofline", url_path="roofline"),
    st.Page("app_pages/formulas.py", title="Formulas", url_path="formulas"),
    st.Page("app_pages/capacity.py", title="Capacity planner", url_path="capacity"),
    st.Page("app_pages/serving.py", title="Serving", url_path="serving"),
    st.Page("app_pages/validation.py", title="Validation", url_path="validation"),
    st.Page("app_pages/paper.py", title="Paper", url_path="paper"),
]

page = st.navigation(PAGES)
ctx = inputs.sidebar()
inputs.show_messages(ctx)
page.run()
