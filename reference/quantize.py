"""Weight-only quantised linears and the int8 KV cache switch: a module swap (docs/precision.md 2).

`quantize_model(model, "int8" | "int4-g<N>")` replaces every `nn.Linear` of a built (or trained)
full-precision model by a module holding the quantised weight, as gpt-fast's `quantize.py`
does; embeddings, norms and biases stay as they are. `quantize_kv_cache(model)` makes every
layer's `KVCache` store int8 with one scale per vector (`reference/kv_cache.py`).

- `Int8Linear`: symmetric per output channel, ``w ~ q * scale`` with q in [-127, 127] and
  ``scale = max|w_row| / 127`` in the activation dtype; runs
  ``torch.ops.aten._weight_int8pack_mm(x, q, scale)`` (dequantises in the kernel).
- `Int4Linear`: asymmetric per group of N input elements, ``w ~ (q - 8) * scale + zero`` with
  q in [0, 15]; the weight is packed by ``_convert_weight_to_int4pack_for_cpu`` and runs
  ``_weight_int4pack_mm_for_cpu(x, packed, N, scale_and_zero)`` (CPU kernels of torch).

Stored bytes are exactly `costmodel.ops.linear_weight_bytes`: int8 ``out * in + out * s_a``;
int4 ``out * in / 2 + 2 * (in / N) * out * s_a``. `FlopCounterMode` counts 0 FLOPs for these
ops; `validation.tracing` counts them as ``2 * rows * in * out`` (`QUANTIZED_MATMULS`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from costmodel.precision import weight_format

from .kv_cache import KVCache

QUANTIZED_MATMULS = (torch.ops.aten._weight_int8pack_mm, torch.ops.aten._weight_int4pack_mm_for_cpu)


class QuantizedLinear(nn.Module):
    """Base of the weight-only linears: quantised weight and scales are buffers, bias stays a
    parameter; `stored_weights` are the tensors a forward reads."""

    in_features: int
    out_features: int
    bias: nn.Parameter | None

    def stored_weights(self) -> list[Tensor]:
        return list(self.buffers(recurse=False)) + list(self.parameters(recurse=False))

    def _out(self, y: Tensor, x: Tensor) -> Tensor:
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Int8Linear(QuantizedLinear):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = w.abs().amax(dim=1).float().clamp(min=1e-12) / 127  # [out]
        q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_q", q)  # [out, in] int8
        self.register_buffer("scales", scale.to(w.dtype))  # [out], activation dtype
        self.bias = linear.bias

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, self.in_features)
        return self._out(torch.ops.aten._weight_int8pack_mm(x2, self.weight_q, self.scales), x)


class Int4Linear(QuantizedLinear):
    def __init__(self, linear: nn.Linear, group_size: int) -> None:
        super().__init__()
        w = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        if self.in_features % group_size:
            raise ValueError(f"weight_dtype: group size {group_size} does not divide the input "
                             f"width {self.in_features}")
        self.group_size = group_size
        g = w.float().reshape(self.out_features, -1, group_size)  # [out, groups, N]
        lo, hi = g.amin(dim=-1), g.amax(dim=-1)
        scale = ((hi - lo) / 15).clamp(min=1e-12)  # [out, groups]
        zero = lo + 8 * scale  # the value of q = 8
        q = torch.round((g - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            q.reshape(self.out_features, self.in_features), 1)  # [out, in / 2] uint8
        self.register_buffer("weight_q", packed)
        # [groups, out, 2]: (scale, zero) per group, activation dtype
        self.register_buffer("scales_and_zeros",
                             torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()
                             .to(w.dtype))
        self.bias = linear.bias

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, self.in_features).contiguous()  # the kernel needs a contiguous A
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.weight_q, self.group_size,
                                                       self.scales_and_zeros)
        return self._out(y, x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", group_size={self.group_size}"


def quantize_model(model: nn.Module, weight_dtype: str) -> nn.Module:
    """Swap every `nn.Linear` for its quantised version in place (dense formats: no change).

    A linear whose weight is shared with an embedding (tied LM head) is refused, as in the
    cost model (`costmodel.api.check_precision`)."""
    fmt = weight_format(weight_dtype)
    if not fmt.quantized:
        return model
    if fmt.name == "fp8":
        raise ValueError("weight_dtype: the CPU reference has no fp8 kernel; use int8 or int4-g<N>")
    shared = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            if id(child.weight) in shared:
                raise ValueError(f"weight_dtype: {name} shares its weight with an embedding")
            new = Int8Linear(child) if fmt.group_size is None else Int4Linear(child,
                                                                               fmt.group_size)
            new._forward_hooks.update(child._forward_hooks)  # a TP shard's collective hooks
            setattr(parent, name, new)
    return model


def quantize_kv_cache(model: nn.Module, kv_dtype: str = "int8") -> nn.Module:
    """Set every layer cache's storage format (`KVCache.kv_dtype`): ``int8`` or dense
    (``None``/the model's dtype)."""
    for m in model.modules():
        if isinstance(m, KVCache):
            m.kv_dtype = "int8" if kv_dtype == "int8" else None
    return model
