"""Parsers of ``blockroof validate allreduce`` and ``validate tp``, without torch.

The commands' modules (`validation.collective_bench`, `validation.tp_suite`) import torch; they
load only when their command runs, so building the `blockroof` parser (every CLI call) stays
as cheap as the cost model (docs/formula-cache.md: cold `estimate` vs import time).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


def _lazy(module: str):
    def run(args: Any) -> None:
        return import_module(module)._cmd(args)

    return run


def register_allreduce(vs: Any) -> None:
    """``blockroof validate allreduce``."""
    a = vs.add_parser("allreduce", help="gloo/NCCL all-reduce sweep -> interconnect record")
    a.add_argument("--out", required=True, help="directory for allreduce.json and the record")
    a.add_argument("--world", type=int, default=2)
    a.add_argument("--repeats", type=int, default=30)
    a.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a.add_argument("--base", default="cpu-amd-epyc-1t-measured-20261128-calibrated",
                   help="hardware record (id or .json) the interconnect is added to; '' none")
    a.set_defaults(func=_lazy("validation.collective_bench"))


def register_tp(vs: Any) -> None:
    """``blockroof validate tp``."""
    t = vs.add_parser("tp", help="timed TP=2 CPU suite (gloo) vs the cost model, held out")
    t.add_argument("--out", required=True)
    t.add_argument("--hardware", required=True,
                   help="record with a measured interconnect (from `validate allreduce`)")
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--limit", type=int, default=None, help="first N points only")
    t.set_defaults(func=_lazy("validation.tp_suite"))
