"""Predicted peak memory of a request against the peak measured while the reference runs (CPU).

Predicted: the cost model's ``memory_bytes_total`` = weights + B x (KV cache + workspace)
(`costmodel.memory`, docs/model.md 2.3) in fp32. Measured: `validation.memory.TensorAccounting`
over one ``generate`` on the CPU (every live tensor storage counted, on top of the model's
parameters and buffers): the allocator-level peak of tensors, as ``max_memory_allocated`` is
on CUDA. Run ``python -m validation.workspace`` for the table; tests/test_validation_workspace.py
pins the ratio measured / predicted inside `BAND`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from costmodel.api import estimate
from costmodel.implementation import get_implementation
from costmodel.presets import get_preset
from costmodel.workload import Workload
from reference import build_model

from .memory import TensorAccounting, module_bytes

# measured / predicted: the workspace term is an estimate of the largest transient (a few
# tensors of one layer), so the total is pinned to this band, not equality
BAND = (0.85, 1.15)
CASES: tuple[tuple[str, str, int, int, int], ...] = (
    # model, profile, batch, prompt, generate
    ("vanilla_31", "static", 1, 64, 8),
    ("vanilla_31", "static", 8, 128, 4),
    ("vanilla_31", "hf-legacy", 4, 96, 4),
    ("vanilla_70", "static", 2, 256, 4),
    ("block_main_b4_5", "static", 4, 64, 8),
    ("block_main_b4_5", "hf-legacy", 2, 128, 8),
    ("block_main_b4_19", "static", 8, 64, 4),
)


@dataclass(frozen=True)
class PeakRow:
    model: str
    implementation: str
    batch: int
    prompt_tokens: int
    generated_tokens: int
    predicted_bytes: int
    measured_bytes: int

    @property
    def ratio(self) -> float:
        return self.measured_bytes / self.predicted_bytes


def peak_row(model: str, implementation: str, batch: int, prompt: int, generate: int) -> PeakRow:
    spec = get_preset(model)
    impl = get_implementation(implementation, dtype="fp32")
    est = estimate(spec, "h100-sxm-80gb", Workload(batch=batch, prompt_tokens=prompt,
                                                   generated_tokens=generate), impl)
    net = build_model(spec, device="cpu", dtype=torch.float32, seed=0)
    ids = torch.randint(0, spec.vocab_size, (batch, prompt))
    acct = TensorAccounting(module_bytes(net))
    with torch.inference_mode(), acct:
        net.generate(ids, generate, mode=implementation)  # type: ignore[arg-type]
    return PeakRow(model, implementation, batch, prompt, generate,
                   int(est.memory_bytes_total), int(acct.peak_total_bytes))


def main() -> None:
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.1f}; band {BAND}")
    for case in CASES:
        r = peak_row(*case)
        print(f"{r.model:18s} {r.implementation:9s} B={r.batch:<3d} S={r.prompt_tokens:<4d} "
              f"G={r.generated_tokens:<3d} predicted {r.predicted_bytes / 2**20:8.2f} MiB  "
              f"measured {r.measured_bytes / 2**20:8.2f} MiB  ratio {r.ratio:.3f}")


if __name__ == "__main__":
    main()
