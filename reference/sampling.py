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


def decode_tokens(
    first_logits: Tensor,
    n_tokens: int,
    start: int,
    step: Callable[[Tensor, int], Tensor],
    fixed_step: Callable[[Tensor, Tensor], Tensor] | None = None,
    pos: Tensor | None = None,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    return_logits: bool = False,
) -> Generation:
    """`n_tokens` new tokens: the first chosen from `first_logits` ``[B, V]``, each next one from
    a forward of the previous token at cache position ``start + i - 1`` (i = 1, 2, ...).

    Eager: ``step(tokens [B, 1], c) -> logits [B, V]``. Compiled (CUDA graphs, fixed shapes):
    ``fixed_step(tokens [B, 1], pos) -> logits [B, V]`` with `pos` a ``[1]`` long tensor on the
    device, set to `start` here and advanced in place (no host synchronisation).
    """
    b, vocab = first_logits.shape
    out = torch.empty(b, n_tokens, dtype=torch.long, device=first_logits.device)
    all_logits = None
    if return_logits:
        all_logits = torch.empty(b, n_tokens, vocab, device=first_logits.device,
                                 dtype=first_logits.dtype)
    if fixed_step is not None:
        if pos is None:
            raise ValueError("decode_tokens: fixed_step needs a device position tensor pos")
        pos.fill_(start)

    def keep(i: int, logits: Tensor) -> Tensor:
        tok = select_next(logits, temperature, generator)
        out[:, i] = tok
        if all_logits is not None:
            all_logits[:, i] = logits
        return tok[:, None]  # [B, 1]: the next forward's input

    tokens = keep(0, first_logits)
    for i in range(1, n_tokens):
        if fixed_step is not None:
            logits = fixed_step(tokens, pos)  # type: ignore[arg-type]
            pos += 1  # type: ignore[operator]
        else:
            logits = step(tokens, start + i - 1)
        tokens = keep(i, logits)
    return Generation(out, all_logits)


def compiled_step(
    cache: dict[str, Callable[[Tensor, Tensor], Tensor]],
    name: str,
    fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device,
) -> Callable[[Tensor, Tensor], Tensor]:
    """`maybe_compile(fn, device)`, built once per `name` on CUDA and kept in `cache`."""
    if device.type != "cuda":
        return maybe_compile(fn, device)  # eager, with a warning
    if name not in cache:
        cache[name] = maybe_compile(fn, device)
    return cache[name]


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
