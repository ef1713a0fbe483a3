"""``blockroof simulate``: one load, or with ``--max-rate`` the highest rate meeting the SLO.

Registered by `costmodel.cli.build_parser` through a lazy import (costmodel never imports
serving at module import time). Bad input: one line ``error: <field>: <rule>``, exit status 2
(`costmodel.cli.main`). docs/serving.md 8 lists the options.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from costmodel.implementation import PROFILES

DIST_HELP = ("N, uniform:LO:HI or lognormal:MEDIAN:SIGMA[:MAX] (tokens; docs/serving.md 2)")


class _Bar:
    """A one-line progress indicator on stderr (only when stderr is a terminal or forced)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled = label, enabled

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if total:
            width = 30
            filled = int(width * done / total)
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                             f"{done}/{total}")
        else:
            sys.stderr.write(f"\r{self.label}: {done} runs")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _scheduler(args: argparse.Namespace):
    from pydantic import ValidationError

    from costmodel.errors import UserError, describe_validation_error, finite

    from .scheduler import SchedulerConfig

    if args.kv_gib is not None:  # an infinite pool means nothing (docs/reliability.md 2)
        finite("--kv-gib", args.kv_gib, lo=0, lo_open=True)
    try:
        return SchedulerConfig(policy=args.policy, max_running=args.max_running,
                               token_budget=args.token_budget, page_tokens=args.page_tokens,
                               memory_fraction=args.memory_fraction,
                               kv_capacity_bytes=args.kv_gib * 2**30 if args.kv_gib else None)
    except ValidationError as e:
        flags = {"max_running": "--max-running", "token_budget": "--token-budget",
                 "page_tokens": "--page-tokens", "memory_fraction": "--memory-fraction",
                 "kv_capacity_bytes": "--kv-gib"}
        raise UserError(describe_validation_error(e, rename=flags)) from None


def _slo(args: argparse.Namespace):
    from pydantic import ValidationError

    from costmodel.errors import UserError, describe_validation_error

    from .results import SLO

    try:
        return SLO(ttft_s=args.slo_ttft, tpot_s=args.slo_tpot, percentile=args.slo_percentile)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, rename={
            "ttft_s": "--slo-ttft", "tpot_s": "--slo-tpot",
            "percentile": "--slo-percentile"})) from None


def cmd_simulate(args: argparse.Namespace) -> None:
    from costmodel.cli import _finite, _load_model
    from costmodel.errors import UserError

    from .api import max_rate, simulate
    from .requests import check_duration, check_rate, parse_distribution, read_trace

    model = _load_model(args.model)
    sched, slo = _scheduler(args), _slo(args)
    prompt = parse_distribution(args.prompt_tokens, "--prompt-tokens")
    gen = parse_distribution(args.generated_tokens, "--generated-tokens")
    show = not args.no_progress and (args.progress or sys.stderr.isatty())
    if args.max_rate:
        if args.trace:
            raise UserError("--trace: --max-rate draws its own Poisson requests; drop --trace")
        if args.target_rate is not None:  # before the probes, not after them
            check_rate(args.target_rate, "--target-rate")
        bar = _Bar("max-rate probes", show)
        res = max_rate(model, args.hardware, prompt, gen, slo, requests=args.requests,
                       seed=args.seed, scheduler=sched, implementation=args.implementation,
                       dtype=args.dtype, progress=bar)
        bar.close()
        replicas = res.replicas_for(args.target_rate) if args.target_rate else None
        if args.json:
            out = res.model_dump(mode="json")
            if args.target_rate:
                out["target_rate_per_s"], out["replicas"] = args.target_rate, replicas
            print(json.dumps(_finite(out), indent=1))
            return
        print(f"{res.model} on {res.hardware}, prompt {res.prompt_tokens}, generated "
              f"{res.generated_tokens}, {res.requests_per_run} requests per probe")
        for p in res.probes:
            print(f"  rate {p.rate_per_s:10.4g}/s  p{slo.percentile:g} TTFT "
                  f"{p.ttft_at_slo_s:9.4g} s  TPOT {p.tpot_at_slo_s * 1e3:9.4g} ms  "
                  f"{'meets' if p.slo_met else 'misses'}"
                  f"{'' if p.sustainable else ' (queue grows)'}")
        print(res.answer)
        if args.target_rate:
            print(f"replicas for {args.target_rate:g} requests/s: "
                  f"{replicas if replicas is not None else 'none (no rate meets the SLO)'}")
        print(f"max rate per replica: {res.max_rate_per_s:.4g} requests/s")
        return
    if args.rate is None and not args.trace:
        raise UserError("--rate: give a request rate (requests/s), or --trace FILE")
    if args.rate is not None and not args.trace:
        check_rate(args.rate, "--rate")
        check_duration(args.duration, "--duration")
    trace = read_trace(args.trace) if args.trace else None
    for w in trace.warnings if trace else ():
        print(f"warning: {w}", file=sys.stderr)
    bar = _Bar("simulating", show)
    res = simulate(model, args.hardware, args.rate, prompt, gen, args.duration, args.seed,
                   trace=trace, scheduler=sched, slo=slo, implementation=args.implementation,
                   dtype=args.dtype, progress=bar)
    bar.close()
    if args.json:
        out = res.model_dump(mode="json")
        if not args.series:
            out.pop("series")
        print(json.dumps(_finite(out), indent=1))
        return
    print(f"{res.model} ({res.kind}) on {res.hardware}, {res.scheduler.policy}, "
          f"{res.trace}")
    print(f"  requests {res.requests} (completed {res.completed}, refused {res.rejected}), "
          f"preemptions {res.preemptions}, iterations {res.iterations}, "
          f"makespan {res.makespan_s:.4g} s")
    print(f"  {'':8s} {'mean':>10s} {'p50':>10s} {'p90':>10s} {'p95':>10s} {'p99':>10s}")
    for name, unit, scale in (("ttft_s", "s", 1.0), ("tpot_s", "ms", 1e3), ("e2e_s", "s", 1.0)):
        pc = getattr(res, name)
        vals = [pc.mean, pc.p50, pc.p90, pc.p95, pc.p99]
        print(f"  {name[:-2].upper() + ' ' + unit:8s} " + " ".join(f"{v * scale:10.4g}"
                                                                     for v in vals))
    print(f"  throughput {res.throughput_tokens_per_s:.4g} tokens/s, "
          f"{res.throughput_requests_per_s:.4g} requests/s; goodput "
          f"{res.goodput_requests_per_s:.4g} requests/s (TTFT <= {slo.ttft_s:g} s, TPOT <= "
          f"{slo.tpot_s * 1e3:g} ms)")
    print(f"  SLO p{slo.percentile:g}: {'met' if res.slo_met else 'missed'}; {res.verdict}")
    print(f"simulated {res.requests} requests in {res.wall_s:.3g} s wall "
          f"({res.makespan_s / max(res.wall_s, 1e-9):.4g}x real time)")


def register(sub: Any) -> None:
    """Add ``simulate`` to the `blockroof` parser's subparsers."""
    s = sub.add_parser("simulate", help="continuous-batching serving simulation; --max-rate "
                                        "for the highest rate meeting SLOs")
    s.add_argument("--model", required=True,
                   help="preset name, a spec .json, or a Hugging Face config.json")
    s.add_argument("--hardware", default="h100-sxm-80gb", help="hardware id or record .json")
    s.add_argument("--implementation", default="static", choices=list(PROFILES),
                   help="implementation profile (costmodel/implementation.py)")
    s.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"],
                   help="compute/storage dtype (default: the profile's, bf16)")
    s.add_argument("--rate", type=float, default=None, help="Poisson arrivals, requests/s")
    s.add_argument("--prompt-tokens", default="2048", help=DIST_HELP)
    s.add_argument("--generated-tokens", default="128", help=DIST_HELP)
    s.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--trace", default=None,
                   help="file of 'arrival_s prompt_tokens generated_tokens' lines instead of "
                        "Poisson arrivals")
    s.add_argument("--policy", default="prefill-first", choices=["prefill-first", "chunked"])
    s.add_argument("--max-running", type=int, default=256)
    s.add_argument("--token-budget", type=int, default=None,
                   help="tokens per iteration (default 8192 prefill-first, 2048 chunked)")
    s.add_argument("--page-tokens", type=int, default=16, help="KV entries per page")
    s.add_argument("--memory-fraction", type=float, default=0.9,
                   help="share of device memory for weights + KV cache")
    s.add_argument("--kv-gib", type=float, default=None, help="KV pool size, GiB (overrides)")
    s.add_argument("--slo-ttft", type=float, default=1.0, help="TTFT objective, s")
    s.add_argument("--slo-tpot", type=float, default=0.05, help="TPOT objective, s")
    s.add_argument("--slo-percentile", type=float, default=95.0)
    s.add_argument("--max-rate", action="store_true",
                   help="find the highest rate per replica meeting the SLO (bisection)")
    s.add_argument("--requests", type=int, default=1000, help="requests per --max-rate probe")
    s.add_argument("--target-rate", type=float, default=None,
                   help="with --max-rate: replicas needed for this many requests/s")
    s.add_argument("--series", action="store_true", help="--json: include the time series")
    s.add_argument("--json", action="store_true")
    s.add_argument("--progress", action="store_true", help="show progress even when piped")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_simulate)
