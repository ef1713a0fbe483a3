"""Turn a `WhatIf` into validated specs, hardware and workload, collecting errors (no streamlit).

Every value goes through the project's pydantic specs; a bad value becomes an `InputError` that
names the section, the field and the rule (the page shows it with `st.error`), and the parts
that are valid stay usable: a broken block spec leaves the vanilla side working.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from costmodel.hardware import Hardware, get_hardware
from costmodel.hf_config import spec_from_hf_config
from costmodel.implementation import Implementation, get_implementation
from costmodel.parallel import Parallelism
from costmodel.presets import blockify, get_preset
from costmodel.spec import BlockSpec, VanillaSpec
from costmodel.workload import Workload

from .state import BLOCKIFY, CUSTOM, EFFICIENCY_FIELDS, UPLOAD, WhatIf

GiB = 2**30


@dataclass(frozen=True)
class InputError:
    """One problem with the inputs; `level` "info" is a request (e.g. upload a file)."""

    section: str
    field: str
    message: str
    level: Literal["error", "info"] = "error"

    def text(self) -> str:
        return f"{self.section} — {self.field}: {self.message}"


@dataclass(frozen=True)
class Context:
    """The validated what-if; a part is None when its inputs are invalid (see `errors`)."""

    whatif: WhatIf
    vanilla: VanillaSpec | None
    block: BlockSpec | None
    hardware: Hardware | None
    workload: Workload | None
    profile: str
    errors: tuple[InputError, ...] = field(default=())
    parallelism: Parallelism = field(default_factory=Parallelism)
    # per side ("Vanilla", "Block"): the profile with the sidebar's precision, where it applies
    implementations: dict[str, Implementation] = field(default_factory=dict)

    def implementation(self, label: str) -> Implementation:
        """The profile of side `label` with its precision (docs/precision.md)."""
        return self.implementations.get(label) or get_implementation(self.profile)

    def precision_text(self, label: str) -> str:
        return self.implementation(label).precision_label

    def models(self) -> dict[str, VanillaSpec | BlockSpec]:
        """The valid sides, by label ("Vanilla", "Block")."""
        out: dict[str, VanillaSpec | BlockSpec] = {}
        if self.vanilla is not None:
            out["Vanilla"] = self.vanilla
        if self.block is not None:
            out["Block"] = self.block
        return out

    @property
    def ready(self) -> bool:
        """Hardware and workload are valid (pages need them for any number)."""
        return self.hardware is not None and self.workload is not None


def validation_errors(e: ValidationError, section: str) -> list[InputError]:
    """pydantic errors as InputErrors: field = dotted location, message = the rule (and input)."""
    out = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(model)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        value = err.get("input")
        if isinstance(value, int | float | str) and not isinstance(value, bool) and \
                "Value error" not in str(err["msg"]):
            msg = f"{msg} (got {value!r})"
        out.append(InputError(section, loc, msg))
    return out


def _stack(layers: int, width: int, heads: int, ffn: int) -> dict[str, int]:
    return {"n_layers": layers, "d_model": width, "n_heads": heads, "d_ffn": ffn}


def parse_config_upload(data: bytes, filename: str = "config.json") -> VanillaSpec:
    """A vanilla spec from the bytes of an uploaded Hugging Face config.json.

    Raises ValueError whose message starts with "config.json" and names the key and the rule.
    """
    try:
        cfg = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("config.json: the file is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"config.json: not valid JSON ({e.msg}, line {e.lineno})") from None
    name = filename.removesuffix(".json") if filename != "config.json" else None
    return spec_from_hf_config(cfg, name=name)


def _split_config_error(message: str) -> tuple[str, str]:
    """'config.json: key: rule' -> ('key', 'rule'); the key is 'file' when none is named."""
    rest = message.removeprefix("config.json: ")
    missing = re.search(r"missing required key '([^']+)'", rest)
    if missing:
        return missing.group(1), rest
    head, sep, tail = rest.partition(": ")
    if sep and " " not in head:
        return head, tail.removeprefix("Value error, ")
    return "file", rest


def _vanilla(w: WhatIf, upload: tuple[str, bytes] | None) -> tuple[VanillaSpec | None,
                                                                   list[InputError]]:
    if w.vanilla == CUSTOM:
        try:
            spec = VanillaSpec.model_validate(
                {"name": "custom-vanilla",
                 "stack": _stack(w.v_layers, w.v_width, w.v_heads, w.v_ffn)})
            return spec, []
        except ValidationError as e:
            return None, validation_errors(e, "Custom vanilla model")
    if w.vanilla == UPLOAD:
        if upload is None:
            return None, [InputError("Vanilla model", "config.json",
                                     "upload a Hugging Face config.json in the sidebar", "info")]
        name, data = upload
        try:
            return parse_config_upload(data, name), []
        except ValueError as e:
            key, rule = _split_config_error(str(e))
            return None, [InputError(f"Uploaded {name}", key, rule)]
    spec = get_preset(w.vanilla)
    assert isinstance(spec, VanillaSpec)
    return spec, []


def _block(w: WhatIf, vanilla: VanillaSpec | None) -> tuple[BlockSpec | None, list[InputError]]:
    if w.block == CUSTOM:
        stack = _stack(w.b_layers_block, w.b_width, w.b_heads, w.b_ffn)
        try:
            spec = BlockSpec.model_validate({
                "name": "custom-block", "block_length": w.b_block_length,
                "prefix_length": w.b_prefix, "block_decoder": stack,
                "token_decoder": stack | {"n_layers": w.b_layers_token}})
            return spec, []
        except ValidationError as e:
            return None, validation_errors(e, "Custom block model")
    if w.block == BLOCKIFY:
        if vanilla is None:
            return None, [InputError("Block model", "blockify",
                                     "needs a valid vanilla model to split")]
        try:
            return blockify(vanilla, w.bf_block_length), []
        except ValidationError as e:
            return None, validation_errors(e, "Blockified vanilla")
        except ValueError as e:
            rule = str(e).split(": ", 1)[-1]
            return None, [InputError("Blockified vanilla", "layer_split", rule)]
    spec = get_preset(w.block)
    assert isinstance(spec, BlockSpec)
    return spec, []


def _workload(w: WhatIf) -> tuple[Workload | None, list[InputError]]:
    try:
        wl = Workload.model_validate({
            "batch": "max" if w.batch_mode == "max" else w.batch,
            "prompt_tokens": w.prompt_tokens, "generated_tokens": w.generated_tokens,
            "memory_reserve_bytes": w.reserve_GiB * GiB,
        })
        return wl, []
    except ValidationError as e:
        errs = validation_errors(e, "Workload")
        # the union "int | 'max'" reports two errors for a bad batch: keep the number's
        errs = [x for x in errs if not x.field.startswith("batch.literal")]
        return None, [InputError(x.section, "batch" if x.field.startswith("batch.") else x.field,
                                 x.message) for x in errs]


def _hardware(w: WhatIf) -> tuple[Hardware | None, list[InputError]]:
    """The chosen record, with the efficiencies the what-if overrides (`EFFICIENCY_FIELDS`)."""
    try:
        hw = get_hardware(w.hardware)
    except ValueError as e:
        return None, [InputError("Hardware", "hardware", str(e).removeprefix("hardware: "))]
    changes = {name: getattr(w, key) * factor for key, (name, factor) in EFFICIENCY_FIELDS.items()
               if getattr(w, key) is not None}
    if not changes:
        return hw, []
    try:
        return hw.with_efficiency(**changes, source="what-if (dashboard)"), []
    except ValidationError as e:
        return None, validation_errors(e, "Hardware efficiency")


def _parallelism(w: WhatIf) -> tuple[Parallelism, list[InputError]]:
    """tp x pp GPUs per replica; a bad value falls back to one GPU with an error."""
    try:
        return Parallelism(tp=w.tp, pp=w.pp), []
    except ValidationError as e:
        return Parallelism(), validation_errors(e, "Parallelism")


def resolve(w: WhatIf, upload: tuple[str, bytes] | None = None) -> Context:
    """Validate every part of `w`; `upload` is (file name, bytes) of an uploaded config.json."""
    errors: list[InputError] = []
    vanilla, errs = _vanilla(w, upload)
    errors += errs
    block, errs = _block(w, vanilla)
    errors += errs
    workload, errs = _workload(w)
    errors += errs
    hardware, errs = _hardware(w)
    errors += errs
    profile = w.profile
    try:
        get_implementation(profile)
    except ValueError as e:
        errors.append(InputError("Implementation", "profile",
                                 str(e).removeprefix("implementation: ")))
        profile = "static"
    parallelism, errs = _parallelism(w)
    errors += errs
    impls, errs = _implementations(w, profile)
    errors += errs
    return Context(w, vanilla, block, hardware, workload, profile, tuple(errors), parallelism,
                   impls)


def _implementations(w: WhatIf, profile: str) -> tuple[dict[str, Implementation],
                                                      list[InputError]]:
    """The profile with the sidebar's dtypes, for the side(s) `w.dtype_scope` names."""
    try:
        impl = get_implementation(profile, weight_dtype=w.weight_dtype, kv_dtype=w.kv_dtype,
                                  compute_dtype=w.compute_dtype)
    except ValueError as e:  # pydantic's ValidationError is a ValueError too
        field_, _, rule = str(e).partition(": ")
        return {}, [InputError("Precision", field_, rule or str(e))]
    base = get_implementation(profile)
    sides = {"both": ("Vanilla", "Block"), "vanilla": ("Vanilla",), "block": ("Block",)}
    chosen = sides.get(w.dtype_scope, ("Vanilla", "Block"))
    return {label: impl if label in chosen else base for label in ("Vanilla", "Block")}, []
