"""Vanilla decoder-only LM (GPT-NeoX / Llama family) built from a `VanillaSpec`.

Modules: ``embed_in`` (V x D), ``layers`` (`DecoderLayer`), ``final_norm``, ``lm_head``
(D -> V, no bias; tied to ``embed_in`` when ``spec.tie_embeddings``).

Public API
- ``model(input_ids, compute_loss=False) -> LMOutput``: training forward over ``[B, S]``, no
  cache; logits ``[B, S, V]``; loss = next-token cross-entropy (docs/model.md 1.7).
- ``setup_inference(batch, max_entries, mode)``: caches for one request (``mode`` "static" or
  "hf-legacy", see `reference.layers`); ``generate`` uses ``max_entries = S + G - 1``.
- ``prefill(input_ids) -> [B, 1, V]`` (static: LM head on the last position only) or
  ``[B, S, V]`` (hf-legacy: every prompt position, docs/model.md 2.1). Fills the caches, c = 0.
- ``decode_step(tokens [B, 1], c) -> [B, 1, V]``: one position at context c (c cached entries).
- ``decode_step_fixed(tokens [B, 1], pos) -> [B, 1, V]``: the fixed-shape step for compiling.
- ``generate(input_ids, max_new_tokens, temperature=0.0, generator=None, mode="static",
  compile=False, return_logits=False) -> Generation``: prefill (first new token from its last
  logits row), then G-1 one-token steps at c = S .. S+G-2; positions 0 .. S+G-2; no host
  synchronisation in the loop (docs/model.md 2.1).
- ``kv_cache_bytes()``: bytes held by the caches now (nominal, also on ``meta``).

Every phase enters the model through ``forward(..., phase=...)``, so module hooks such as
`FlopCounterMode`'s name submodules from the root (``layers.0.attn.core``, ``lm_head``); see
`reference.counting` for counting attention on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from costmodel.spec import VanillaSpec

from .layers import DecoderStack, InferenceMode, check_mode, init_weights
from .linear import Linear
from .sampling import Generation, compiled_step, decode_tokens


@dataclass
class LMOutput:
    logits: Tensor  # [B, S, V]
    loss: Tensor | None = None


class VanillaLM(DecoderStack):
    def __init__(self, spec: VanillaSpec) -> None:
        super().__init__(spec.stack)
        self.spec = spec
        d, v = spec.stack.d_model, spec.vocab_size
        self.embed_in = nn.Embedding(v, d)
        self.lm_head = Linear(d, v, bias=False)
        init_weights(self)
        if spec.tie_embeddings:
            self.lm_head.weight = self.embed_in.weight
        self.mode: InferenceMode = "static"
        self._compiled: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}

    # -- module entry -----------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor,
        compute_loss: bool = False,
        *,
        phase: str = "train",
        c: int = 0,
        pos: Tensor | None = None,
    ) -> Any:
        """Every phase enters through here, so module hooks (FlopCounterMode's module tracker)
        name submodules from this root: ``layers.0.attn.core``, ``lm_head``.

        phase "train" -> `LMOutput`; "prefill", "decode" (at c), "decode_fixed" (at pos) ->
        logits, as the public methods below describe.
        """
        if phase == "train":
            return self._train(input_ids, compute_loss)
        if phase == "prefill":
            h = self.run_layers(self.embed_in(input_ids), c=0, use_cache=True)
            return self.lm_head(h[:, -1:] if self.mode == "static" else h)
        if phase == "decode":
            return self.lm_head(self.run_layers(self.embed_in(input_ids), c=c, use_cache=True))
        if phase == "decode_fixed" and pos is not None:
            return self.lm_head(self.run_layers_fixed(self.embed_in(input_ids), pos))
        raise ValueError(f"phase: unknown phase {phase!r} or missing pos")

    def _train(self, input_ids: Tensor, compute_loss: bool) -> LMOutput:
        # input_ids: [B, S]
        h = self.run_layers(self.embed_in(input_ids))  # [B, S, D]
        logits = self.lm_head(h)  # [B, S, V]
        loss = None
        if compute_loss:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1)
            )
        return LMOutput(logits, loss)

    # -- inference phases -------------------------------------------------------------------
    @torch.inference_mode()
    def setup_inference(self, batch: int, max_entries: int, mode: InferenceMode = "static") -> None:
        self.mode = check_mode(mode)
        self.setup_cache(mode, batch, max_entries)

    @torch.inference_mode()
    def prefill(self, input_ids: Tensor) -> Tensor:
        # input_ids: [B, S] -> logits [B, 1, V] (static) or [B, S, V] (hf-legacy); c = 0
        return self(input_ids, phase="prefill")

    @torch.inference_mode()
    def decode_step(self, tokens: Tensor, c: int) -> Tensor:
        # tokens: [B, 1] at position c -> logits [B, 1, V]
        return self(tokens, phase="decode", c=c)

    def decode_step_fixed(self, tokens: Tensor, pos: Tensor) -> Tensor:
        # tokens: [B, 1]; pos: [1] long on the device -> logits [B, 1, V]
        return self(tokens, phase="decode_fixed", pos=pos)

    @torch.inference_mode()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        mode: InferenceMode = "static",
        compile: bool = False,
        return_logits: bool = False,
    ) -> Generation:
        b, s = input_ids.shape
        g = max_new_tokens
        if g < 1 or s < 1:
            raise ValueError("generate: need at least one prompt token and one new token")
        if compile and mode != "static":
            raise ValueError("generate: compile=True needs mode='static' (fixed cache shapes)")
        self.setup_inference(b, s + g - 1, mode)
        fixed = pos = None
        if compile:
            step = compiled_step(self._compiled, "decode", self.decode_step_fixed,
                                 input_ids.device)
            pos = torch.empty(1, dtype=torch.long, device=input_ids.device)

            def fixed(tokens: Tensor, at: Tensor) -> Tensor:
                return step(tokens, at)[:, -1]

        def eager(tokens: Tensor, c: int) -> Tensor:
            return self.decode_step(tokens, c)[:, -1]

        return decode_tokens(self.prefill(input_ids)[:, -1], g, s, eager, fixed, pos,
                             temperature, generator, return_logits)
