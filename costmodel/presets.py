"""The paper's ten main models (docs/model.md 3.2), named as the official configs, plus `blockify`.

Every stack inherits Pythia-410m's architecture (docs/model.md 1.3): GELU MLP with F = 4D, LayerNorm,
biases everywhere, rotary on 25% of each head, parallel residual, V = 50304. Block models derive
head_dim from D (32 if D <= 256, 64 if D <= 1536, else 128; docs/model.md 1.3).
vanilla_31 uses F = 4D = 1024, the width that reproduces the paper's 31M / 5M (docs/model.md 3.3).
"""

from __future__ import annotations

import difflib
import re

from .errors import UserError
from .spec import BlockSpec, StackSpec, VanillaSpec

ModelSpecT = VanillaSpec | BlockSpec


def neox_stack(n_layers: int, d_model: int, n_heads: int) -> StackSpec:
    """A Pythia/GPT-NeoX stack with MLP width 4D (docs/model.md 1.6)."""
    return StackSpec(n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_ffn=4 * d_model)


def block_head_dim(d_model: int) -> int:
    """`util/config.py::preprocess_config` head_dim rule for block models (docs/model.md 1.3)."""
    if d_model <= 256:
        return 32
    if d_model <= 1536:
        return 64
    return 128


def _vanilla(name: str, n_layers: int, d_model: int, n_heads: int) -> VanillaSpec:
    return VanillaSpec(name=name, stack=neox_stack(n_layers, d_model, n_heads))


def _block(name: str, n_layers: int, d_model: int) -> BlockSpec:
    stack = neox_stack(n_layers, d_model, d_model // block_head_dim(d_model))
    return BlockSpec(name=name, block_length=4, prefix_length=2,
                     block_decoder=stack, token_decoder=stack)


# (config name, paper display name) -> spec; docs/model.md 3.2 tables.
_PRESETS: dict[str, tuple[str, ModelSpecT]] = {
    "vanilla_31": ("Vanilla 31M", _vanilla("vanilla_31", 6, 256, 8)),
    "vanilla_70": ("Vanilla 70M", _vanilla("vanilla_70", 6, 512, 8)),
    "vanilla_160": ("Vanilla 160M", _vanilla("vanilla_160", 12, 768, 12)),
    "vanilla_410": ("Vanilla 410M", _vanilla("vanilla_410", 24, 1024, 16)),
    "block_main_b4_5": ("Block 33M", _block("block_main_b4_5", 3, 256)),
    "block_main_b4_19": ("Block 77M", _block("block_main_b4_19", 3, 512)),
    "block_main_b4_85": ("Block 170M", _block("block_main_b4_85", 6, 768)),
    "block_main_b4_300": ("Block 420M", _block("block_main_b4_300", 12, 1024)),
    "block_main_b4_800": ("Block 1.0B", _block("block_main_b4_800", 8, 2048)),
    "block_main_b4_1.2b": ("Block 1.4B", _block("block_main_b4_1.2b", 12, 2048)),
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)

# Matched pairs of docs/model.md 5.3 (vanilla, block).
MATCHED_PAIRS: tuple[tuple[str, str], ...] = (
    ("vanilla_410", "block_main_b4_1.2b"),
    ("vanilla_410", "block_main_b4_800"),
    ("vanilla_160", "block_main_b4_300"),
    ("vanilla_70", "block_main_b4_85"),
    ("vanilla_31", "block_main_b4_5"),
)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


# Public checkpoints whose configuration a preset mirrors exactly (docs/model.md 3.2: the vanilla models
# are the Pythia configs; same layers, width, heads, MLP width and vocabulary). Accepted as
# aliases, with or without the organisation.
PUBLIC_CHECKPOINTS: dict[str, tuple[str, ...]] = {
    "vanilla_70": ("EleutherAI/pythia-70m", "EleutherAI/pythia-70m-deduped"),
    "vanilla_160": ("EleutherAI/pythia-160m", "EleutherAI/pythia-160m-deduped"),
    "vanilla_410": ("EleutherAI/pythia-410m", "EleutherAI/pythia-410m-deduped"),
}

_ALIASES: dict[str, str] = {}
for _name, (_display, _) in _PRESETS.items():
    _ALIASES[_key(_name)] = _name
    _ALIASES[_key(_display)] = _name
for _name, _ids in PUBLIC_CHECKPOINTS.items():
    for _id in _ids:
        _ALIASES[_key(_id)] = _name
        _ALIASES[_key(_id.split("/", 1)[1])] = _name


class UnknownPresetError(UserError):
    pass


def display_name(name: str) -> str:
    return _PRESETS[resolve_preset_name(name)][0]


def resolve_preset_name(name: str) -> str:
    """Config name for a config name or a paper display name ("Block 1.4B"), any case."""
    found = _ALIASES.get(_key(name))
    if found is None:
        choices = list(_PRESETS) + [d for d, _ in _PRESETS.values()]
        choices += [i for ids in PUBLIC_CHECKPOINTS.values() for i in ids]
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownPresetError(
            f"model: unknown preset {name!r}{hint} (known: {', '.join(_PRESETS)})"
        )
    return found


def get_preset(name: str) -> ModelSpecT:
    return _PRESETS[resolve_preset_name(name)][1]


def blockify(
    vanilla: VanillaSpec,
    block_length: int = 4,
    layer_split: tuple[int, int] | None = None,
    prefix_length: int = 2,
    name: str | None = None,
) -> BlockSpec:
    """A Block Transformer with the vanilla model's stack shape split into block/token decoders.

    `layer_split` = (block-decoder layers, token-decoder layers); default is the paper's 1:1
    split of the vanilla depth (docs/model.md 3.2: N_b = N_t). Both decoders keep the vanilla width.
    """
    n = vanilla.stack.n_layers
    if layer_split is None:
        if n < 2:
            raise UserError(f"layer_split: a {n}-layer stack cannot be split; give layer_split")
        layer_split = (n - n // 2, n // 2)
    n_b, n_t = layer_split
    if n_b < 1 or n_t < 1:
        raise UserError(f"layer_split: both parts must have at least 1 layer, got {layer_split}")
    return BlockSpec(
        name=name or f"{vanilla.name}-block{block_length}",
        vocab_size=vanilla.vocab_size,
        block_length=block_length,
        prefix_length=prefix_length,
        block_decoder=vanilla.stack.model_copy(update={"n_layers": n_b}),
        token_decoder=vanilla.stack.model_copy(update={"n_layers": n_t}),
    )


def with_block_length(spec: BlockSpec, block_length: int) -> BlockSpec:
    """The same Block Transformer re-blocked (embedder width D_b / L_B); re-validated."""
    return BlockSpec.model_validate(
        spec.model_dump() | {"block_length": int(block_length),
                             "name": f"{spec.name}@L_B={int(block_length)}"}
    )
