"""Roofline time of every (phase, op): max(FLOPs / pi, bytes / beta) per forward, summed exactly.

T_math = FLOPs / pi (+ dequantisation FLOPs / pi_v, docs/precision.md 3) and T_mem = bytes /
beta (JAX scaling book notation); an op is compute-bound
when T_math >= T_mem. pi and beta are the achievable rates of `Hardware` (datasheet or measured
peak times efficiency). Fixed overheads: t_kernel per kernel launch, t_forward per forward call
(both 0 for a pure roofline). Sums over decode steps use `costmodel.sums` (closed forms).

Overlap eta_ov (`Efficiency.overlap`): how much of an op's shorter part hides under its longer
one, per forward

    t_op = max(T_math, T_mem) + (1 - eta_ov) * min(T_math, T_mem)
         = eta_ov * max(T_math, T_mem) + (1 - eta_ov) * (T_math + T_mem),

so 1 is the roofline (a lower bound) and 0 adds compute and memory time, which is what eager
CPU kernels do (validation/results/cpu/NOTES.md). The second form sums with the same closed
forms as the max alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from . import symbols as sy
from .ops import QUANTITIES
from .phases import Phase
from .sums import sum_linear, sum_max_linear


@dataclass(frozen=True)
class Row:
    """One (phase, op) of a request: totals over all its occurrences."""

    phase: str
    op: str
    ttft: str
    quantities: dict[str, sp.Expr]  # QUANTITIES, summed
    t_math: sp.Expr  # sum of FLOPs/pi
    t_mem: sp.Expr  # sum of bytes/beta
    time: sp.Expr  # sum of t_op (max(T_math, T_mem) at eta_ov = 1) plus kernel overheads
    repeat_share: sp.Expr  # fraction of the row before the first token (for ttft == "one")

    @property
    def bytes(self) -> sp.Expr:
        q = self.quantities
        return (q["weight_bytes"] + q["act_read_bytes"] + q["act_write_bytes"]
                + q["kv_read_bytes"] + q["kv_write_bytes"])


def _phase_sum(phase: Phase, expr: sp.Expr) -> sp.Expr:
    if phase.index is None:
        return phase.repeat * expr
    return phase.repeat * sum_linear(expr, phase.index, phase.lo, phase.hi)


def _t_math(op) -> sp.Expr:
    """Matmul FLOPs at the compute rate plus (de)quantisation FLOPs at the vector rate
    (docs/precision.md 3)."""
    return op.time_flops / sy.pi + op.dequant_flops / sy.pi_v


def phase_rows(phase: Phase) -> list[Row]:
    rows = []
    for op in phase.ops:
        t_math_step = _t_math(op)
        t_mem_step = op.bytes / sy.beta
        if phase.index is None:
            t_max = phase.repeat * sp.Max(t_math_step, t_mem_step)
        else:
            t_max = phase.repeat * sum_max_linear(t_math_step, t_mem_step, phase.index,
                                                  phase.lo, phase.hi)
        t_math, t_mem = _phase_sum(phase, t_math_step), _phase_sum(phase, t_mem_step)
        kernels = _phase_sum(phase, op.kernels)
        rows.append(Row(
            phase=phase.name, op=op.name, ttft=phase.ttft,
            quantities={name: _phase_sum(phase, getattr(op, name)) for name in QUANTITIES},
            t_math=t_math, t_mem=t_mem,
            time=(sy.eta_ov * t_max + (1 - sy.eta_ov) * (t_math + t_mem) + kernels * sy.t_kernel
                  + _phase_sum(phase, op.comm_time)),
            repeat_share=1 / phase.repeat,
        ))
    # fixed cost of the forward calls themselves
    zero = sp.Integer(0)
    rows.append(Row(phase=phase.name, op="(forward calls)", ttft=phase.ttft,
                    quantities=dict.fromkeys(QUANTITIES, zero), t_math=zero, t_mem=zero,
                    time=phase.occurrences * (phase.forwards * sy.t_forward
                                              + phase.generate_calls * sy.t_generate),
                    repeat_share=1 / phase.repeat))
    return rows


def request_rows(phases: list[Phase]) -> list[Row]:
    """All rows of a request; rows of the same (phase, op) from split ranges are merged."""
    merged: dict[tuple[str, str], Row] = {}
    for phase in phases:
        for row in phase_rows(phase):
            key = (row.phase, row.op)
            if key in merged:
                old = merged[key]
                row = Row(row.phase, row.op, row.ttft,
                          {n: old.quantities[n] + row.quantities[n] for n in QUANTITIES},
                          old.t_math + row.t_math, old.t_mem + row.t_mem, old.time + row.time,
                          old.repeat_share)
            merged[key] = row
    return list(merged.values())


def ttft_expr(rows: list[Row]) -> sp.Expr:
    total = sp.Integer(0)
    for r in rows:
        if r.ttft == "all":
            total += r.time
        elif r.ttft == "one":
            total += r.time * r.repeat_share
    return total


def op_time(op) -> sp.Expr:
    """Time of one op in one forward (module docstring), kernel launches included."""
    t_math, t_mem = _t_math(op), op.bytes / sy.beta
    return (sp.Max(t_math, t_mem) + (1 - sy.eta_ov) * sp.Min(t_math, t_mem)
            + op.kernels * sy.t_kernel + op.comm_time)


def forward_time(ops, forwards: int | sp.Expr = 1) -> sp.Expr:
    """Time of one forward made of `ops` (no sums): for per-step checks of the summed rows."""
    return sum((op_time(op) for op in ops), sp.Integer(0)) + forwards * sy.t_forward
