"""Run a function on `world` local ranks of torch.distributed (spawned processes), safely.

Each rank joins a process group through a FileStore in a fresh temporary directory (no port
to pick), with a timeout on every collective; the parent joins every process before a
deadline and kills those still alive, so a dead rank fails the caller instead of hanging it
(docs/parallelism.md 6).
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def init_rank(rank: int, world: int, store_path: str, backend: str = "gloo",
              timeout_s: float = 120.0) -> None:
    """Join the group (1 CPU thread per rank; NCCL ranks take GPU `rank`)."""
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, store=dist.FileStore(store_path, world), rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=timeout_s))


def _entry(rank: int, world: int, store_path: str, backend: str, timeout_s: float,
           fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    init_rank(rank, world, store_path, backend, timeout_s)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., None], world: int, args: tuple[Any, ...] = (),
              backend: str = "gloo", timeout_s: float = 600.0) -> None:
    """Call ``fn(rank, world, *args)`` on `world` spawned ranks of one process group.

    `fn` must be importable (module level). Raises RuntimeError if any rank fails or time
    runs out."""
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_entry, args=(r, world, os.path.join(tmp, "store"), backend,
                                                  min(timeout_s, 120.0), fn, args))
                 for r in range(world)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout_s
        try:
            for p in procs:
                p.join(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
        codes = [p.exitcode for p in procs]
        if any(c != 0 for c in codes):
            raise RuntimeError(f"ranks: exit codes {codes} (nonzero: failed or timed out)")
