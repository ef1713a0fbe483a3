"""What `validate count` cannot see: the useful/executed FLOPs switch and the causal count."""

from __future__ import annotations

import pytest

from costmodel import Workload, estimate, get_hardware

H100 = "h100-sxm-80gb"


def _core(profile: str, S: int, B: int = 2, G: int = 3):
    est = estimate("vanilla_160", H100, Workload(batch=B, prompt_tokens=S, generated_tokens=G),
                   profile)
    return est, {r.phase: r for r in est.ops if r.name == "layers.attn.core"}


@pytest.mark.parametrize("S", [1, 7, 100])
def test_useful_attention_flops_are_the_causal_pairs(S):
    from costmodel import get_preset

    st = get_preset("vanilla_160").stack
    B = 2
    _, rows = _core("static", S, B)
    # prefill: query i attends keys 0..i; 4 FLOPs per (query, key, head dim) pair and head
    pairs = sum(i + 1 for i in range(S))
    assert rows["prefill"].useful_flops == 4 * B * st.n_heads * st.dh * pairs * st.n_layers
    assert rows["prefill"].flops == 4 * B * st.n_heads * st.dh * S * S * st.n_layers


def test_flash_attention_is_timed_on_useful_flops_eager_on_executed():
    pi = get_hardware(H100).compute_flops_per_s("bf16")
    _, fused = _core("static", 512)
    _, eager = _core("hf-legacy", 512)
    f, e = fused["prefill"], eager["prefill"]
    assert f.useful_flops < f.flops
    assert f.time_flops == f.useful_flops and f.t_math_s == pytest.approx(f.useful_flops / pi)
    assert e.time_flops == e.flops and e.t_math_s == pytest.approx(e.flops / pi)
