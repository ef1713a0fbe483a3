"""Rotary position embedding, GPT-NeoX "rotate-half" convention (docs/model.md 1.6).

Only the first `rotary_dims = int(head_dim * rotary_fraction)` dimensions of each query and key
head rotate; the rest pass through. Frequencies are `base ** (-2i / rotary_dims)`, angles are
computed in fp32 and cast to the model dtype (as transformers does), and the tables hold the
frequencies twice, `[f_0..f_{r/2-1}, f_0..f_{r/2-1}]`, pairing dimension i with i + r/2. With
rotary_fraction = 1 this is also transformers' Llama convention.

rotate-half: ``out = x * cos + cat(-x2, x1) * sin`` with x = [x1 | x2]. We compute the same
numbers as ``x * cos + roll(x, r/2) * sin_signed`` where ``sin_signed = [-sin | sin]`` (negation
is exact), which takes half the kernel launches.

`Rotary` is parameter-free; the tables are built once per stack (`rotary_table`) and sliced
per forward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rotary_table(
    n_positions: int, rotary_dims: int, base: float, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """cos and signed sin ``[-sin | sin]`` for positions 0..n_positions-1: ``[T, rotary_dims]``."""
    inv_freq = 1.0 / (
        base ** (torch.arange(0, rotary_dims, 2, dtype=torch.float32, device=device) / rotary_dims)
    )
    t = torch.arange(n_positions, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)  # [T, r/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, r]
    sin = emb.sin()
    half = rotary_dims // 2
    sin_signed = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)
    return emb.cos().to(dtype), sin_signed.to(dtype)


class Rotary(nn.Module):
    """Rotate-half rotary on the first `rotary_dims` dims of the query and key heads."""

    def __init__(self, rotary_dims: int, base: float) -> None:
        super().__init__()
        self.rotary_dims = rotary_dims
        self.base = base

    def forward(self, qk: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
        # qk: [B, T, K, G+1, dh] (the G query heads and the key head of each KV group);
        # cos, sin_signed: [T, rotary_dims]
        r = self.rotary_dims
        if r == 0:
            return qk
        t = cos.shape[0]
        cos, sin_signed = cos.view(t, 1, 1, r), sin_signed.view(t, 1, 1, r)
        x = qk if r == qk.shape[-1] else qk[..., :r]
        out = x * cos + torch.roll(x, shifts=r // 2, dims=-1) * sin_signed
        return out if r == qk.shape[-1] else torch.cat((out, qk[..., r:]), dim=-1)

    def extra_repr(self) -> str:
        return f"rotary_dims={self.rotary_dims}, base={self.base}"
