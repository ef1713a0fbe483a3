"""A real continuous-batching server over the reference models, to validate `serving`.

Policy: the simulator's ``prefill-first`` (serving/scheduler.py, docs/serving.md 4): at every
iteration, FCFS admission of waiting requests while a running slot is free and the prompts fit
the token budget; if any were admitted the iteration is their prefill (one forward per prompt
length), otherwise one decode step of every running request. A finished request frees its slot
(eviction) at once. Slots are rows of static KV buffers sized for the longest request, so the
KV pool never runs out and the simulator is run with the same slots and an ample pool (no
preemption on either side).

Mechanics. The reference models are used as they are; only each attention layer's
``kv_cache`` and ``core`` modules are swapped for slot-aware ones (`SlotCache`, `SlotCore`):
- prefill of k requests of equal prompt length: the normal cached forward (batch k, c = 0);
  the cache writes its k rows of the slot buffers;
- a decode step of n requests with different contexts: the n tokens go through the stack as ONE
  sequence of n positions ``[1, n, D]`` via the reference's fixed-shape path
  (`DecoderStack.run_layers_fixed` with per-token positions, so rotary uses each token's own
  position and every linear reads its weights once), while attention puts each token back in
  its own row: keys ``[n, K, n_keys, dh]`` of its slot under a per-row mask, n_keys = the
  longest context in the step (so attention reads up to that context, not the buffer).
- Block Transformer: per iteration the requests at a block boundary run the embedder and one
  block-decoder step (their rows of the block-decoder buffers) and the token decoder's prefix
  forward (their local rows, c = 0); the others run one token-decoder step at local position
  P + (g mod L_B) - 1 (docs/model.md 2.2). Three forwards, as the simulator times them.

Times are wall-clock (`time.perf_counter`) per request: TTFT = first token - scheduled
arrival, TPOT = (finish - first token) / (G - 1); every forward ends in an argmax read on the
host, so times are those of completed work. Greedy decoding of random prompts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from costmodel.spec import BlockSpec, VanillaSpec
from reference.block import BlockLM
from reference.layers import DecoderStack
from reference.vanilla import VanillaLM


@dataclass
class StackSlots:
    """Which slot rows the next forward of one stack touches, and how many keys it reads."""

    rows: Tensor | slice = field(default_factory=lambda: slice(0, 0))
    n_keys: int = 0
    decode: bool = False  # the one-sequence-of-n-tokens step (update_at + SlotCore)


class SlotCache(nn.Module):
    """One layer's keys and values for every slot: buffers ``[slots, K, T_max, dh]``."""

    def __init__(self, st: StackSlots, slots: int, t_max: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.st = st
        self.k = torch.zeros(slots, kv_heads, t_max, head_dim, dtype=dtype)
        self.v = torch.zeros_like(self.k)

    def update(self, k: Tensor, v: Tensor, c: int) -> tuple[Tensor, Tensor]:
        # prefill path: k, v [b, K, q, dh] of the rows st.rows, after c cached entries
        q = k.shape[2]
        self.k[self.st.rows, :, c:c + q] = k
        self.v[self.st.rows, :, c:c + q] = v
        if c == 0:
            return k, v
        return self.k[self.st.rows, :, :c + q], self.v[self.st.rows, :, :c + q]

    def update_at(self, k: Tensor, v: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        # decode path: k, v [1, K, n, dh], one new token per row at its own position pos [n]
        rows = self.st.rows
        idx = torch.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        self.k[idx, :, pos] = k[0].transpose(0, 1)  # [n, K, dh]
        self.v[idx, :, pos] = v[0].transpose(0, 1)
        n = self.st.n_keys
        return self.k[rows, :, :n], self.v[rows, :, :n]  # [n, K, n_keys, dh]

    def move(self, src: int, dst: int) -> None:
        self.k[dst] = self.k[src]
        self.v[dst] = self.v[src]


class SlotCore(nn.Module):
    """Attention core: the reference's for prefill; per-row attention for the decode step."""

    def __init__(self, st: StackSlots, core: nn.Module) -> None:
        super().__init__()
        self.st, self.inner = st, core

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                cached: bool = False) -> Tensor:
        if not self.st.decode:
            return self.inner(q, k, v, mask, cached=cached)
        # q: [1, H, n, dh] (n tokens of n rows); k, v: [n, K, n_keys, dh]; mask [n, T_max]
        n, n_k = k.shape[0], k.shape[2]
        qq = q[0].transpose(0, 1).unsqueeze(2)  # [n, H, 1, dh]
        m = mask[:, :n_k].view(n, 1, 1, n_k) if mask is not None else None
        out = F.scaled_dot_product_attention(qq, k, v, attn_mask=m,
                                             enable_gqa=k.shape[1] != qq.shape[1])
        return out.squeeze(2).transpose(0, 1).unsqueeze(0)  # [1, H, n, dh]


def install_slots(stack: DecoderStack, slots: int, t_max: int) -> tuple[StackSlots,
                                                                          list[SlotCache]]:
    """Swap every layer's cache and core of `stack` for slot-aware ones."""
    s = stack.stack_spec
    dtype = stack.final_norm.weight.dtype
    st = StackSlots()
    caches = []
    for layer in stack.layers:
        cache = SlotCache(st, slots, t_max, s.kv_heads, s.dh, dtype)
        layer.attn.kv_cache = cache
        layer.attn.core = SlotCore(st, layer.attn.core)
        caches.append(cache)
    stack.rope(t_max)
    return st, caches


@dataclass
class ServedRequest:
    arrival_s: float
    prompt: Tensor  # [S] token ids
    generated_tokens: int
    g: int = 0
    tokens: list[int] | None = None
    first_s: float = float("nan")
    finish_s: float = float("nan")


class SlotServer:
    """The loop (module docstring) for one reference model."""

    def __init__(self, model: VanillaLM | BlockLM, slots: int, max_prompt: int,
                 max_generated: int, token_budget: int) -> None:
        self.model, self.slots, self.budget = model, slots, token_budget
        self.block = isinstance(model, BlockLM)
        spec: VanillaSpec | BlockSpec = model.spec
        if self.block:
            lb = spec.block_length
            n_p, n_g = -(-max_prompt // lb), -(-max_generated // lb)
            self.bst, bc = install_slots(model.block_decoder, slots, n_p + n_g)
            self.tst, tc = install_slots(model.token_decoder, slots, spec.local_cache_entries)
            self.caches = bc + tc
        else:
            self.vst, self.caches = install_slots(model, slots, max_prompt + max_generated)

    # -- forwards --------------------------------------------------------------------------
    def _prefill(self, reqs: list[ServedRequest], row0: int) -> Tensor:
        """Prefill of equal-length prompts into rows row0..; returns their first tokens."""
        ids = torch.stack([r.prompt for r in reqs])  # [k, S]
        rows = slice(row0, row0 + len(reqs))
        m = self.model
        if not self.block:
            self.vst.rows, self.vst.decode = rows, False
            return m(ids, phase="prefill")[:, -1].argmax(-1)
        self.bst.rows, self.bst.decode = rows, False
        self.tst.rows, self.tst.decode = rows, False
        x = m.embedder(m.pad_prompt(ids))  # [k, n_p, D_b]
        ctx = m.block_decoder.run_layers(x, c=0, use_cache=True)[:, -1]  # [k, D_b]
        return m.token_decoder.prefix_forward(ctx).argmax(-1)

    def _decode(self, run: list[ServedRequest]) -> Tensor:
        m, n = self.model, len(run)
        g = torch.tensor([r.g for r in run])
        last = torch.tensor([r.tokens[-1] for r in run])  # type: ignore[index]
        if not self.block:
            pos = torch.tensor([int(r.prompt.numel()) for r in run]) + g - 1  # cached entries
            self.vst.rows, self.vst.decode, self.vst.n_keys = slice(0, n), True, int(pos.max()) + 1
            h = m.run_layers_fixed(m.embed_in(last.view(1, n)), pos)  # [1, n, D]
            return m.lm_head(h)[0].argmax(-1)
        lb, P = m.block_length, m.spec.prefix_length
        out = torch.empty(n, dtype=torch.long)
        at_b = (g % lb) == 0
        b_idx, t_idx = at_b.nonzero().view(-1), (~at_b).nonzero().view(-1)
        if len(b_idx):
            blocks = torch.tensor([run[i].tokens[-lb:] for i in b_idx.tolist()])  # [nb, L_B]
            n_p = torch.tensor([-(-int(run[i].prompt.numel()) // lb) for i in b_idx.tolist()])
            bpos = n_p + g[b_idx] // lb - 1  # block-decoder context n_p + j - 1
            self.bst.rows, self.bst.decode, self.bst.n_keys = b_idx, True, int(bpos.max()) + 1
            x = m.embedder(blocks).view(1, len(b_idx), -1)  # [1, nb, D_b]
            ctx = m.block_decoder.run_layers_fixed(x, bpos)[0]  # [nb, D_b]
            self.tst.rows, self.tst.decode = b_idx, False
            out[b_idx] = m.token_decoder.prefix_forward(ctx).argmax(-1)
        if len(t_idx):
            td = m.token_decoder
            lpos = P + g[t_idx] % lb - 1  # local position of the fed token
            self.tst.rows, self.tst.decode, self.tst.n_keys = t_idx, True, int(lpos.max()) + 1
            h = td.run_layers_fixed(td.embed_in(last[t_idx].view(1, -1)), lpos)
            out[t_idx] = td.lm_head(h)[0].argmax(-1)
        return out

    # -- the loop --------------------------------------------------------------------------
    @torch.inference_mode()
    def serve(self, reqs: list[ServedRequest], clock=time.perf_counter,
              sleep=time.sleep) -> int:
        """Serve `reqs` (arrival_s relative to the start); returns iterations run."""
        waiting: list[ServedRequest] = []
        run: list[ServedRequest] = []
        nxt, left, iters = 0, len(reqs), 0
        t0 = clock()
        while left:
            now = clock() - t0
            while nxt < len(reqs) and reqs[nxt].arrival_s <= now:
                waiting.append(reqs[nxt])
                nxt += 1
            if not run and not waiting:
                sleep(max(0.0, reqs[nxt].arrival_s - (clock() - t0)))
                continue
            batch, tokens = [], 0
            while waiting and len(run) + len(batch) < self.slots:
                tok = int(waiting[0].prompt.numel())
                if batch and tokens + tok > self.budget:
                    break
                batch.append(waiting.pop(0))
                tokens += tok
            if batch:
                emitted = []
                by_len: dict[int, list[ServedRequest]] = {}
                for r in batch:
                    by_len.setdefault(int(r.prompt.numel()), []).append(r)
                for group in by_len.values():
                    first = self._prefill(group, len(run))
                    for r, tk in zip(group, first.tolist(), strict=True):
                        r.tokens = [tk]
                    run.extend(group)
                    emitted.extend(group)
            else:
                nxt_tok = self._decode(run)
                for r, tk in zip(run, nxt_tok.tolist(), strict=True):
                    r.tokens.append(tk)  # type: ignore[union-attr]
                emitted = list(run)
            t = clock() - t0
            iters += 1
            for r in emitted:
                r.g += 1
                if r.g == 1:
                    r.first_s = t
                if r.g >= r.generated_tokens:
                    r.finish_s = t
            left -= self._evict(run)
        return iters

    def _evict(self, run: list[ServedRequest]) -> int:
        """Free the slots of finished requests: the last row moves into each hole."""
        gone = 0
        i = 0
        while i < len(run):
            if run[i].g >= run[i].generated_tokens:
                last = len(run) - 1
                if i != last:
                    for c in self.caches:
                        c.move(last, i)
                run[i] = run[last]
                run.pop()
                gone += 1
            else:
                i += 1
        return gone


def measure(model: VanillaLM | BlockLM, arrival_s: np.ndarray, prompt_tokens: np.ndarray,
            generated_tokens: np.ndarray, slots: int, token_budget: int,
            seed: int = 0) -> tuple[list[ServedRequest], float, int]:
    """Serve a trace; returns the requests (with times), wall seconds and iterations."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.spec.vocab_size
    reqs = [ServedRequest(float(a), torch.randint(0, vocab, (int(s),), generator=gen), int(g))
            for a, s, g in zip(arrival_s, prompt_tokens, generated_tokens, strict=True)]
    server = SlotServer(model, slots, int(prompt_tokens.max()), int(generated_tokens.max()),
                        token_budget)
    t0 = time.perf_counter()
    iters = server.serve(reqs)
    return reqs, time.perf_counter() - t0, iters
