"""What the Compare page says in words (pure: no streamlit): the two architectures, why a pair is
compared, and whether a block ÷ vanilla ratio is better or worse.

Sources: docs/model.md 1 (architecture as the official code implements it), 5.2 (paper v2
Table 1: training loss of every main model) and 5.3 (pairs of similar loss).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

from costmodel.paper import TABLE1
from costmodel.presets import MATCHED_PAIRS, UnknownPresetError, display_name, resolve_preset_name
from costmodel.spec import BlockSpec, VanillaSpec

ARCHITECTURES = (
    "**Vanilla Transformer.** One decoder stack; every token attends to all earlier tokens. "
    "Each generated token reads all the weights and the whole KV cache, which grows with the "
    "context, so long prompts and large batches make decoding memory-bound on the cache.\n\n"
    "**Block Transformer** (Ho et al., NeurIPS 2024, global-to-local). Tokens are grouped into "
    "blocks of L_B tokens. A *block decoder* attends over blocks only: one position per block, "
    "so its KV cache is L_B times shorter. For each block it emits a context embedding, which "
    "a linear layer expands into P prefix vectors. A *token decoder* then generates the next "
    "block's L_B tokens, attending only to those P vectors and the block's own tokens: its KV "
    "cache holds at most P + L_B − 1 entries and is reset every block. Decoding thus reads "
    "far less KV cache, more sequences fit in memory and throughput rises; the price is more "
    "parameters for the same quality and a prefill through both decoders."
)


def _loss(spec: VanillaSpec | BlockSpec) -> tuple[str, float] | None:
    """(preset name, paper training loss) for a preset, None for any other model."""
    try:
        name = resolve_preset_name(spec.name)
    except UnknownPresetError:
        return None
    return next(((r.preset, r.loss) for r in TABLE1 if r.preset == name), None)


SIMILAR_LOSS = 0.1  # the paper's pairs of docs/model.md 5.3 differ by 0.07 or less


def similar_pairs() -> list[tuple[str, str]]:
    """The matched pairs whose paper losses differ by at most SIMILAR_LOSS."""
    loss = {r.preset: r.loss for r in TABLE1}
    return [(a, b) for a, b in MATCHED_PAIRS if abs(loss[a] - loss[b]) <= SIMILAR_LOSS]


def pairing_note(vanilla: VanillaSpec, block: BlockSpec) -> str:
    """Why these two are compared: the paper pairs models of similar training loss."""
    v, b = _loss(vanilla), _loss(block)
    size = block.params_total / vanilla.params_total
    rule = ("The paper compares models of **similar training loss** (its Table 1), i.e. of "
            "similar quality, not of equal size.")
    if v is None or b is None:
        return (f"{rule} {vanilla.name} and {block.name} are not both models of the paper, so "
                f"their losses are unknown here; the block model has {size:.2f}× the "
                "parameters.")
    names = f"{display_name(v[0])} (loss {v[1]:.3f}) and {display_name(b[0])} (loss {b[1]:.3f})"
    if abs(v[1] - b[1]) <= SIMILAR_LOSS:
        return (f"{rule} {names} are such a pair: the Block Transformer needs {size:.1f}× the "
                "parameters for about the same loss. Ratios are block ÷ vanilla.")
    pairs = ", ".join(f"{display_name(a)} with {display_name(c)}" for a, c in similar_pairs())
    return (f"{rule} {names} are **not** such a pair (their quality differs), so ratios mix "
            f"the architecture with the model size. Pairs of similar loss: {pairs}.")


# Whether a larger value is better (None: a property, neither better nor worse).
HIGHER_IS_BETTER: dict[str, bool | None] = {
    "throughput_tokens_per_s": True,
    "ttft_s": False,
    "tpot_s": False,
    "memory_bytes_per_sample": False,
    "max_batch": True,
    "decode_time_per_token_s": False,
    "request_time_s": False,
    "kv_cache_bytes_per_sample": False,
}


class Verdict(NamedTuple):
    word: Literal["better", "worse", "same", ""]
    text: str  # e.g. "worse: 35% higher"


def verdict(key: str, ratio: float) -> Verdict:
    """Is block ÷ vanilla = `ratio` of metric `key` good for the Block Transformer?"""
    sense = HIGHER_IS_BETTER.get(key)
    if sense is None or not math.isfinite(ratio) or ratio <= 0:
        return Verdict("", "")
    if abs(ratio - 1) < 0.005:
        return Verdict("same", "about the same")
    word: Literal["better", "worse"] = "better" if (ratio > 1) == sense else "worse"
    change = (f"{ratio:.3g}× higher" if ratio >= 2 else f"{(ratio - 1) * 100:.0f}% higher"
              ) if ratio > 1 else f"{(1 - ratio) * 100:.0f}% lower"
    return Verdict(word, f"{word}: {change}")
