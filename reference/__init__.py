"""PyTorch reference of the vanilla and Block Transformers, built from `costmodel.spec` specs.

Module paths equal the cost model's operator names with layer indices dropped (docs/design.md idea
2): ``embed_in``, ``layers.{ln_attn, attn.{qkv, rotary, kv_cache, core, dense}, ln_mlp,
mlp.{gate, up, act, down}}``, ``final_norm``, ``lm_head`` for `VanillaLM`; ``embedder``,
``block_decoder.{layers, final_norm}``, ``token_decoder.{expansion, embed_in, layers,
final_norm, lm_head}`` for `BlockLM`.

Entry points: `build_model(spec, device, dtype)`; `VanillaLM` / `BlockLM` (training forward,
``prefill``/``decode_step`` and ``block_decode``/``generate_block`` phases, ``generate``);
inference modes ``"static"`` and ``"hf-legacy"`` (`reference.layers`); FLOP counting helpers in
`reference.counting`. Imports torch only (no transformers).
"""

from .block import BlockLM, BlockLMOutput, Embedder
from .build import build_model, count_parameters
from .counting import counting_mode, flop_counter, flops_by_module
from .layers import INFERENCE_MODES, DecoderLayer, DecoderStack, InferenceMode
from .sampling import Generation, select_next
from .vanilla import LMOutput, VanillaLM

__all__ = [
    "INFERENCE_MODES", "BlockLM", "BlockLMOutput", "DecoderLayer", "DecoderStack", "Embedder",
    "Generation", "InferenceMode", "LMOutput", "VanillaLM", "build_model", "count_parameters",
    "counting_mode", "flop_counter", "flops_by_module", "select_next",
]
