"""Reading a model the user names: a preset, a dumped spec file, or a Hugging Face config.json.

One public entry, `load_model`, used by the CLI and by every package above `costmodel` (so no
caller reaches into a private CLI helper).
"""

from __future__ import annotations

from .spec import BlockSpec, VanillaSpec


def load_model(text: str, field: str = "--model") -> VanillaSpec | BlockSpec:
    """A preset name or alias, a spec JSON file (a dumped VanillaSpec/BlockSpec) or an HF
    config.json (`costmodel.api.resolve_model`, which labels config files readably).

    `field` names the input in error messages (one line: the field and the rule).
    """
    from .api import resolve_model

    return resolve_model(text, field=field)
