"""Streamlit caches around the cost model (docs/engineering-notes.md, Streamlit).

`st.cache_resource` (one shared object, no pickling) holds what cannot be pickled or is costly
to build: the hardware database, `Formula` objects with their compiled evaluators, the
symbolic relative-cost derivation. `st.cache_data` holds plain tables (the paper table).
Specs are passed as JSON (hashable, exact); arguments starting with "_" are not hashed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
import sympy as sp
from pydantic import TypeAdapter

from costmodel.api import Formula, formula, formula_names
from costmodel.hardware import Hardware, load_database
from costmodel.metrics import ARGS
from costmodel.paper import pair_ratios, paper_table
from costmodel.spec import BlockSpec, ModelSpec, VanillaSpec

from . import relative_costs

_SPEC = TypeAdapter(ModelSpec)


def spec_json(spec: VanillaSpec | BlockSpec) -> str:
    return spec.model_dump_json()


def spec_from_json(text: str) -> VanillaSpec | BlockSpec:
    return _SPEC.validate_json(text)


@st.cache_resource(show_spinner=False)
def hardware_database() -> dict[str, Hardware]:
    """All devices by id (`costmodel.hardware.load_database`)."""
    return load_database()


@st.cache_resource(show_spinner=False, max_entries=64)
def names(model_json: str, profile: str) -> list[str]:
    """`formula_names` for a model (metrics first, then '<phase>/<op>/<quantity>')."""
    return formula_names(spec_from_json(model_json), profile)


@st.cache_resource(show_spinner="Building the formula…", max_entries=256)
def formula_object(name: str, model_json: str, profile: str) -> tuple[Formula, Any]:
    """The `Formula` and its expression compiled over `costmodel.metrics.ARGS` (built once)."""
    f = formula(name, spec_from_json(model_json), profile)
    return f, sp.lambdify(ARGS, f.expr, "numpy")


@st.cache_resource(show_spinner="Deriving the relative-cost table from the formulas…",
                   max_entries=16)
def derived_relative_costs(structure: str, profile: str, _vanilla: VanillaSpec
                           ) -> list[relative_costs.DerivedItem]:
    """`relative_costs.derive`, keyed on the vanilla model's structure (sizes do not matter)."""
    return relative_costs.derive(_vanilla, profile)


@st.cache_data(show_spinner="Predicting the paper's ten models (every profile)…", max_entries=8)
def paper_tables(hardware_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`paper_table` and its `pair_ratios` on one device."""
    table = paper_table(hardware_id)
    return table, pair_ratios(table)


def clear_all() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()
