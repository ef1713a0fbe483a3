"""``blockroof validate serve``: a real continuous-batching loop vs the serving simulator.

For each preset and rate: one seeded Poisson trace (`serving.poisson_trace`) is served by
`validation.serve_loop` (the reference on this CPU, fp32, 1 thread) and simulated by
`serving.simulate` with the calibrated CPU record and the same slots, token budget and
policy (prefill-first, an ample KV pool: docs/serving.md 9). Compared: TTFT and TPOT at p50
and p95, and throughput (generated tokens per second of makespan); errors are
(simulated - measured) / measured.

Writes, atomically, under --out (default validation/results/serve-cpu/):
- ``dataset.jsonl``: one record per run: the settings, the environment (load average before
  and after), per-request arrival, prompt and generated tokens, measured and simulated
  first-token and finish times;
- ``summary.json`` and ``report.md``: the comparison table and the mean absolute errors.
Last line printed: ``serve errors: TTFT p50 X% p95 Y%, TPOT p50 Z% p95 W%, throughput V%``
(mean absolute over the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from costmodel.errors import UserError, finite

ROOT = Path(__file__).resolve().parent.parent
CPU_RECORD = ROOT / "validation/results/cpu/hardware/cpu-amd-epyc-1t-measured-20261128-calibrated.json"
DEFAULT_OUT = ROOT / "validation/results/serve-cpu"
DEFAULT_MODELS = ("vanilla_70", "block_main_b4_19")
# fractions of the saturation rate of the machine as measured at run time: light, medium, near
DEFAULT_FRACTIONS = (0.2, 0.5, 0.85)
METRICS = ("ttft_p50", "ttft_p95", "tpot_p50", "tpot_p95", "throughput")


def slowed(hw: Any, factor: float) -> Any:
    """The same record running `factor` times slower: every rate / factor and every fixed
    overhead x factor, so each predicted time (linear in 1/pi, 1/beta and the overheads,
    costmodel.roofline) scales by exactly `factor`. Used for the contention-rescaled view."""
    from costmodel.hardware import Hardware

    d = hw.model_dump()
    d["id"] = f"{hw.id}-x{factor:.2f}"
    d["peak"] = {k: (v / factor if v else v) for k, v in d["peak"].items()}
    d["memory_bandwidth_GBps"] /= factor
    if d.get("measured"):
        m = d["measured"]
        m["matmul_TFLOPs"] = {k: v / factor for k, v in m["matmul_TFLOPs"].items()}
        if m.get("memory_bandwidth_GBps"):
            m["memory_bandwidth_GBps"] /= factor
    e = d["efficiency"]
    e["kernel_overhead_s"] *= factor
    e["forward_overhead_s"] *= factor
    return Hardware.model_validate(d)


def contention_factor(model: Any, spec: Any, hw: Any, prompt: int, generate: int,
                      seed: int) -> tuple[float, float, float]:
    """Measured / predicted time of one isolated request (batch 1, `generate` of the
    reference): how much slower the shared machine runs now than the calibrated record says.
    Returns (factor, measured_s, predicted_s)."""
    import torch

    from costmodel import Workload, estimate
    from costmodel.implementation import get_implementation

    ids = torch.randint(0, spec.vocab_size, (1, prompt),
                        generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        model.generate(ids, min(generate, 4))
        t0 = time.perf_counter()
        model.generate(ids, generate)
        measured = time.perf_counter() - t0
    pred = estimate(spec, hw, Workload(batch=1, prompt_tokens=prompt, generated_tokens=generate),
                    get_implementation("static", "fp32")).request_time_s
    return measured / pred, measured, pred


def _stats(arrival, first, finish, gen) -> dict[str, float]:
    ttft = first - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(gen > 1, (finish - first) / (gen - 1), np.nan)
    tpot = tpot[np.isfinite(tpot)]
    makespan = float(np.max(finish) - np.min(arrival))
    return {"ttft_p50": float(np.percentile(ttft, 50)), "ttft_p95": float(np.percentile(ttft, 95)),
            "tpot_p50": float(np.percentile(tpot, 50)), "tpot_p95": float(np.percentile(tpot, 95)),
            "throughput": float(gen.sum()) / makespan}


def run_one(model_name: str, rate: float, args: argparse.Namespace,
            rate_fraction: float | None = None) -> dict[str, Any]:
    """One served trace vs the simulator; with `rate_fraction`, the rate is that fraction of
    the saturation rate of the machine as measured now (contention included)."""
    import torch

    from costmodel import Workload, estimate
    from costmodel.hardware import get_hardware
    from costmodel.implementation import get_implementation
    from costmodel.presets import get_preset
    from reference.build import build_model
    from serving import SchedulerConfig
    from serving.predictor import build_predictor
    from serving.requests import poisson_trace
    from serving.simulator import Simulator

    from .env import environment
    from .serve_loop import measure

    spec = get_preset(model_name)
    hw = get_hardware(str(args.hardware))
    impl = get_implementation("static", "fp32")
    model = build_model(spec, "cpu", torch.float32, seed=0)
    f_before, gen_meas, gen_pred = contention_factor(model, spec, hw, args.prompt,
                                                     args.generate, args.seed)
    if rate_fraction is not None:
        # a fraction of the saturation rate of the machine as it runs now: all slots busy,
        # requests/s = slots / request time at batch = slots (rescaled record)
        est = estimate(spec, slowed(hw, f_before), Workload(
            batch=args.slots, prompt_tokens=args.prompt, generated_tokens=args.generate), impl)
        rate = round(rate_fraction * args.slots / est.request_time_s, 3)
    duration = args.requests / rate if args.requests else args.duration
    trace = poisson_trace(rate, duration, args.prompt, args.generate, args.seed)
    # warm-up: a short burst, discarded
    n_w = min(args.slots, 4)
    measure(model, np.zeros(n_w), np.full(n_w, args.prompt), np.full(n_w, 4), args.slots,
            args.token_budget)
    model = build_model(spec, "cpu", torch.float32, seed=0)
    env_before = environment("cpu", "fp32")
    reqs, wall, iters = measure(model, trace.arrival_s, trace.prompt_tokens,
                                trace.generated_tokens, args.slots, args.token_budget,
                                seed=args.seed)
    load_after = round(os.getloadavg()[0], 2)
    f_after = contention_factor(build_model(spec, "cpu", torch.float32, seed=0), spec, hw,
                                args.prompt, args.generate, args.seed)[0]
    factor = (f_before + f_after) / 2
    sched = SchedulerConfig(policy="prefill-first", max_running=args.slots,
                            token_budget=args.token_budget, page_tokens=1,
                            kv_capacity_bytes=1e15)
    arr = trace.arrival_s
    m_first = np.array([r.first_s for r in reqs])
    m_finish = np.array([r.finish_s for r in reqs])
    gen = trace.generated_tokens
    measured = _stats(arr, m_first, m_finish, gen)
    raw = Simulator(build_predictor(spec, hw, impl), trace, sched).run()
    simulated = _stats(arr, raw.first_token_s, raw.finish_s, gen)
    raw_c = Simulator(build_predictor(spec, slowed(hw, factor), impl), trace, sched).run()
    rescaled = _stats(arr, raw_c.first_token_s, raw_c.finish_s, gen)
    errors_c = {k: 100 * (rescaled[k] - measured[k]) / measured[k] for k in METRICS}
    errors = {k: 100 * (simulated[k] - measured[k]) / measured[k] for k in METRICS}
    return {
        "model": model_name, "kind": spec.kind, "rate_per_s": rate, "requests": len(trace),
        "duration_s": duration, "prompt_tokens": args.prompt,
        "generated_tokens": args.generate, "seed": args.seed, "slots": args.slots,
        "token_budget": args.token_budget, "policy": "prefill-first",
        "hardware_record": Path(str(args.hardware)).name, "wall_s": round(wall, 3),
        "iterations_measured": iters, "iterations_simulated": raw.iterations,
        "measured": measured, "simulated": simulated, "error_pct": errors,
        "contention_factor": {"before": f_before, "after": f_after, "used": factor,
                              "isolated_generate_measured_s": gen_meas,
                              "isolated_generate_predicted_s": gen_pred},
        "rate_fraction_of_saturation": rate_fraction,
        "simulated_rescaled": rescaled, "error_rescaled_pct": errors_c,
        "env": env_before | {"loadavg_1m_after": load_after},
        "per_request": {"arrival_s": arr.tolist(), "prompt_tokens": trace.prompt_tokens.tolist(),
                        "generated_tokens": gen.tolist(),
                        "measured_first_s": m_first.tolist(),
                        "measured_finish_s": m_finish.tolist(),
                        "simulated_first_s": raw.first_token_s.tolist(),
                        "simulated_finish_s": raw.finish_s.tolist(),
                        "simulated_rescaled_first_s": raw_c.first_token_s.tolist(),
                        "simulated_rescaled_finish_s": raw_c.finish_s.tolist()},
    }


def _table(records: list[dict[str, Any]], sim_key: str, err_key: str) -> list[str]:
    head = ("| model | rate/s | requests | load 1m | slowdown | TTFT p50 meas / sim (s) | "
            "TTFT p95 meas / sim (s) | TPOT p50 meas / sim (ms) | TPOT p95 meas / sim (ms) | "
            "throughput meas / sim (tok/s) |")
    lines = [head, "|" + " --- |" * 10]
    for r in records:
        def cell(k: str, scale: float = 1.0, r: dict[str, Any] = r) -> str:
            m, s, e = r["measured"][k], r[sim_key][k], r[err_key][k]
            return f"{m * scale:.3g} / {s * scale:.3g} ({e:+.0f}%)"

        lines.append(f"| {r['model']} | {r['rate_per_s']:.3g} | {r['requests']} | "
                     f"{r['env'].get('loadavg_1m', float('nan')):.1f}-"
                     f"{r['env']['loadavg_1m_after']:.1f} | "
                     f"{r['contention_factor']['used']:.2f} | {cell('ttft_p50')} | "
                     f"{cell('ttft_p95')} | {cell('tpot_p50', 1e3)} | {cell('tpot_p95', 1e3)} | "
                     f"{cell('throughput')} |")
    return lines


def mean_abs_errors(records: list[dict[str, Any]], key: str = "error_pct") -> dict[str, float]:
    return {k: float(np.mean([abs(r[key][k]) for r in records])) for k in METRICS}


def _line(rec: dict[str, Any]) -> str:
    m, s, c = rec["measured"], rec["simulated"], rec["simulated_rescaled"]

    def trio(k: str, scale: float = 1.0) -> str:
        return f"{m[k] * scale:.3g}/{s[k] * scale:.3g}/{c[k] * scale:.3g}"

    return (f"{rec['model']:17s} rate {rec['rate_per_s']:6.3g}/s {rec['requests']:4d} req "
            f"load {rec['env'].get('loadavg_1m')}-{rec['env']['loadavg_1m_after']} slowdown "
            f"{rec['contention_factor']['used']:.2f}  measured/simulated/rescaled: TTFT p50 "
            f"{trio('ttft_p50')} p95 {trio('ttft_p95')} s; TPOT p50 {trio('tpot_p50', 1e3)} "
            f"p95 {trio('tpot_p95', 1e3)} ms; throughput {trio('throughput')} tok/s")


def write_results(out: Path, records: list[dict[str, Any]]) -> None:
    from .dataset import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".dataset.jsonl.tmp"
    with tmp.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, out / "dataset.jsonl")
    mae = mean_abs_errors(records)
    mae_c = mean_abs_errors(records, "error_rescaled_pct")
    summary = {"mean_abs_error_pct": mae, "mean_abs_error_rescaled_pct": mae_c,
               "runs": [{k: r[k] for k in ("model", "rate_per_s", "requests", "measured",
                                            "simulated", "error_pct", "simulated_rescaled",
                                            "error_rescaled_pct", "contention_factor",
                                            "rate_fraction_of_saturation", "wall_s")}
                        | {"loadavg_1m": [r["env"].get("loadavg_1m"),
                                          r["env"]["loadavg_1m_after"]]} for r in records]}
    write_json_atomic(out / "summary.json", summary)
    r0 = records[0]
    text = [
        "# Serving under load on this CPU: measured continuous batching vs the simulator", "",
        f"Produced by `blockroof validate serve` ({r0['env']['date']}, torch "
        f"{r0['env']['torch']}, {r0['env']['threads']} thread, fp32, git "
        f"{r0['env'].get('git_commit')}). Each run: a seeded Poisson trace (about "
        f"{r0['requests']} requests), prompt {r0['prompt_tokens']} / generated "
        f"{r0['generated_tokens']} tokens, {r0['slots']} slots, token budget "
        f"{r0['token_budget']}, prefill-first; served by `validation/serve_loop.py` and "
        f"simulated by `serving` with the calibrated record `{r0['hardware_record']}`. "
        "Errors are (simulated - measured) / measured. The load columns give the machine's "
        "1-minute load average before and after each run (2 cores, shared with other jobs: "
        "contention slows the measured side and the simulator cannot know it).", "",
        "## Simulator with the calibrated CPU record as it is", "",
        *_table(records, "simulated", "error_pct"), "",
        "Mean absolute error over the runs: " + ", ".join(
            f"{k} {v:.0f}%" for k, v in mae.items()) + ".", "",
        "## Simulator with the record rescaled by the contention measured at run time", "",
        "Slowdown = measured / predicted time of one isolated request (the reference's own "
        "`generate`, batch 1) timed just before and just after the run, averaged; the record's "
        "rates are divided by it and its overheads multiplied (every predicted time scales by "
        "exactly that factor). This separates the simulator's batching and queueing from the "
        "machine being slower than when it was calibrated.", "",
        *_table(records, "simulated_rescaled", "error_rescaled_pct"), "",
        "Mean absolute error over the runs: " + ", ".join(
            f"{k} {v:.0f}%" for k, v in mae_c.items()) + ".", "",
        "See docs/serving.md 9 for the method and what the errors mean.", ""]
    tmp = out / ".report.md.tmp"
    tmp.write_text("\n".join(text))
    os.replace(tmp, out / "report.md")


def cmd_serve(args: argparse.Namespace) -> None:
    import torch

    from costmodel.hardware import get_hardware

    if args.threads < 1:
        raise UserError(f"--threads: must be >= 1, got {args.threads}")
    if args.requests < 0:
        raise UserError(f"--requests: must be >= 0, got {args.requests}")
    for name, v in (("--duration", args.duration), ("--prompt", args.prompt),
                    ("--generate", args.generate), ("--slots", args.slots),
                    ("--token-budget", args.token_budget)):
        if not v > 0:
            raise UserError(f"{name}: must be > 0, got {v}")
    if args.duration > 3600:
        raise UserError(f"--duration: at most 3600 s per run, got {args.duration:g}")
    get_hardware(str(args.hardware))  # fail early on a bad record
    torch.set_num_threads(args.threads)
    rates = [finite("--rates", x, lo=0, lo_open=True) for x in args.rates.split(",")] \
        if args.rates else None
    models = args.models.split(",") if args.models else list(DEFAULT_MODELS)
    runs = [(m, r, None) for m in models for r in rates] if rates else \
        [(m, 0.0, f) for m in models for f in DEFAULT_FRACTIONS]
    records = []
    for m, r, frac in runs:
        t0 = time.perf_counter()
        rec = run_one(m, r, args, frac)
        records.append(rec)
        print(_line(rec) + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.out:
        write_results(Path(args.out), records)
        print(f"wrote {args.out}/dataset.jsonl, summary.json, report.md")
    mae = mean_abs_errors(records)
    mae_c = mean_abs_errors(records, "error_rescaled_pct")
    print("contention-rescaled: " + ", ".join(f"{k} {v:.0f}%" for k, v in mae_c.items()))
    print(f"serve errors: TTFT p50 {mae['ttft_p50']:.0f}% p95 {mae['ttft_p95']:.0f}%, TPOT p50 "
          f"{mae['tpot_p50']:.0f}% p95 {mae['tpot_p95']:.0f}%, throughput "
          f"{mae['throughput']:.0f}%")


def register(vs: Any) -> None:
    s = vs.add_parser("serve", help="a real continuous-batching loop over the reference vs "
                                    "the serving simulator (this CPU)")
    s.add_argument("--models", default=None,
                   help="comma-separated presets (default: vanilla_70,block_main_b4_19)")
    s.add_argument("--rates", default=None,
                   help="comma-separated requests/s (default: 0.2, 0.5 and 0.85 of the "
                        "saturation rate of the machine as measured at run time)")
    s.add_argument("--requests", type=int, default=30,
                   help="expected requests per run: arrivals last requests / rate seconds "
                        "(0: use --duration)")
    s.add_argument("--duration", type=float, default=30.0,
                   help="seconds of arrivals per run when --requests is 0")
    s.add_argument("--prompt", type=int, default=64)
    s.add_argument("--generate", type=int, default=32)
    s.add_argument("--slots", type=int, default=8, help="running requests at most")
    s.add_argument("--token-budget", type=int, default=512)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--hardware", default=str(CPU_RECORD),
                   help="record for the simulator (default: the calibrated CPU record)")
    s.add_argument("--out", default=str(DEFAULT_OUT))
    s.set_defaults(func=cmd_serve)
