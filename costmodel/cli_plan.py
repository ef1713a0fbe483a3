"""`blockroof plan`: capacity planning with a (tp, pp, batch, replicas) search.

    blockroof plan --model examples/configs/llama-2-70b.json --hardware h100-sxm-80gb \
        --tokens-per-minute 1e6 --tpot-ms 50 --price-per-gpu-hour 2.5

Target: ``--tokens-per-s`` or ``--tokens-per-minute`` (generated tokens of the whole fleet);
optional ``--tpot-ms`` bound and ``--price-per-gpu-hour``. The layout is searched over every
(tp, pp) with tp x pp <= ``--max-gpus-per-replica`` unless ``--tp``/``--pp`` fix it
(costmodel.capacity, docs/parallelism.md 5).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .errors import UserError


def cmd_plan(args: argparse.Namespace) -> None:
    from .capacity import plan_capacity
    from .cli import (
        _dump,
        _hardware,
        _implementation,
        _load_model,
        _parallelism,
        _print_table,
        _workload,
    )

    if args.tokens_per_s is not None and args.tokens_per_minute is not None:
        raise UserError("--tokens-per-s/--tokens-per-minute: give one of them, not both")
    target = args.tokens_per_s
    if args.tokens_per_minute is not None:
        if not args.tokens_per_minute > 0:
            raise UserError(f"--tokens-per-minute: must be > 0, got {args.tokens_per_minute}")
        target = args.tokens_per_minute / 60.0
    bound = None if args.tpot_ms is None else args.tpot_ms * 1e-3
    fixed = args.tp is not None or args.pp is not None
    if fixed:
        args.tp, args.pp = args.tp or 1, args.pp or 1
    args.batch = "1"
    plan = plan_capacity(
        _load_model(args.model), _hardware(args), _workload(args), _implementation(args),
        target_tokens_per_s=target, tpot_bound_s=bound, price_per_gpu_hour=args.price_per_gpu_hour,
        parallelism=_parallelism(args) if fixed else "search",
        max_gpus_per_replica=args.max_gpus_per_replica, use_bound=args.bound,
    )
    if args.json:
        _dump(plan.model_dump())
        return
    print(f"{plan.model} on {plan.hardware} ({plan.implementation}), prompt {plan.prompt_tokens},"
          f" generate {plan.generated_tokens}")
    target_txt = ("none" if plan.target_tokens_per_s is None
                  else f"{plan.target_tokens_per_s:.6g} tokens/s")
    bound_txt = "none" if plan.tpot_bound_s is None else f"{plan.tpot_bound_s * 1e3:g} ms"
    print(f"target {target_txt}, TPOT bound {bound_txt}")
    print(f"basis: {plan.basis}")
    print(f"chosen: {plan.reason}")
    print(f"  GPUs {plan.gpus} = {plan.replicas} replicas x {plan.gpus_per_replica} "
          f"(tp {plan.tp} x pp {plan.pp})")
    print(f"  TPOT {plan.tpot_s * 1e3:.4g} ms, TTFT {plan.ttft_s:.4g} s, "
          f"{plan.throughput_tokens_per_s_per_replica:.6g} tokens/s per replica, "
          f"{plan.throughput_tokens_per_s_total:.6g} in total")
    print(f"  memory per GPU {plan.memory_bytes_per_gpu / 2**30:.2f} GiB")
    if plan.cost_per_hour is not None:
        print(f"  cost {plan.cost_per_hour:.4g} per hour, {plan.cost_per_million_tokens:.4g} per "
              "million tokens (replicas busy)")
    print()
    rows = [{"tp": o.tp, "pp": o.pp, "batch": o.batch if o.batch is not None else "-",
             "tpot_ms": o.tpot_s * 1e3 if o.tpot_s is not None else "-",
             "gpus": o.gpus if o.gpus is not None else "-", "verdict": o.verdict}
            for o in plan.layouts]
    _print_table(rows, ["tp", "pp", "batch", "tpot_ms", "gpus", "verdict"])


def register(sub, workload_args: Callable[[argparse.ArgumentParser], None]) -> None:
    s = sub.add_parser("plan", help="GPUs, layout (tp, pp), batch and cost for a serving target")
    s.add_argument("--model", required=True,
                   help="preset name, a spec .json, or a Hugging Face config.json")
    workload_args(s)
    from .cli import precision_args

    precision_args(s)
    s.add_argument("--prompt", type=int, default=2048, help="prompt tokens")
    s.add_argument("--generate", type=int, default=128, help="generated tokens")
    s.add_argument("--reserve-gib", type=float, default=0.0, help="memory kept free, GiB")
    s.add_argument("--tokens-per-s", type=float, default=None,
                   help="generated tokens per second of the whole fleet")
    s.add_argument("--tokens-per-minute", type=float, default=None,
                   help="generated tokens per minute of the whole fleet")
    s.add_argument("--tpot-ms", type=float, default=None, help="bound on time per output token")
    s.add_argument("--price-per-gpu-hour", type=float, default=None)
    s.add_argument("--tp", type=int, default=None, help="fix the tensor-parallel degree")
    s.add_argument("--pp", type=int, default=None, help="fix the pipeline stages")
    s.add_argument("--max-gpus-per-replica", type=int, default=8)
    s.add_argument("--bound", action="store_true",
                   help="plan on the pure roofline even where a calibration record exists "
                        "(default: the calibrated expectation where there is one)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_plan)
