"""blockroof cost model: symbolic roofline of vanilla and Block Transformers.

Start with `estimate`, `sweep` and `formula` (see `costmodel.api`), `plan_capacity` for how many
GPUs a serving target needs (`costmodel.capacity`), presets in
`costmodel.presets`, hardware in `costmodel.hardware`. Imports no torch and no streamlit.
"""

from .api import Estimate, Formula, OpRow, estimate, formula, formula_names, max_batch, sweep
from .capacity import CapacityPlan, batch_curve, plan_capacity
from .hardware import Hardware, get_hardware, hardware_ids
from .hf_config import load_hf_config, spec_from_hf_config
from .implementation import HF_LEGACY, STATIC, Implementation, get_implementation
from .parallel import Parallelism
from .presets import PRESET_NAMES, blockify, get_preset, with_block_length
from .spec import BlockSpec, StackSpec, VanillaSpec
from .workload import DECODE_HEAVY, PREFILL_HEAVY, Workload

__all__ = [
    "CapacityPlan", "batch_curve", "plan_capacity",
    "BlockSpec", "DECODE_HEAVY", "Estimate", "Formula", "HF_LEGACY", "Hardware",
    "Implementation", "OpRow", "PREFILL_HEAVY", "PRESET_NAMES", "STATIC", "StackSpec",
    "VanillaSpec", "Workload", "blockify", "estimate", "formula", "formula_names",
    "get_hardware", "get_implementation", "get_preset", "hardware_ids", "load_hf_config",
    "max_batch", "Parallelism",
    "sweep", "spec_from_hf_config", "with_block_length",
]
