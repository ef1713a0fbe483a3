"""`build_model`: the reference model for a spec, on any device (``meta`` for counting only)."""

from __future__ import annotations

import torch

from costmodel.spec import BlockSpec, VanillaSpec

from .block import BlockLM
from .vanilla import VanillaLM


def build_model(
    spec: VanillaSpec | BlockSpec,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int | None = None,
) -> VanillaLM | BlockLM:
    """`VanillaLM` or `BlockLM` with the docs/model.md 1.2-1.4 initialisation, in eval mode.

    On ``device="meta"`` no memory is allocated: parameter counts and FLOP counts
    (`FlopCounterMode` works on meta tensors) of full-size models cost nothing.
    """
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device):
        model: VanillaLM | BlockLM
        if isinstance(spec, VanillaSpec):
            model = VanillaLM(spec)
        elif isinstance(spec, BlockSpec):
            model = BlockLM(spec)
        else:
            raise TypeError(f"spec: expected VanillaSpec or BlockSpec, got {type(spec).__name__}")
    return model.to(dtype=dtype).eval()


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied weights once), as `spec.params_total` counts them."""
    return sum(p.numel() for p in model.parameters())
