"""`Parallelism`: how one model is spread over GPUs (tensor and pipeline parallelism, replicas).

Megatron-style tensor parallelism over ``tp`` ranks (docs/parallelism.md 1):
- QKV, MLP gate/up: column-parallel (each rank holds H/tp query heads, F/tp MLP columns);
- attention dense, MLP down: row-parallel, followed by ONE all-reduce of the [B, q, D] output
  (``layers.attn.allreduce``, ``layers.mlp.allreduce``; GPT-NeoX's parallel residual also
  issues two, as our reference does). Row-parallel biases are held by every rank and added
  once (rank 0 in the reference).
- KV heads: with kv_heads >= tp each rank holds kv_heads/tp of them (tp must divide kv_heads);
  with kv_heads < tp, tp must be a multiple of kv_heads and each rank holds ONE KV head,
  replicated tp/kv_heads times (its query-head group is split), so the KV cache per GPU stops
  shrinking at one head.
- Embeddings (``embed_in``, the block ``embedder``): vocab-parallel, V/tp rows per rank, a
  masked lookup, then an all-reduce; the LM head: vocab-parallel V/tp columns, the logits
  all-gathered so every rank samples the same token (``lm_head.allgather``); the Block
  Transformer's expansion: column-parallel, all-gathered (``token_decoder.expansion.allgather``).
- Replicated on every rank: norms and the row-parallel biases.

Pipeline parallelism over ``pp`` stages (docs/parallelism.md 2): vanilla layers split in order,
the first N mod pp stages take ceil(N/pp) layers and the rest floor(N/pp); the embedding is on
the first stage, final norm and LM head on the last. A Block Transformer accepts pp = 2 only:
its natural split, block decoder (and embedder) | token decoder.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from .errors import UserError
from .spec import BlockSpec, StackSpec, VanillaSpec


class Parallelism(BaseModel, frozen=True, extra="forbid"):
    tp: int = Field(default=1, ge=1, description="tensor-parallel degree")
    pp: int = Field(default=1, ge=1, description="pipeline stages")
    replicas: int = Field(default=1, ge=1, description="independent copies of the model")

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.gpus_per_replica * self.replicas

    @property
    def sharded(self) -> bool:
        return self.tp > 1

    @property
    def pipelined(self) -> bool:
        return self.pp > 1

    def label(self) -> str:
        return f"tp{self.tp}-pp{self.pp}"


def get_parallelism(p: Parallelism | None) -> Parallelism:
    if p is None:
        return Parallelism()
    if not isinstance(p, Parallelism):
        raise UserError(f"parallelism: expected a Parallelism, got {type(p).__name__}")
    return p


def kv_heads_per_rank(kv_heads: int, tp: int) -> int:
    """KV heads each rank holds (one, replicated, when kv_heads < tp)."""
    return max(kv_heads // tp, 1)


def _check_stack(where: str, st: StackSpec, tp: int) -> None:
    if st.n_heads % tp:
        raise UserError(f"tp: {tp} must divide the query heads of every stack "
                        f"({where} has n_heads={st.n_heads})")
    k = st.kv_heads
    if k % tp and tp % k:
        raise UserError(f"tp: {tp} must divide the KV heads or be a multiple of them "
                        f"({where} has kv_heads={k})")
    if st.d_ffn % tp:
        raise UserError(f"tp: {tp} must divide the MLP width ({where} has d_ffn={st.d_ffn})")


def check_parallelism(spec: VanillaSpec | BlockSpec, par: Parallelism) -> None:
    """Raise UserError naming the field and the rule when `par` cannot shard `spec`."""
    tp, pp = par.tp, par.pp
    if spec.vocab_size % tp:
        raise UserError(f"tp: {tp} must divide the vocabulary ({spec.vocab_size}) for the "
                        "vocab-parallel embedding and LM head")
    if isinstance(spec, VanillaSpec):
        _check_stack("the model", spec.stack, tp)
        if pp > spec.stack.n_layers:
            raise UserError(f"pp: {pp} stages exceed the layer count ({spec.stack.n_layers})")
        return
    _check_stack("block_decoder", spec.block_decoder, tp)
    _check_stack("token_decoder", spec.token_decoder, tp)
    width = spec.prefix_length * spec.token_decoder.d_model
    if width % tp:
        raise UserError(f"tp: {tp} must divide the expansion output prefix_length x d_model "
                        f"of the token decoder ({width})")
    if pp > 2:
        raise UserError(f"pp: a Block Transformer is pipelined as block decoder | token "
                        f"decoder, so pp must be 1 or 2, got {pp}")
