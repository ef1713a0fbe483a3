"""Normalisation layers chosen by `StackSpec.norm` (docs/model.md 1.6: LayerNorm with affine parameters).

`layernorm` is `nn.LayerNorm` (weight and bias, 2D parameters); `rmsnorm` is `nn.RMSNorm` (weight
only, D parameters), as Llama-family configs use. Both are parameter-exact with
`StackSpec.norm_params`.
"""

from __future__ import annotations

from torch import nn

from costmodel.spec import StackSpec


def make_norm(stack: StackSpec) -> nn.Module:
    """A norm over the last dimension of width `stack.d_model`."""
    if stack.norm == "layernorm":
        return nn.LayerNorm(stack.d_model, eps=stack.norm_eps)
    return nn.RMSNorm(stack.d_model, eps=stack.norm_eps)
