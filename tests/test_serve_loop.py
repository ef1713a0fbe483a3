"""The real continuous-batching loop (validation/serve_loop.py) decodes exactly what the
reference's own `generate` decodes for each request alone, while requests join, leave and
share slots; and its timeline follows the prefill-first policy."""

from __future__ import annotations

import numpy as np
import pytest

from costmodel.spec import BlockSpec, StackSpec, VanillaSpec
from reference import build_model
from validation.serve_loop import measure

VOCAB = 67
NEOX = StackSpec(n_layers=2, d_model=64, n_heads=4, d_ffn=128)
LLAMA = StackSpec(n_layers=2, d_model=48, n_heads=4, n_kv_heads=2, head_dim=16, d_ffn=96,
                  mlp="gated_silu", norm="rmsnorm", qkv_bias=False, out_bias=False,
                  mlp_bias=False, rotary_fraction=1.0, parallel_residual=False)
SPECS = {
    "vanilla-neox": VanillaSpec(vocab_size=VOCAB, stack=NEOX),
    "vanilla-llama": VanillaSpec(vocab_size=VOCAB, stack=LLAMA),
    "block": BlockSpec(vocab_size=VOCAB, block_length=4, prefix_length=2,
                       block_decoder=NEOX, token_decoder=LLAMA),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_slot_server_tokens_equal_generate_per_request(name):
    spec = SPECS[name]
    model = build_model(spec, seed=0)
    # staggered arrivals, mixed prompt and output lengths, more requests than slots
    arrival = np.array([0.0, 0.0, 0.002, 0.004, 0.004, 0.01, 0.012])
    prompt = np.array([5, 5, 9, 3, 9, 6, 11])
    gen = np.array([7, 2, 10, 5, 1, 13, 6])
    reqs, wall, iters = measure(model, arrival, prompt, gen, slots=3, token_budget=64, seed=1)
    assert wall > 0 and iters >= gen.max()
    fresh = build_model(spec, seed=0)
    for r in reqs:
        ref = fresh.generate(r.prompt[None], r.generated_tokens).tokens[0].tolist()
        assert r.tokens == ref, (name, r.prompt.tolist())
        assert r.arrival_s <= r.first_s <= r.finish_s
        assert len(r.tokens) == r.generated_tokens
    # at most `slots` requests in flight at any first-token instant
    firsts = np.array([r.first_s for r in reqs])
    finishes = np.array([r.finish_s for r in reqs])
    for t in firsts:
        assert ((firsts <= t) & (finishes > t)).sum() <= 3
