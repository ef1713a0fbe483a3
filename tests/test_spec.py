"""Specs: parameter counts against docs/model.md 3.3, validation messages, HF import, blockify."""

import pytest
from pydantic import ValidationError

from costmodel import blockify, get_preset, spec_from_hf_config
from costmodel.presets import PRESET_NAMES, UnknownPresetError, display_name, with_block_length
from costmodel.spec import BlockSpec, StackSpec, VanillaSpec

# docs/model.md 3.3: (N-Emb computed, Total paper-style computed), millions, 2 decimals.
SPEC_3_3 = {
    "vanilla_31": (4.74, 30.49),
    "vanilla_70": (18.92, 70.43),
    "vanilla_160": (85.06, 162.32),
    "vanilla_410": (302.31, 405.33),
    "block_main_b4_5": (4.74, 33.85),
    "block_main_b4_19": (18.91, 77.39),
    "block_main_b4_85": (85.05, 173.16),
    "block_main_b4_300": (302.31, 420.31),
    "block_main_b4_800": (805.73, 1045.93),
    "block_main_b4_1.2b": (1208.60, 1448.80),
}
# docs/model.md 3.3 last-but-one column: totals including the unused block-decoder embed_in.
SPEC_3_3_WITH_UNUSED = {
    "block_main_b4_5": 46.72, "block_main_b4_19": 103.15, "block_main_b4_85": 211.80,
    "block_main_b4_300": 471.82, "block_main_b4_800": 1148.96, "block_main_b4_1.2b": 1551.82,
}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_parameter_counts_match_spec(name):
    spec = get_preset(name)
    n_emb, total = SPEC_3_3[name]
    assert round(spec.params_non_embedding / 1e6, 2) == n_emb
    assert round(spec.params_total / 1e6, 2) == total


@pytest.mark.parametrize("name", sorted(SPEC_3_3_WITH_UNUSED))
def test_block_totals_with_unused_embedding(name):
    spec = get_preset(name)
    assert round((spec.params_total + spec.params_unused_embed_in) / 1e6, 2) == \
        SPEC_3_3_WITH_UNUSED[name]


def test_neox_layer_is_12d2_plus_13d():
    # docs/model.md 1.8
    for d in (256, 1024, 2048):
        st = StackSpec(n_layers=1, d_model=d, n_heads=8, d_ffn=4 * d)
        assert st.params_per_layer == 12 * d * d + 13 * d


@pytest.mark.parametrize("name", ["vanilla_70", "block_main_b4_19"])
def test_stored_bytes_at_one_byte_per_element_are_the_parameter_count(name):
    # costmodel.ops.layer_weight_bytes and the spec's counts evaluate one linear inventory
    # (params.layer_linears): with every element at 1 byte and no scales they must agree
    import sympy as sp

    from costmodel import symbols as sy
    from costmodel.ops import StackStructure, layer_weight_bytes
    spec = get_preset(name)
    for st, sym in ([(spec.stack, sy.VANILLA)] if spec.kind == "vanilla" else
                    [(spec.block_decoder, sy.BLOCK_DEC), (spec.token_decoder, sy.TOKEN_DEC)]):
        got = layer_weight_bytes(StackStructure.of(st), sym).subs(
            {sy.s_w: 1, sy.s_e: 1, sy.s_wc: 0, sym.D: st.d_model, sym.H: st.n_heads,
             sym.K: st.kv_heads, sym.d_h: st.dh, sym.F: st.d_ffn})
        assert sp.Integer(st.params_per_layer) == got


def test_aliases_and_unknown_names():
    assert get_preset("Block 1.4B").name == "block_main_b4_1.2b"
    assert get_preset("vanilla-410").name == "vanilla_410"
    assert display_name("block_main_b4_85") == "Block 170M"
    with pytest.raises(UnknownPresetError, match="did you mean vanilla_410"):
        get_preset("vanila_410")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 100, "n_heads": 3}, "divisible by n_heads"),
        ({"n_heads": 8, "n_kv_heads": 3}, "divisible by n_kv_heads"),
        ({"n_layers": 0}, "greater than 0"),
        ({"rotary_fraction": 1.5}, "less than or equal to 1"),
        ({"n_heads": 8, "d_model": 24, "rotary_fraction": 1.0}, "must be even"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_stack_rules_name_the_problem(kwargs, match):
    base = {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_ffn": 256}
    with pytest.raises(ValidationError, match=match):
        StackSpec(**(base | kwargs))


def test_block_width_must_divide_block_length():
    st = StackSpec(n_layers=1, d_model=66, n_heads=3, d_ffn=64, rotary_fraction=0.0)
    with pytest.raises(ValidationError, match="divisible by block_length"):
        BlockSpec(block_length=4, block_decoder=st, token_decoder=st)


def test_specs_are_frozen_and_hashable():
    spec = get_preset("vanilla_70")
    with pytest.raises(ValidationError):
        spec.vocab_size = 3  # type: ignore[misc]
    assert hash(spec) == hash(VanillaSpec.model_validate(spec.model_dump()))


def test_hf_gpt_neox_config_reproduces_pythia_410m():
    # Pythia-410m config.json fields (docs/model.md 3.1); 405,334,016 parameters.
    cfg = {"model_type": "gpt_neox", "num_hidden_layers": 24, "hidden_size": 1024,
           "num_attention_heads": 16, "intermediate_size": 4096, "rotary_pct": 0.25,
           "rotary_emb_base": 10000, "use_parallel_residual": True, "vocab_size": 50304,
           "tie_word_embeddings": False, "layer_norm_eps": 1e-5}
    spec = spec_from_hf_config(cfg)
    assert spec.params_total == get_preset("vanilla_410").params_total == 405_334_016


def test_hf_llama_config_counts():
    # TinyLlama-1.1B config.json: 1,100,048,384 parameters (GQA 32/4, gated SiLU, RMSNorm).
    cfg = {"model_type": "llama", "num_hidden_layers": 22, "hidden_size": 2048,
           "num_attention_heads": 32, "num_key_value_heads": 4, "intermediate_size": 5632,
           "vocab_size": 32000, "tie_word_embeddings": False, "rms_norm_eps": 1e-5}
    spec = spec_from_hf_config(cfg)
    assert spec.stack.kv_heads == 4 and spec.stack.mlp == "gated_silu"
    assert spec.params_total == 1_100_048_384


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"model_type": "bert"}, "not supported"),
        ({"model_type": "llama", "hidden_size": 64}, "missing required key 'num_hidden_layers'"),
        ({"model_type": "gpt_neox", "num_hidden_layers": 2, "hidden_size": 60,
          "num_attention_heads": 8, "intermediate_size": 10, "vocab_size": 10},
         "hidden_size \\(60\\) must be divisible by num_attention_heads \\(8\\)"),
        # the config key and a rule in the project's words, not pydantic's field and wording
        ({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": -64,
          "num_attention_heads": 8, "intermediate_size": 10, "vocab_size": 10},
         "^config.json: hidden_size: must be > 0, got -64$"),
        ({"model_type": "llama", "num_hidden_layers": "two", "hidden_size": 64,
          "num_attention_heads": 8, "intermediate_size": 10, "vocab_size": 10},
         "^config.json: num_hidden_layers: must be a whole number, got 'two'$"),
    ],
)
def test_hf_config_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        spec_from_hf_config(cfg)


def test_blockify_splits_layers_and_keeps_width():
    v = get_preset("vanilla_410")
    b = blockify(v, block_length=4)
    assert (b.block_decoder.n_layers, b.token_decoder.n_layers) == (12, 12)
    # Same shapes as the paper's block_main_b4_300 (which also uses 16 heads of 64).
    assert b.params_total == get_preset("block_main_b4_300").params_total
    with pytest.raises(ValueError, match="layer_split"):
        blockify(v, layer_split=(0, 24))


def test_with_block_length_revalidates():
    b = with_block_length(get_preset("block_main_b4_85"), 8)
    assert b.block_length == 8 and b.embedder_width == 96
    with pytest.raises(ValidationError, match="divisible by block_length"):
        with_block_length(get_preset("block_main_b4_85"), 7)
