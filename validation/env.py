"""Environment metadata stored with every measurement (issue 4: device, clocks if readable,
torch and driver versions, dtype, date, git commit), and the device's display name."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10,
                             check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the checkout, with ``+dirty`` when tracked files have changes."""
    head = _run(["git", "rev-parse", "HEAD"], REPO_ROOT)
    if head is None:
        return None
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], REPO_ROOT)
    return head + ("+dirty" if dirty else "")


@lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-1 (12 hex digits) of the reference and cost-model sources as they are on disk: ties
    a measurement to the code even when the checkout has uncommitted changes."""
    h = hashlib.sha1()
    for pkg in ("reference", "costmodel"):
        for path in sorted((REPO_ROOT / pkg).glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else (platform.processor() or platform.machine())


def cpu_vendor() -> str:
    name = cpu_name().lower()
    for vendor in ("AMD", "Intel", "Apple", "Ampere", "ARM"):
        if vendor.lower() in name:
            return vendor
    return "unknown"


def device_name(device: str) -> str:
    """What the runtime calls the device (``NVIDIA H100 80GB HBM3``; the CPU model name)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def _nvidia_smi() -> dict[str, str]:
    out = _run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.mem,clocks.max.sm,"
                "power.limit", "--format=csv,noheader"])
    if not out:
        return {}
    keys = ("driver", "clock_sm", "clock_mem", "clock_sm_max", "power_limit")
    return dict(zip(keys, (v.strip() for v in out.splitlines()[0].split(",")), strict=False))


def environment(device: str, dtype: str) -> dict[str, Any]:
    """Metadata for one measured point (cheap enough to call per point)."""
    env: dict[str, Any] = {
        "date": now_iso(),
        "device_type": "cuda" if device.startswith("cuda") else "cpu",
        "device_name": device_name(device),
        "dtype": dtype,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "source_sha1": source_digest(),
    }
    if hasattr(os, "getloadavg"):
        env["loadavg_1m"] = round(os.getloadavg()[0], 2)
    if env["device_type"] == "cuda":
        env["cuda"] = torch.version.cuda
        env |= _nvidia_smi()
    else:
        env["cpu_count"] = os.cpu_count()
    return env
