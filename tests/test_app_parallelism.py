"""Dashboard parallelism inputs (docs/parallelism.md): tp/pp in the sidebar mirrored in the URL,
the Capacity planner's chosen layout and comparison, and bad layouts shown with st.error."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from app.state import DEFAULT, from_query_params, to_query_params

APP = str(Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py")


def test_tp_pp_round_trip_through_the_url() -> None:
    w, warnings = from_query_params({"tp": "4", "pp": "2"})
    assert (w.tp, w.pp, warnings) == (4, 2, [])
    assert to_query_params(w) | {"tp": "4", "pp": "2"} == to_query_params(w)
    assert "tp" not in to_query_params(DEFAULT)  # one GPU: the URL stays as before
    _, warnings = from_query_params({"tp": "two"})
    assert warnings and "tp" in warnings[0]


def _app(query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.query_params.update(query)
    at.run()
    return at


def test_bad_layouts_are_st_errors() -> None:
    at = _app({"tp": "0", "vanilla": "vanilla_160", "block": "block_main_b4_85"})
    assert not at.exception
    assert any(e.value.startswith("Parallelism — tp:") for e in at.error)
    at = _app({"tp": "5", "vanilla": "vanilla_160", "block": "block_main_b4_85"})
    assert any("tp: 5 must divide" in e.value for e in at.error)


def test_capacity_page_shows_the_chosen_layout_and_the_comparison() -> None:
    at = _app({"vanilla": "vanilla_160", "block": "block_main_b4_85", "tp": "2"})
    at.switch_page("app_pages/capacity.py").run()
    assert not at.exception and not at.error
    assert at.success[0].value.startswith("Chosen layout: tp=2, pp=1")  # the sidebar's
    at.radio(key="cap_layout").set_value("search").run()
    assert not at.exception and not at.error
    assert at.success[0].value.startswith("Chosen layout: tp=")
    table = at.dataframe[0].value
    assert len(table) == 10  # tp x pp <= 8, powers of two
    assert (table["verdict"] == "chosen").sum() == 1
