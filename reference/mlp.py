"""Feed-forward blocks: GPT-NeoX GELU MLP (docs/model.md 1.6) and the gated SiLU MLP of Llama configs.

Module paths: ``mlp.up``, ``mlp.act``, ``mlp.down`` (gelu) and additionally ``mlp.gate``
(gated_silu). ``act`` is exact (erf) GELU, or SiLU.
"""

from __future__ import annotations

from torch import Tensor, nn

from costmodel.spec import StackSpec

from .linear import Linear


class GeluMLP(nn.Module):
    """down(gelu(up(x))), D -> F -> D."""

    def __init__(self, stack: StackSpec) -> None:
        super().__init__()
        self.up = Linear(stack.d_model, stack.d_ffn, bias=stack.mlp_bias)
        self.act = nn.GELU()  # exact erf GELU (docs/model.md 1.3)
        self.down = Linear(stack.d_ffn, stack.d_model, bias=stack.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x)))


class GatedMLP(nn.Module):
    """down(silu(gate(x)) * up(x)), D -> F -> D."""

    def __init__(self, stack: StackSpec) -> None:
        super().__init__()
        self.gate = Linear(stack.d_model, stack.d_ffn, bias=stack.mlp_bias)
        self.up = Linear(stack.d_model, stack.d_ffn, bias=stack.mlp_bias)
        self.act = nn.SiLU()
        self.down = Linear(stack.d_ffn, stack.d_model, bias=stack.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.gate(x)) * self.up(x))


def make_mlp(stack: StackSpec) -> nn.Module:
    return GeluMLP(stack) if stack.mlp == "gelu" else GatedMLP(stack)
