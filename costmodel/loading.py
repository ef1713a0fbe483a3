"""Reading a model the user names: a preset, a dumped spec file, or a Hugging Face config.json.

One public entry, `load_model`, used by the CLI and by every package above `costmodel` (so no
caller reaches into a private CLI helper).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from .errors import UserError, describe_validation_error
from .hf_config import read_json_file, spec_from_hf_config
from .presets import get_preset
from .spec import BlockSpec, ModelSpec, VanillaSpec


def load_model(text: str, field: str = "--model") -> VanillaSpec | BlockSpec:
    """A preset name, a spec JSON file (a dumped VanillaSpec/BlockSpec) or an HF config.json.

    `field` names the input in error messages (one line: the field and the rule).
    """
    if not (text.endswith(".json") or os.path.sep in text):
        return get_preset(text)
    path = Path(text)
    data = read_json_file(path, field=field)
    if isinstance(data, dict) and data.get("kind") in ("vanilla", "block"):
        try:
            return TypeAdapter(ModelSpec).validate_python(data)
        except ValidationError as e:
            raise UserError(describe_validation_error(e, prefix=f"{field} {path}")) from None
    return spec_from_hf_config(data, name=path.stem)
