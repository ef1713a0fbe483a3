"""What is asked of a model: batch, prompt and generated lengths (docs/model.md 5.1 settings)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

# Counts are cast to float64 for the formulas (docs/reliability.md 2): above 2^53 a float64
# no longer holds every whole number, and above ~1.8e308 the cast fails.
MAX_WHOLE = 2**53
PositiveInt = Annotated[int, Field(gt=0, le=MAX_WHOLE)]


class Workload(BaseModel, frozen=True, extra="forbid"):
    batch: PositiveInt | Literal["max"] = 1
    prompt_tokens: PositiveInt = 2048
    generated_tokens: PositiveInt = 128
    memory_reserve_bytes: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="device memory kept free when sizing the max batch"
    )


# The paper's two settings (docs/model.md 5.1): prefill-heavy and decode-heavy.
PREFILL_HEAVY = Workload(batch="max", prompt_tokens=2048, generated_tokens=128)
DECODE_HEAVY = Workload(batch="max", prompt_tokens=128, generated_tokens=2048)


# What a sweep reports when no metrics are named (the API's `sweep` and `blockroof sweep`).
DEFAULT_SWEEP_METRICS = ("throughput_tokens_per_s", "request_time_s", "ttft_s", "tpot_s",
                         "memory_bytes_per_sample", "max_batch")
