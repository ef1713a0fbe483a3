"""Both reference models learn: a short CPU run on shipped prose beats the unigram entropy.

Byte-level vocabulary (256). The unigram entropy H1 of the text (nats per byte) is the loss of
the best context-free predictor; a model that uses context must go well below it (docs/model.md 1.7
losses: vanilla next-token CE, block token-decoder CE).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from costmodel.spec import BlockSpec, StackSpec, VanillaSpec
from reference import build_model

TEXT = (Path(__file__).parent / "data" / "sample_prose.txt").read_bytes()
STACK = StackSpec(n_layers=2, d_model=64, n_heads=4, d_ffn=256)


def unigram_entropy_nats(data: bytes) -> float:
    counts = Counter(data)
    n = len(data)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def train(model: torch.nn.Module, steps: int, seq_len: int, batch: int, lr: float) -> float:
    """AdamW on random windows; returns the mean loss over the last 20 steps."""
    data = torch.tensor(list(TEXT), dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        for group in opt.param_groups:  # linear warmup, then cosine to 0.1x
            warm = min(1.0, (step + 1) / 20)
            group["lr"] = lr * warm * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        starts = torch.randint(0, len(data) - seq_len, (batch,), generator=gen)
        ids = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
        loss = model(ids, compute_loss=True).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return sum(losses[-20:]) / 20


def test_unigram_entropy_is_the_best_context_free_loss() -> None:
    # independent route: torch's cross-entropy of the frequency predictor over the sample
    data = torch.tensor(list(TEXT), dtype=torch.long)
    freq = torch.bincount(data, minlength=256).double() / len(data)
    logits = torch.log(freq.clamp_min(1e-300)).expand(len(data), 256)
    ce = torch.nn.functional.cross_entropy(logits, data).item()
    assert unigram_entropy_nats(TEXT) == pytest.approx(ce, rel=1e-12)
    # any other context-free predictor does worse (Gibbs' inequality): here, uniform bytes
    assert ce < math.log(256)
    # edge cases with known values
    assert unigram_entropy_nats(bytes(range(256)) * 3) == pytest.approx(math.log(256))
    assert unigram_entropy_nats(b"a" * 100) == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vanilla", "block"])
def test_models_learn_the_sample(kind: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    h1 = unigram_entropy_nats(TEXT)
    if kind == "vanilla":
        spec = VanillaSpec(vocab_size=256, stack=STACK)
    else:
        spec = BlockSpec(vocab_size=256, block_length=4, prefix_length=2,
                         block_decoder=STACK, token_decoder=STACK)
    model = build_model(spec, seed=0)
    initial = math.log(256)
    final = train(model, steps=300, seq_len=64, batch=16, lr=3e-3)
    print(f"{kind}: unigram entropy {h1:.3f} nats, initial ~{initial:.3f}, final {final:.3f}")
    assert final < 0.7 * h1
