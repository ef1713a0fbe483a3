"""Collectives of a tensor-parallel reference, recorded where they are issued.

`reference.tp` routes every all-reduce and all-gather through one function that tells its
listeners the op name (the cost model's, e.g. ``layers.attn.allreduce``) and the tensor bytes.
`recording_collectives(tracer)` adds those bytes to the tracer's (phase, op) counts as the
``comm_bytes`` quantity, which `validation.count` compares with the cost model's collective
ops (`costmodel.ops.allreduce_op` / `allgather_op`: comm_bytes = the tensor handed to the
collective; the bytes on the wire follow from it by costmodel.collectives).

Kernels (docs/parallelism.md 6): each collective call is one kernel of its op (an NCCL
collective is one launch), with no activation traffic of its own (its bytes are
``comm_bytes``); the work the reference does around it, the all-gather's ``torch.cat`` of the
parts, runs inside the op's scope and is counted there by the kernel rule like any aten op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reference.tp import collective_listener


@contextmanager
def recording_collectives(tracer: Any) -> Iterator[None]:
    def issued(op: str, nbytes: int) -> Any:
        tracer.add_op(op, "comm_bytes", nbytes)
        tracer.add_op(op, "kernels", 1)
        return tracer.op_scope(op)

    with collective_listener(issued):
        yield


def format_collectives(report: Any) -> str:
    """The collectives' rows of a `CountReport`: counted bytes and (predicted - counted)."""
    lines = [("phase", "op", "collective_B", "d_collective")]
    for r in report.rows:
        if r.op.endswith((".allreduce", ".allgather")):
            lines.append((r.phase, r.op, str(r.counted.get("comm_bytes", 0)),
                          str(r.differences.get("comm_bytes", 0))))
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     for row in lines)
