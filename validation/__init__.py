"""Validation of the cost model against the PyTorch reference (docs/design.md, validation loop).

- `validation.tracing`, `validation.count`: exact FLOPs, weight bytes and KV bytes of the
  reference per (phase, op), compared with the cost model's executed counts (must be equal);
  ``blockroof validate count``.
- `validation.microbench`: achievable matmul FLOP/s and memory bandwidth -> a measured
  `costmodel.hardware.Hardware` record.
- `validation.suites`, `validation.measure`: timed per-phase runs of the reference (median,
  spread, memory, max batch) appended to a JSONL dataset (`validation.dataset`).
- `validation.predict`, `validation.calibrate`, `validation.report`: predictions, fitted
  efficiencies on a train split, held-out errors, plots.
- `validation.pipeline`: ``blockroof validate run`` (microbench -> measure -> calibrate ->
  report); `validation/gpu_run.sh` is the one command for a GPU machine.

Imports torch (and reference); `costmodel` never imports this package.
"""
