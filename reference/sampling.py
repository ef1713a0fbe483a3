"""Next-token selection and the result of `generate`, without host synchronisation.

Greedy (temperature 0) is ``argmax``. Sampling at temperature T draws from softmax(logits / T)
as ``argmax(p / E)`` with E ~ Exp(1) i.i.d. (the exponential-race form of a categorical draw),
which needs no host round trip, unlike ``torch.multinomial`` on some devices.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def select_next(
    logits: Tensor, temperature: float = 0.0, generator: torch.Generator | None = None
) -> Tensor:
    """Next tokens ``[B]`` (long) from logits ``[B, V]``."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)


@dataclass
class Generation:
    """What `generate` returns.

    tokens: the new tokens ``[B, G]`` (the prompt is not repeated).
    logits: the logits each new token was chosen from ``[B, G, V]``, if requested.
    contexts: block models only, the context embeddings that started each generated block
      ``[B, n_g, D_b]`` (block decoder output after final_norm), if requested.
    """

    tokens: Tensor
    logits: Tensor | None = None
    contexts: Tensor | None = None


def maybe_compile(fn: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    """`torch.compile(fn, mode="reduce-overhead")` on CUDA (CUDA graphs); eager elsewhere.

    On CPU the fixed-shape step still runs, uncompiled, with a warning: compilation is only
    meant for CUDA graphs, and a CPU compile would take longer than the runs it speeds up.
    """
    if device.type != "cuda":
        warnings.warn(
            "compile=True: torch.compile of the decode step is used on CUDA only; "
            f"on {device.type} the fixed-shape step runs eagerly",
            stacklevel=3,
        )
        return fn
    compiled = torch.compile(fn, mode="reduce-overhead", fullgraph=True)

    def step(*args: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()  # one decode step per graph replay
        return compiled(*args)

    return step
