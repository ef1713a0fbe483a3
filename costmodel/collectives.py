"""Collectives' formulas: ring all-reduce, ring all-gather and a point-to-point send.

Alpha-beta model (docs/parallelism.md 3; the JAX scaling book's T_comms): a collective over p
ranks runs in steps; every step pays the link latency alpha_link, and the bytes a rank sends
cross one link of bandwidth beta_link (per direction).

- Ring all-reduce of a payload of M bytes per rank (reduce-scatter then all-gather):
  2 (p - 1) steps, each rank sends 2 (p - 1) / p * M bytes;
  T = 2 (p - 1) / p * M / beta_link + 2 (p - 1) * alpha_link.
- Ring all-gather whose gathered result is M bytes (each rank contributes M / p):
  p - 1 steps, each rank sends (p - 1) / p * M bytes;
  T = (p - 1) / p * M / beta_link + (p - 1) * alpha_link.
- Send of M bytes to the next pipeline stage: T = M / beta_link + alpha_link.

``*_sent_bytes`` are what ALL ranks of the collective send together (what
``collective_bytes_total`` sums): p times the per-rank figure.
"""

from __future__ import annotations

import sympy as sp

from .symbols import alpha_link, beta_link


def allreduce_time(payload_bytes: sp.Expr, p: sp.Expr) -> sp.Expr:
    return 2 * (p - 1) / p * payload_bytes / beta_link + 2 * (p - 1) * alpha_link


def allreduce_sent_bytes(payload_bytes: sp.Expr, p: sp.Expr) -> sp.Expr:
    return 2 * (p - 1) * payload_bytes


def allgather_time(gathered_bytes: sp.Expr, p: sp.Expr) -> sp.Expr:
    return (p - 1) / p * gathered_bytes / beta_link + (p - 1) * alpha_link


def allgather_sent_bytes(gathered_bytes: sp.Expr, p: sp.Expr) -> sp.Expr:
    return (p - 1) * gathered_bytes


def send_time(payload_bytes: sp.Expr) -> sp.Expr:
    return payload_bytes / beta_link + alpha_link


def allreduce_time_s(payload_bytes: float, p: int, link_bytes_per_s: float,
                     latency_s: float) -> float:
    """Numeric ring all-reduce time (for micro-benchmark fits and tables)."""
    if p <= 1:
        return 0.0
    return 2 * (p - 1) / p * payload_bytes / link_bytes_per_s + 2 * (p - 1) * latency_s
