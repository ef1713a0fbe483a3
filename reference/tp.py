"""Tensor parallelism on torch.distributed: shard a full model in place (gpt-fast style).

`shard_model(model, rank, world)` slices the FULL weights of a built `VanillaLM` / `BlockLM`
(so a TP=2 run can be compared with the TP=1 model it came from) into rank `rank`'s share and
installs the collectives, Megatron style (docs/parallelism.md 1):

- ``attn.qkv`` column-parallel by KV head group: rank r holds H/tp query heads and
  max(K/tp, 1) KV heads (with K < tp, each rank holds one KV head, replicated tp/K times, and
  its part of that head's query group); ``attn.dense`` row-parallel over those heads;
- ``mlp.gate``/``mlp.up`` column-parallel, ``mlp.down`` row-parallel;
- after ``attn`` and after ``mlp`` one all-reduce of the [B, q, D] output
  (``layers.attn.allreduce``, ``layers.mlp.allreduce``; two per layer also with GPT-NeoX's
  parallel residual). A row-parallel bias is kept by rank 0 only (zeros elsewhere), so the
  all-reduced sum adds it once;
- ``embed_in`` and the block ``embedder``: vocab-parallel (rows r V/tp .. (r+1) V/tp); ids
  outside the shard are clamped, looked up, masked to zero, and the result all-reduced
  (``embed_in.allreduce``, ``embedder.allreduce``);
- ``lm_head``: vocab-parallel columns, logits all-gathered along the vocabulary
  (``lm_head.allgather``), so every rank samples the same token;
- ``token_decoder.expansion``: column-parallel, all-gathered
  (``token_decoder.expansion.allgather``).

Every collective goes through `all_reduce` / `all_gather` below, which tell the listeners of
`collective_listener` its op name (the cost model's, layer index dropped) and the tensor bytes
(all-reduce: the tensor reduced; all-gather: the gathered result) before it runs; a listener
may return a context manager, entered around the collective's own work (the communication and,
for an all-gather, the concatenation of the parts), so a counter can attribute that work to the
collective's op. On the ``meta`` device no communication happens (shapes only), so a sharded
model can be counted in one process.

Run (CPU, gloo, 2 ranks; CUDA uses NCCL)::

    torchrun --standalone --nproc-per-node 2 -m reference.tp --model vanilla_70 --prompt 16 --generate 8
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from costmodel.parallel import Parallelism, check_parallelism, kv_heads_per_rank

from .attention import Attention
from .block import BlockLM, Embedder
from .layers import DecoderStack
from .linear import Linear
from .vanilla import VanillaLM

# a listener: fn(op_name, tensor_bytes), returning None or a context manager for the work
Listener = Callable[[str, int], "contextlib.AbstractContextManager[object] | None"]
_LISTENERS: list[Listener] = []


@contextlib.contextmanager
def collective_listener(fn: Listener) -> Iterator[None]:
    """Call ``fn(op_name, tensor_bytes)`` for every collective issued inside the block; a
    context manager it returns is entered around that collective's own work."""
    _LISTENERS.append(fn)
    try:
        yield
    finally:
        _LISTENERS.remove(fn)


@contextlib.contextmanager
def _issued(name: str, nbytes: int) -> Iterator[None]:
    """Tell the listeners of collective `name` of `nbytes`; its work runs in their scopes."""
    with contextlib.ExitStack() as scopes:
        for fn in list(_LISTENERS):
            scope = fn(name, nbytes)
            if scope is not None:
                scopes.enter_context(scope)
        yield


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def all_reduce(x: Tensor, name: str, group: dist.ProcessGroup | None) -> Tensor:
    """Sum `x` over the ranks (in place); on meta only the record."""
    with _issued(name, _nbytes(x)):
        if x.device.type != "meta":
            dist.all_reduce(x, group=group)
    return x


def all_gather(x: Tensor, name: str, world: int, group: dist.ProcessGroup | None) -> Tensor:
    """Concatenate every rank's `x` along the last dimension (rank order): the collective
    gathers the parts, then one ``torch.cat`` lays them out (on meta: the same cat)."""
    with _issued(name, world * _nbytes(x)):
        if x.device.type == "meta":
            parts = [x] * world
        else:
            parts = [torch.empty_like(x) for _ in range(world)]
            dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=-1)


def op_path(path: str) -> str:
    """Module path without layer indices (``layers.3.attn`` -> ``layers.attn``)."""
    return re.sub(r"\.\d+(?=\.|$)", "", path)


class ParallelEmbedding(nn.Embedding):
    """Vocab-parallel lookup: rows lo .. lo + n of the full table, masked, all-reduced."""

    def setup(self, lo: int, name: str, group: dist.ProcessGroup | None) -> None:
        self.lo, self.op, self.group = lo, name, group

    def forward(self, ids: Tensor) -> Tensor:
        return _masked_lookup(ids, self.weight, self.lo, self.op, self.group)


class ParallelEmbedder(Embedder):
    """The block embedder (lookup + concat, docs/model.md 1.2) with a vocab-parallel table."""

    def setup(self, lo: int, name: str, group: dist.ProcessGroup | None) -> None:
        self.lo, self.op, self.group = lo, name, group

    def forward(self, block_ids: Tensor) -> Tensor:
        b, t = block_ids.shape
        if t % self.block_length:
            raise ValueError(f"embedder: {t} tokens is not a multiple of L_B={self.block_length}")
        e = _masked_lookup(block_ids, self.weight, self.lo, self.op, self.group)
        return e.view(b, t // self.block_length, self.block_length * e.shape[-1])


def _masked_lookup(ids: Tensor, weight: Tensor, lo: int, name: str,
                   group: dist.ProcessGroup | None) -> Tensor:
    n = weight.shape[0]
    local = ids - lo
    inside = (local >= 0) & (local < n)
    e = F.embedding(local.clamp(0, n - 1), weight)  # [..., width]
    e = e * inside.unsqueeze(-1).to(e.dtype)
    return all_reduce(e, name, group)


def _rows(t: Tensor, lo: int, hi: int) -> Tensor:
    return t[lo:hi].clone()


def _param(t: Tensor) -> nn.Parameter:
    return nn.Parameter(t.contiguous(), requires_grad=False)


def _column(lin: nn.Linear, lo: int, hi: int) -> None:
    """Keep output features lo..hi (column-parallel)."""
    lin.weight = _param(_rows(lin.weight.data, lo, hi))
    if lin.bias is not None:
        lin.bias = _param(_rows(lin.bias.data, lo, hi))
    lin.out_features = hi - lo


def _row(lin: nn.Linear, lo: int, hi: int, rank: int) -> None:
    """Keep input features lo..hi (row-parallel); the bias stays on rank 0 only."""
    lin.weight = _param(lin.weight.data[:, lo:hi].clone())
    if lin.bias is not None and rank != 0:
        lin.bias = _param(torch.zeros_like(lin.bias.data))
    lin.in_features = hi - lo


def _qkv_rows(attn: Attention, rank: int, world: int) -> list[int]:
    """Rows of the fused QKV weight ([q_1..q_G | k | v] per KV head, `reference.attention`)
    that rank `rank` keeps, in the order its own layout expects."""
    k, dh = attn.kv_heads, attn.head_dim
    g = attn.n_heads // k
    if k >= world:
        per = k // world
        lo = rank * per * (g + 2) * dh
        return list(range(lo, lo + per * (g + 2) * dh))
    rep = world // k  # ranks sharing one KV head
    head, part = divmod(rank, rep)
    g_r = g // rep
    base = head * (g + 2) * dh
    q = range(base + part * g_r * dh, base + (part + 1) * g_r * dh)
    kv = range(base + g * dh, base + (g + 2) * dh)
    return [*q, *kv]


def _shard_attention(attn: Attention, rank: int, world: int) -> None:
    rows = torch.tensor(_qkv_rows(attn, rank, world), device=attn.qkv.weight.device)
    attn.qkv.weight = _param(attn.qkv.weight.data.index_select(0, rows))
    if attn.qkv.bias is not None:
        attn.qkv.bias = _param(attn.qkv.bias.data.index_select(0, rows))
    attn.qkv.out_features = len(rows)
    h_r = attn.n_heads // world
    _row(attn.dense, rank * h_r * attn.head_dim, (rank + 1) * h_r * attn.head_dim, rank)
    attn.n_heads, attn.kv_heads = h_r, kv_heads_per_rank(attn.kv_heads, world)


def _allreduce_hook(name: str, group: dist.ProcessGroup | None):
    def hook(module: nn.Module, args: object, out: Tensor) -> Tensor:
        return all_reduce(out, name, group)
    return hook


def _allgather_hook(name: str, world: int, group: dist.ProcessGroup | None):
    def hook(module: nn.Module, args: object, out: Tensor) -> Tensor:
        return all_gather(out, name, world, group)
    return hook


def _shard_stack(stack: DecoderStack, prefix: str, rank: int, world: int,
                 group: dist.ProcessGroup | None) -> None:
    s = stack.stack_spec
    f_r = s.d_ffn // world
    for layer in stack.layers:
        _shard_attention(layer.attn, rank, world)
        layer.attn.register_forward_hook(_allreduce_hook(prefix + "layers.attn.allreduce", group))
        mlp = layer.mlp
        for name in ("gate", "up"):
            if hasattr(mlp, name):
                _column(getattr(mlp, name), rank * f_r, (rank + 1) * f_r)
        _row(mlp.down, rank * f_r, (rank + 1) * f_r, rank)
        layer.mlp.register_forward_hook(_allreduce_hook(prefix + "layers.mlp.allreduce", group))
    # caches are sized from the spec: one rank's heads
    stack.stack_spec = type(s).model_validate(
        s.model_dump() | {"n_heads": s.n_heads // world, "head_dim": s.dh, "d_ffn": f_r,
                          "n_kv_heads": kv_heads_per_rank(s.kv_heads, world)})


def _vocab_parallel_embedding(emb: nn.Embedding, rank: int, world: int, name: str,
                              group: dist.ProcessGroup | None) -> ParallelEmbedding:
    n = emb.weight.shape[0] // world
    new = ParallelEmbedding(n, emb.weight.shape[1], device="meta")
    new.weight = _param(_rows(emb.weight.data, rank * n, (rank + 1) * n))
    new.setup(rank * n, name, group)
    return new


def _shard_head(lm_head: Linear, rank: int, world: int, name: str,
                group: dist.ProcessGroup | None) -> None:
    n = lm_head.out_features // world
    _column(lm_head, rank * n, (rank + 1) * n)
    lm_head.register_forward_hook(_allgather_hook(name, world, group))


def shard_model(model: VanillaLM | BlockLM, rank: int, world: int,
                group: dist.ProcessGroup | None = None) -> VanillaLM | BlockLM:
    """Shard `model` (full weights, any device) in place for rank `rank` of `world`."""
    spec = model.spec
    check_parallelism(spec, Parallelism(tp=world))
    if world == 1:
        return model
    if isinstance(model, VanillaLM):
        tied = spec.tie_embeddings
        model.embed_in = _vocab_parallel_embedding(model.embed_in, rank, world,
                                                   "embed_in.allreduce", group)
        _shard_stack(model, "", rank, world, group)
        if tied:
            model.lm_head.weight = model.embed_in.weight
            model.lm_head.out_features = model.embed_in.weight.shape[0]
            model.lm_head.register_forward_hook(_allgather_hook("lm_head.allgather", world,
                                                                group))
        else:
            _shard_head(model.lm_head, rank, world, "lm_head.allgather", group)
        return model
    emb = model.embedder
    n = emb.weight.shape[0] // world
    new = ParallelEmbedder(n, emb.weight.shape[1], emb.block_length)
    new.weight = _param(_rows(emb.weight.data, rank * n, (rank + 1) * n))
    new.setup(rank * n, "embedder.allreduce", group)
    model.embedder = new
    _shard_stack(model.block_decoder, "block_decoder.", rank, world, group)
    td = model.token_decoder
    n_out = td.expansion.out_features // world
    _column(td.expansion, rank * n_out, (rank + 1) * n_out)
    td.expansion.register_forward_hook(
        _allgather_hook("token_decoder.expansion.allgather", world, group))
    td.embed_in = _vocab_parallel_embedding(td.embed_in, rank, world,
                                            "token_decoder.embed_in.allreduce", group)
    _shard_stack(td, "token_decoder.", rank, world, group)
    _shard_head(td.lm_head, rank, world, "token_decoder.lm_head.allgather", group)
    return model


def init_process_group(timeout_s: float = 60.0) -> tuple[int, int]:
    """torchrun's environment -> (rank, world); NCCL on CUDA, gloo on CPU."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    rank, world = dist.get_rank(), dist.get_world_size()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    return rank, world


def main(argv: list[str] | None = None) -> None:
    """Greedy generation of a preset with tensor parallelism over the torchrun ranks."""
    from costmodel.presets import get_preset

    from .build import build_model

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--model", default="vanilla_70")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--generate", type=int, default=8)
    p.add_argument("--mode", default="static", choices=["static", "hf-legacy"])
    args = p.parse_args(argv)
    rank, world = init_process_group()
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    spec = get_preset(args.model)
    model = build_model(spec, device=device, dtype=dtype, seed=0)  # same full weights everywhere
    shard_model(model, rank, world)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, spec.vocab_size, (args.batch, args.prompt), generator=gen)
    out = model.generate(ids.to(device), args.generate, mode=args.mode)
    if rank == 0:
        print(f"{args.model} tp={world}: tokens {out.tokens.tolist()}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
