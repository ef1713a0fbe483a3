"""Refuse shapes that cannot be allocated, before torch tries (docs/reliability.md).

torch fails late and obscurely on absurd shapes: a 10^15-token prompt counted on the meta
device overflows a tensor's storage size (int64 bytes), a 10^15 batch on the CPU asks the
allocator for 9.2e18 bytes. Both are the user's numbers, so they are checked here first and
refused with the size they would need and the limit they exceed.

Sizes are the cost model's own (`costmodel.api.estimate`: weights + KV cache + workspace,
docs/model.md 4) plus the largest single activation the reference materialises: the logits or
MLP output `[B, S, max(V, F, 3D)]` and, for eager attention, the scores `[B, H, S, S]`.
"""

from __future__ import annotations

import os

from costmodel.errors import UserError
from costmodel.spec import BlockSpec, VanillaSpec

# torch's storage size is an int64 byte count; keep a factor 4 of margin for views and grads
TORCH_MAX_TENSOR_BYTES = 2**61


def largest_tensor_bytes(spec: VanillaSpec | BlockSpec, batch: int, context: int,
                         bytes_per_element: float) -> float:
    """Bytes of the largest single tensor a forward over `context` tokens materialises."""
    stacks = [spec.stack] if isinstance(spec, VanillaSpec) else \
        [spec.block_decoder, spec.token_decoder]
    width = max([spec.vocab_size] + [max(s.d_ffn, 3 * s.d_model) for s in stacks])
    heads = max(s.n_heads for s in stacks)
    b, c = float(batch), float(context)
    return max(b * c * width, b * heads * c * c) * bytes_per_element


def request_bytes(spec: VanillaSpec | BlockSpec, batch: int, prompt_tokens: int,
                  generated_tokens: int, implementation: str, dtype: str) -> float:
    """The cost model's device memory for the request (weights + KV + workspace)."""
    from costmodel.api import estimate
    from costmodel.implementation import get_implementation
    from costmodel.workload import Workload

    impl = get_implementation(implementation, dtype=dtype)  # type: ignore[arg-type]
    est = estimate(spec, "h100-sxm-80gb", Workload(batch=batch, prompt_tokens=prompt_tokens,
                                                   generated_tokens=generated_tokens), impl)
    return est.memory_bytes_total


def device_memory_bytes(device: str) -> float:
    """Total memory of `device`: physical RAM for the CPU, the GPU's for CUDA."""
    if device == "cuda":
        import torch

        return float(torch.cuda.get_device_properties(0).total_memory)
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_allocatable(spec: VanillaSpec | BlockSpec, batch: int, prompt_tokens: int,
                      generated_tokens: int, implementation: str, dtype: str,
                      device: str) -> None:
    """A `UserError` if the request cannot be allocated on `device` ("meta": only torch's
    tensor-size limit applies; "cpu"/"cuda": the device's memory too), or if the reference
    cannot build the model at all (a sliding window)."""
    # (only vanilla specs can have a window: BlockSpec refuses one)
    if isinstance(spec, VanillaSpec) and spec.stack.sliding_window is not None:
        raise UserError(f"sliding_window: {spec.name} attends through a window; the PyTorch "
                        "reference runs full attention only, so it cannot be run or counted "
                        "(the cost model predicts it: docs/sliding-window.md)")
    elem = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}.get(dtype, 4.0)
    shape = f"batch {batch}, prompt {prompt_tokens}, generate {generated_tokens}"
    largest = largest_tensor_bytes(spec, batch, prompt_tokens + generated_tokens, elem)
    if largest >= TORCH_MAX_TENSOR_BYTES:
        raise UserError(f"{shape}: {spec.name} would need a {largest:.3g}-byte tensor; torch "
                        f"cannot allocate more than {TORCH_MAX_TENSOR_BYTES:.3g} bytes in one "
                        "tensor: lower --batch, --prompt/--context or --generate")
    if device == "meta":
        return
    need = request_bytes(spec, batch, prompt_tokens, generated_tokens, implementation, dtype) \
        + largest
    have = device_memory_bytes(device)
    if need > have:
        raise UserError(f"{shape}: {spec.name} needs about {need / 2**30:,.3g} GiB (weights, KV "
                        f"cache and the largest activation), more than the {device}'s "
                        f"{have / 2**30:,.3g} GiB: lower --batch, --prompt/--context or "
                        "--generate")
