"""Block Transformer with a prefix token decoder (docs/model.md 1.2-1.5, 1.7, 2.2), from a `BlockSpec`.

Modules (cost-model operator names):
- ``embedder``: lookup table V x (D_b / L_B) owned directly (``embedder.weight``); the L_B
  embeddings of a block are concatenated, in token order, into one D_b vector (docs/model.md 1.2).
- ``block_decoder``: ``layers``, ``final_norm`` over block positions (docs/model.md 1.3). The official
  code's unused ``embed_in`` table is not allocated.
- ``token_decoder``: ``expansion`` (Linear D_b -> P * D_t, with bias), ``embed_in`` (V x D_t),
  ``layers``, ``final_norm``, ``lm_head`` (D_t -> V, no bias, untied) (docs/model.md 1.4, 1.5).

Public API (`BlockLM`)
- ``model(input_ids [B, n * L_B], compute_loss=False) -> BlockLMOutput``: training forward of
  docs/model.md 1.7: the context embedding of block i (block decoder output after final_norm) decodes
  the tokens of block i+1; token-decoder logits ``[B, n-1, L_B, V]``.
- ``pad_prompt(input_ids, pad_id=0)``: left-pad ``[B, S]`` to ``[B, ceil(S / L_B) * L_B]``.
- ``setup_inference(batch, n_prompt_blocks, n_gen_blocks, mode)``: block-decoder cache of
  ``n_p + n_g - 1`` blocks, token-decoder local cache of ``P + L_B - 1`` entries.
- ``embed(block_ids [B, n * L_B]) -> [B, n, D_b]``: the embedder.
- ``block_decode(x [B, n, D_b], c) -> [B, D_b]``: block decoder over n new block positions after c
  cached ones (prefill: n = n_p, c = 0; step: n = 1); returns the last context embedding.
- ``token_prefix(ctx) -> [B, V]``, ``token_step(tokens [B, 1], c) -> [B, V]``: the token decoder's
  two forward kinds (c = local cache entries).
- ``generate_block(ctx [B, D_b], n_tokens, ...) -> Generation``: the token decoder for one block:
  expansion to P prefix vectors, one forward over them (c = 0) that emits token 1 from the last
  prefix position, then single-token forwards k = 2..n_tokens at local c = P + k - 2; positions
  0 .. P + L_B - 2 (docs/model.md 2.4, training convention); the local cache restarts every block.
- ``generate(input_ids, max_new_tokens, temperature=0.0, generator=None, pad_id=0,
  mode="static", compile=False, return_logits=False) -> Generation``: docs/model.md 2.2. One embedder
  call over the n_p prompt blocks; for generated block j = 0..n_g-1: block decoder (j = 0: the
  n_p-block prefill; else one block at c = n_p + j - 1), ``generate_block`` (L_B tokens, the last
  block G - (n_g - 1) L_B), and, except after the last block, the embedder on the new block.
- ``kv_cache_bytes()``: bytes held by both decoders' caches now (nominal, also on ``meta``).

As in `reference.vanilla`, every phase enters through ``forward(..., phase=...)`` so that module
hooks name submodules from the root (``token_decoder.layers.0.attn.core``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import ceil
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from costmodel.spec import BlockSpec

from .layers import DecoderStack, InferenceMode, check_mode, init_weights
from .linear import Linear
from .sampling import Generation, compiled_step, decode_tokens


class Embedder(nn.Module):
    """Lookup + concat (docs/model.md 1.2): ``[B, n * L_B]`` token ids -> ``[B, n, L_B * width]``."""

    def __init__(self, vocab_size: int, width: int, block_length: int) -> None:
        super().__init__()
        self.block_length = block_length
        self.weight = nn.Parameter(torch.empty(vocab_size, width))

    def forward(self, block_ids: Tensor) -> Tensor:
        b, t = block_ids.shape
        if t % self.block_length:
            raise ValueError(f"embedder: {t} tokens is not a multiple of L_B={self.block_length}")
        e = F.embedding(block_ids, self.weight)  # [B, n * L_B, width]
        return e.view(b, t // self.block_length, self.block_length * e.shape[-1])


class BlockDecoder(DecoderStack):
    """Decoder over block embeddings; its output after final_norm is the context embedding."""

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, n, D_b] -> [B, n, D_b], causal over blocks, no cache
        return self.run_layers(x)


class TokenDecoder(DecoderStack):
    """Local decoder over ``[p_1 .. p_P, emb(x_1) .. emb(x_{L_B-1})]`` of one block."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__(spec.token_decoder)
        d_b, d_t = spec.block_decoder.d_model, spec.token_decoder.d_model
        self.prefix_length = spec.prefix_length
        self.expansion = Linear(d_b, spec.prefix_length * d_t)
        self.embed_in = nn.Embedding(spec.vocab_size, d_t)
        self.lm_head = Linear(d_t, spec.vocab_size, bias=False)

    def expand(self, ctx: Tensor) -> Tensor:
        # ctx: [M, D_b] -> prefix vectors [M, P, D_t] (docs/model.md 1.4)
        return self.expansion(ctx).view(ctx.shape[0], self.prefix_length, -1)

    def forward(self, ctx: Tensor, tokens: Tensor) -> Tensor:
        """No-cache logits ``[M, t+1, V]`` of positions P-1 .. P+t-1 for tokens ``[M, t]``.

        Row i predicts token i+1 of the block; training uses t = L_B - 1 (docs/model.md 1.4).
        """
        x = torch.cat([self.expand(ctx), self.embed_in(tokens)], dim=1)  # [M, P+t, D_t]
        h = self.run_layers(x)
        return self.lm_head(h[:, self.prefix_length - 1 :])

    def prefix_forward(self, ctx: Tensor) -> Tensor:
        # ctx: [B, D_b] -> logits [B, V] of the last prefix position; local cache restarts (c=0)
        h = self.run_layers(self.expand(ctx), c=0, use_cache=True)  # [B, P, D_t]
        return self.lm_head(h[:, -1])

    def decode_step(self, tokens: Tensor, c: int) -> Tensor:
        # tokens: [B, 1] at local position c -> logits [B, V]
        return self.lm_head(self.run_layers(self.embed_in(tokens), c=c, use_cache=True)[:, -1])

    def decode_step_fixed(self, tokens: Tensor, pos: Tensor) -> Tensor:
        # tokens: [B, 1]; pos: [1] long on the device -> logits [B, V]
        return self.lm_head(self.run_layers_fixed(self.embed_in(tokens), pos)[:, -1])


@dataclass
class BlockLMOutput:
    logits: Tensor  # [B, n-1, L_B, V]: block i+1's tokens decoded from context i
    contexts: Tensor  # [B, n, D_b]
    loss: Tensor | None = None


class BlockLM(nn.Module):
    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.block_length = spec.block_length
        self.embedder = Embedder(spec.vocab_size, spec.embedder_width, spec.block_length)
        self.block_decoder = BlockDecoder(spec.block_decoder)
        self.token_decoder = TokenDecoder(spec)
        init_weights(self)
        nn.init.normal_(self.embedder.weight, 0.0, 0.02)
        nn.init.normal_(self.token_decoder.expansion.weight, 0.0, spec.block_decoder.d_model**-0.5)
        self.mode: InferenceMode = "static"
        self._compiled: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}

    # -- module entry -----------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        compute_loss: bool = False,
        *,
        phase: str = "train",
        c: int = 0,
        pos: Tensor | None = None,
    ) -> Any:
        """Every phase enters through here, so module hooks (FlopCounterMode's module tracker)
        name submodules from this root (``block_decoder.layers.0.attn.core``, ...).

        phase "train" -> `BlockLMOutput`; "embed" -> ``[B, n, D_b]``; "block" (at c) and
        "block_fixed" (at pos) -> context ``[B, D_b]``; "token_prefix" (x = context) and
        "token_step" (x = tokens ``[B, 1]`` at local c), "token_step_fixed" -> logits ``[B, V]``.
        """
        if phase == "train":
            return self._train(x, compute_loss)
        if phase == "embed":
            return self.embedder(x)
        if phase == "block":
            return self.block_decoder.run_layers(x, c=c, use_cache=True)[:, -1]
        if phase == "token_prefix":
            return self.token_decoder.prefix_forward(x)
        if phase == "token_step":
            return self.token_decoder.decode_step(x, c)
        if pos is not None:
            if phase == "block_fixed":
                return self.block_decoder.run_layers_fixed(x, pos)[:, -1]
            if phase == "token_step_fixed":
                return self.token_decoder.decode_step_fixed(x, pos)
        raise ValueError(f"phase: unknown phase {phase!r} or missing pos")

    def _train(self, input_ids: Tensor, compute_loss: bool) -> BlockLMOutput:
        # input_ids: [B, n * L_B] (docs/model.md 1.7)
        b, t = input_ids.shape
        lb, n = self.block_length, t // self.block_length
        if n < 2:
            raise ValueError("forward: need at least two blocks (block 0 is never predicted)")
        contexts = self.block_decoder(self.embedder(input_ids))  # [B, n, D_b]
        ctx = contexts[:, :-1].reshape(b * (n - 1), -1)  # context i decodes block i+1
        targets = input_ids.view(b, n, lb)[:, 1:].reshape(b * (n - 1), lb)  # [M, L_B]
        logits = self.token_decoder(ctx, targets[:, :-1])  # [M, L_B, V]
        loss = None
        if compute_loss:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return BlockLMOutput(logits.view(b, n - 1, lb, -1), contexts, loss)

    # -- inference phases -------------------------------------------------------------------
    def pad_prompt(self, input_ids: Tensor, pad_id: int = 0) -> Tensor:
        """Left-pad ``[B, S]`` with ``pad_id`` to a multiple of L_B (docs/model.md 2.2 step 1)."""
        pad = -input_ids.shape[1] % self.block_length
        return F.pad(input_ids, (pad, 0), value=pad_id) if pad else input_ids

    @torch.inference_mode()
    def setup_inference(
        self, batch: int, n_prompt_blocks: int, n_gen_blocks: int, mode: InferenceMode = "static"
    ) -> None:
        self.mode = check_mode(mode)
        self.block_decoder.setup_cache(mode, batch, n_prompt_blocks + n_gen_blocks - 1,
                                       role="block_decoder")
        self.token_decoder.setup_cache(mode, batch, self.spec.local_cache_entries,
                                       role="token_decoder")

    @torch.inference_mode()
    def embed(self, block_ids: Tensor) -> Tensor:
        # block_ids: [B, n * L_B] -> [B, n, D_b]
        return self(block_ids, phase="embed")

    @torch.inference_mode()
    def block_decode(self, x: Tensor, c: int) -> Tensor:
        # x: [B, n, D_b] new block positions after c cached -> last context embedding [B, D_b]
        return self(x, phase="block", c=c)

    def block_decode_fixed(self, x: Tensor, pos: Tensor) -> Tensor:
        # x: [B, 1, D_b]; pos: [1] long on the device -> [B, D_b]
        return self(x, phase="block_fixed", pos=pos)

    @torch.inference_mode()
    def token_prefix(self, ctx: Tensor) -> Tensor:
        # ctx: [B, D_b] -> logits [B, V] of the last prefix position (local cache restarts)
        return self(ctx, phase="token_prefix")

    @torch.inference_mode()
    def token_step(self, tokens: Tensor, c: int) -> Tensor:
        # tokens: [B, 1] at local position c -> logits [B, V]
        return self(tokens, phase="token_step", c=c)

    def token_step_fixed(self, tokens: Tensor, pos: Tensor) -> Tensor:
        return self(tokens, phase="token_step_fixed", pos=pos)

    @torch.inference_mode()
    def generate_block(
        self,
        ctx: Tensor,
        n_tokens: int,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        compile: bool = False,
        return_logits: bool = False,
        pos: Tensor | None = None,
    ) -> Generation:
        """Token decoder for one block from its context embedding ``[B, D_b]`` (docs/model.md 2.2).

        ``pos`` (compile only) is a reusable device index tensor; one is made if not given.
        """
        if not 1 <= n_tokens <= self.block_length:
            raise ValueError(f"generate_block: n_tokens must be in 1..{self.block_length}")
        fixed = None
        if compile:
            fixed = compiled_step(self._compiled, "token_decoder", self.token_step_fixed,
                                  ctx.device)
            if pos is None:
                pos = torch.empty(1, dtype=torch.long, device=ctx.device)
        return decode_tokens(self.token_prefix(ctx), n_tokens, self.spec.prefix_length,
                             self.token_step, fixed, pos, temperature, generator, return_logits)

    @torch.inference_mode()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        pad_id: int = 0,
        mode: InferenceMode = "static",
        compile: bool = False,
        return_logits: bool = False,
    ) -> Generation:
        b, s = input_ids.shape
        lb, g = self.block_length, max_new_tokens
        if g < 1 or s < 1:
            raise ValueError("generate: need at least one prompt token and one new token")
        if compile and mode != "static":
            raise ValueError("generate: compile=True needs mode='static' (fixed cache shapes)")
        n_p, n_g = ceil(s / lb), ceil(g / lb)
        self.setup_inference(b, n_p, n_g, mode)
        device = input_ids.device
        out = input_ids.new_empty(b, g)
        dtype = self.token_decoder.final_norm.weight.dtype  # lm_head may be quantised
        all_logits = contexts = None
        if return_logits:
            all_logits = torch.empty(b, g, self.spec.vocab_size, device=device, dtype=dtype)
            d_b = self.spec.block_decoder.d_model
            contexts = torch.empty(b, n_g, d_b, device=device, dtype=dtype)
        if compile:
            block_step = compiled_step(self._compiled, "block_decoder", self.block_decode_fixed,
                                       device)
            block_pos = torch.full((1,), n_p, dtype=torch.long, device=device)
            token_pos = torch.empty(1, dtype=torch.long, device=device)

        x = self.embed(self.pad_prompt(input_ids, pad_id))  # [B, n_p, D_b]
        for j in range(n_g):
            if j == 0:
                ctx = self.block_decode(x, 0)  # prefill over the n_p prompt blocks
            elif compile:
                ctx = block_step(x, block_pos)
                block_pos += 1
            else:
                ctx = self.block_decode(x, n_p + j - 1)  # [B, D_b]
            n_tok = min(lb, g - j * lb)
            blk = self.generate_block(
                ctx, n_tok, temperature, generator, compile=compile,
                return_logits=return_logits, pos=token_pos if compile else None,
            )
            out[:, j * lb : j * lb + n_tok] = blk.tokens
            if all_logits is not None and contexts is not None and blk.logits is not None:
                all_logits[:, j * lb : j * lb + n_tok] = blk.logits
                contexts[:, j] = ctx
            if j < n_g - 1:
                x = self.embed(blk.tokens)  # [B, 1, D_b]: the next block-decoder input
        return Generation(out, all_logits, contexts)

    def kv_cache_bytes(self) -> int:
        return self.block_decoder.kv_cache_bytes() + self.token_decoder.kv_cache_bytes()
