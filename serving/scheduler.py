"""Scheduler policy and KV-memory limits of the simulated server (docs/serving.md 4).

Policies, both iteration-level (continuous batching, as vLLM and Orca run it):

- ``prefill-first`` (vLLM's default scheduler before chunked prefill): at every iteration the
  waiting queue is served first, in arrival order (FCFS, preempted requests at its head). If
  at least one waiting request can be admitted (a free running slot, its KV pages free, its
  prompt within the token budget; the first one is always within it), the iteration is a
  prefill of the admitted requests only, and the running decodes wait; otherwise it is one
  decode step of every running request.
- ``chunked`` (chunked prefill, Sarathi-Serve / vLLM v1): every iteration runs every running
  decode (one token each) and fills the rest of the token budget with prompt chunks, first of
  requests already part-way through their prompt, then of newly admitted ones (FCFS). A
  Block Transformer's prompt is chunked in whole blocks (L_B tokens of budget each).

KV memory is the admission limit: paged allocation, `page_tokens` entries per page, per
sequence ceil(entries / page_tokens) pages of the growing cache (vanilla: one entry per token;
Block Transformer: one block-decoder entry per block) plus, for a Block Transformer, its
token decoder's local cache (P + L_B - 1 entries, fixed). The pool is
memory_fraction x device memory - weights (vLLM's gpu_memory_utilization), or
`kv_capacity_bytes` if given. Before each iteration every running sequence must hold pages
for the entries it will have after that iteration; when they do not fit, the newest running
request is preempted by recompute (vLLM's default): its pages are freed and it returns to the
head of the waiting queue; on readmission its prompt plus the tokens generated so far are
prefilled again, which also yields its next token.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

Policy = Literal["prefill-first", "chunked"]

DEFAULT_TOKEN_BUDGET: dict[str, int] = {"prefill-first": 8192, "chunked": 2048}


class SchedulerConfig(BaseModel, frozen=True, extra="forbid"):
    policy: Policy = "prefill-first"
    max_running: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=256, description="running requests at most (vLLM max_num_seqs)")
    token_budget: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None, description="tokens per iteration (vLLM max_num_batched_tokens); "
        "default 8192 prefill-first, 2048 chunked")
    page_tokens: Annotated[int, Field(ge=1, le=65536)] = Field(
        default=16, description="KV entries per page (vLLM block_size)")
    memory_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.9, description="share of device memory for weights and KV cache")
    kv_capacity_bytes: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="KV pool size; overrides memory_fraction")

    @property
    def budget(self) -> int:
        return self.token_budget or DEFAULT_TOKEN_BUDGET[self.policy]
