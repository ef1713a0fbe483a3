"""``blockroof validate count|ops|run``: imported by `costmodel.cli` only when ``validate`` is the
command (its `COMMAND_MODULES` registry), which then calls `register`.

count: the reference counted on the meta device against the cost model, op by op
(`validation.count`); prints the per-op table and, last, ``count mismatches: K``.
``--model all``, ``--implementation both`` (static, hf-legacy) or ``all`` (every profile) and ``--paper-settings`` (2048/128 and 128/2048,
docs/model.md 5.1) loop; the last line is then the total.

run: the whole loop (`validation.pipeline`); last line ``held-out MAPE decode: X% prefill: Y%``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from costmodel.errors import UserError, describe_validation_error, finite
from costmodel.flags import conflict, whole
from costmodel.implementation import PROFILES

PAPER_SETTINGS = ((2048, 128), (128, 2048))


def _models(text: str) -> list[Any]:
    """``all`` (the ten presets) or comma-separated presets / spec or config files."""
    from costmodel.loading import load_model
    from costmodel.presets import PRESET_NAMES, get_preset

    if text == "all":
        return [get_preset(n) for n in PRESET_NAMES]
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise UserError(f"--model: expected a name, a file or comma-separated names, got {text!r}")
    return [load_model(n) for n in names]


def _check_out(path: str | None, suffixes: tuple[str, ...], flag: str) -> None:
    """Refuse an output path that cannot be written, before the (long) measurement."""
    if path is None:
        return
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise UserError(f"{flag}: file name must end in {', '.join(suffixes)}, got {p.name!r}")
    if p.is_dir() or not p.parent.is_dir():
        raise UserError(f"{flag}: {p} is a directory or its directory does not exist")


def cmd_count(args: argparse.Namespace) -> None:
    from .count import compare, format_table
    from .limits import check_allocatable

    whole("--batch", args.batch)
    conflict("--paper-settings", args.paper_settings, "--prompt/--generate",
             args.prompt is not None or args.generate is not None)
    _check_out(args.out, (".json",), "--out")
    whole("--tp", args.tp)
    if args.paper_settings:
        settings = list(PAPER_SETTINGS)
    else:
        if args.prompt is None or args.generate is None:
            raise UserError("--prompt and --generate: both are needed (or --paper-settings)")
        whole("--prompt", args.prompt)
        whole("--generate", args.generate)
        settings = [(args.prompt, args.generate)]
    profiles = {"both": ["static", "hf-legacy"], "all": list(PROFILES)}.get(
        args.implementation, [args.implementation])
    from .env import environment

    env = environment("cpu", "meta")  # before counting: the sources as they are imported
    models = _models(args.model)
    for spec in models:  # refuse what torch cannot allocate, even on the meta device
        for s, g in settings:
            check_allocatable(spec, args.batch, s, g, "static", args.dtype, "meta")
    many = len(models) * len(settings) * len(profiles) > 1
    total = 0
    reports = []
    for spec in models:
        for s, g in settings:
            for profile in profiles:
                t0 = time.perf_counter()
                rep = compare(spec, args.batch, s, g, profile, args.dtype,
                              weight_dtype=args.weight_dtype, kv_dtype=args.kv_dtype, tp=args.tp)
                total += rep.mismatches
                reports.append(rep.to_json() | {"seconds": round(time.perf_counter() - t0, 2)})
                if args.json:
                    continue
                if many:
                    print(f"{spec.name:20s} {s:>5d}/{g:<5d} {profile:9s} ops "
                          f"{len(rep.rows):3d}  mismatches {rep.mismatches}  "
                          f"({time.perf_counter() - t0:.1f} s)", flush=True)
                    if rep.mismatches:
                        print(format_table(rep))
                else:
                    print(f"{spec.name}: batch {args.batch}, prompt {s}, generate {g}, "
                          f"profile {profile}, {args.dtype}, weights "
                          f"{args.weight_dtype or args.dtype}, KV {args.kv_dtype or args.dtype}, "
                          f"tp {args.tp}; counted on the meta device; d_* = cost model - counted")
                    print(format_table(rep))
                    if args.tp > 1:
                        from .collectives import format_collectives

                        print("\ncollectives (rank 0; tensor bytes per call, summed)")
                        print(format_collectives(rep))
    if args.out:
        _write_count_results(Path(args.out), reports, total, env)
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=1))
    print(f"count mismatches: {total}")


def _write_count_results(path: Path, reports: list[dict[str, Any]], total: int,
                         env: dict[str, Any]) -> None:
    """A JSON summary (one entry per case) and, beside it, every compared row as CSV."""
    import csv

    from costmodel.errors import write_atomic

    from .dataset import write_json_atomic

    cases = [{k: r[k] for k in ("model", "implementation", "dtype", "batch", "prompt_tokens",
                                "generated_tokens", "mismatches", "seconds")}
             | {"ops": len(r["rows"])} for r in reports]
    write_json_atomic(path, {"total_mismatches": total, "cases": cases,
                             "env": env})
    def rows(f: Any) -> None:
        w = csv.writer(f)
        w.writerow(["model", "implementation", "prompt_tokens", "generated_tokens", "phase",
                    "op", "quantity", "counted", "predicted"])
        for r in reports:
            for row in r["rows"]:
                for q, v in row["counted"].items():
                    w.writerow([r["model"], r["implementation"], r["prompt_tokens"],
                                r["generated_tokens"], row["phase"], row["op"], q, v,
                                row["predicted"][q]])

    write_atomic(path.with_suffix(".csv"), rows)


def cmd_run(args: argparse.Namespace) -> None:
    from .pipeline import run

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file; a run directory is needed")
    whole("--limit", args.limit)
    whole("--threads", args.threads)
    if args.memory_gib is not None:
        finite("--memory-gib", args.memory_gib, lo=0, lo_open=True)
    if args.budget_s is not None:
        finite("--budget-s", args.budget_s, lo=0, lo_open=True)
    models = [m for m in args.models.split(",") if m] if args.models else None
    run(args.device, args.suite, args.out, threads=args.threads, limit=args.limit,
        models=models, smoke=args.smoke, dtype=args.dtype, rebench=args.rebench, budget_s=args.budget_s,
        memory_capacity_bytes=args.memory_gib * 2**30 if args.memory_gib is not None else None,
        progress=not args.no_progress, wait=not args.no_wait)


def cmd_ops(args: argparse.Namespace) -> None:
    import torch

    from costmodel.hardware import get_hardware

    from .dataset import write_json_atomic
    from .op_profile import format_profile, plot_profile, profile
    from .suites import Point

    whole("--threads", args.threads)
    whole("--repeats", args.repeats)
    whole("--warmup", args.warmup, lo=0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device: cuda requested but torch sees no CUDA device")
    _check_out(args.out, (".json",), "--out")
    _check_out(args.plot, (".png", ".svg", ".pdf"), "--plot")
    try:
        point = Point(args.model, args.phase, args.batch, args.context, args.generate,
                      args.implementation, args.block_length)
        spec = point.spec()
    except ValidationError as e:
        raise UserError(describe_validation_error(e, prefix="--block-length")) from None
    from .limits import check_allocatable

    gen = args.generate if args.phase == "generate" else 1
    check_allocatable(spec, args.batch, args.context, gen, args.implementation, args.dtype,
                      args.device)
    prof = profile(point, get_hardware(args.hardware), args.device, args.dtype, args.repeats,
                   args.warmup)
    if args.out:
        write_json_atomic(Path(args.out), prof.to_json())
    if args.plot:
        plot_profile(prof, args.plot)
    if args.json:
        print(json.dumps(prof.to_json(), indent=1))
    else:
        print(format_profile(prof))


def cmd_published(args: argparse.Namespace) -> None:
    from . import published_report
    from .published import FITTED_METRICS, fit_and_score

    scored = fit_and_score(args.files, args.fit, seed=args.seed,
                           implementation=args.implementation)
    s = (published_report.write(scored, args.out, plot=not args.no_plots) if args.out
         else published_report.summary(scored))
    if args.save_calibration:
        from costmodel.calibration import save_calibration

        from .published import calibration_record

        heldout = {m["metric"]: round(m["mape_calibrated_pct"], 2) for m in s["mape"]
                   if m["metric"] in FITTED_METRICS}
        rec = calibration_record(scored, heldout)
        path = save_calibration(rec)
        print(f"saved {rec.summary} to {path}")
    print(published_report.text(s))


def register(sub: Any) -> None:
    """Add the ``validate`` command group to the `blockroof` parser's subparsers."""
    v = sub.add_parser("validate", help="count, time and calibrate the reference vs the model")
    vs = v.add_subparsers(dest="validate_command", required=True)

    c = vs.add_parser("count", help="counted FLOPs/bytes of the reference vs the cost model")
    c.add_argument("--model", required=True,
                   help="preset name, spec .json, comma-separated names, or 'all'")
    c.add_argument("--prompt", type=int, help="prompt tokens S")
    c.add_argument("--generate", type=int, help="generated tokens G")
    c.add_argument("--paper-settings", action="store_true",
                   help="both paper settings, 2048/128 and 128/2048 (instead of --prompt/"
                        "--generate)")
    c.add_argument("--batch", type=int, default=1)
    c.add_argument("--implementation", default="static",
                   choices=[*PROFILES, "both", "all"])
    c.add_argument("--dtype", default="bf16", choices=["bf16", "fp32", "fp16"])
    c.add_argument("--weight-dtype", default=None, metavar="FORMAT",
                   help="quantise the reference's linears: int8 (w8a16) or int4-g<N> "
                        "(w4a16-g32, ...); docs/precision.md")
    c.add_argument("--kv-dtype", default=None, metavar="FORMAT",
                   help="KV-cache format: int8 (kv-int8) or the model dtype")
    c.add_argument("--tp", type=int, default=1,
                   help="count rank 0 of a tp-way sharded reference, collectives included")
    c.add_argument("--out", help="also write the reports as JSON to this file")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_count)

    o = vs.add_parser("ops", help="per-op time of one region: measured (module hooks) vs the "
                                  "cost model's rows")
    o.add_argument("--model", required=True, help="preset name")
    o.add_argument("--phase", default="decode_step", choices=["prefill", "decode_step",
                                                               "generate"])
    o.add_argument("--batch", type=int, required=True)
    o.add_argument("--context", type=int, required=True,
                   help="prompt tokens (prefill, generate) or cached context (decode_step; a "
                        "multiple of L_B for block models)")
    o.add_argument("--generate", type=int, default=1, help="generated tokens (generate)")
    o.add_argument("--block-length", type=int, default=None, help="re-block a block preset")
    o.add_argument("--implementation", default="static", choices=list(PROFILES))
    o.add_argument("--hardware", required=True,
                   help="hardware id or record .json for the predictions, e.g. a calibrated "
                        "record: validation/results/cpu/hardware/*-calibrated.json")
    o.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    o.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    o.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")
    o.add_argument("--repeats", type=int, default=10)
    o.add_argument("--warmup", type=int, default=3)
    o.add_argument("--out", help="also write the profile as JSON to this file")
    o.add_argument("--plot", help="also draw measured vs predicted per op to this PNG")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_ops)

    pb = vs.add_parser("published", help="published measurements (CSV, validation/published/"
                                         "README.md): fit efficiencies, score held-out rows")
    pb.add_argument("files", nargs="+", help="published CSV files to score")
    pb.add_argument("--fit", action="append", default=None, metavar="FILE",
                    help="fit on every row of FILE (repeat for several) and hold out all of "
                         "FILES (else a seeded split of FILES)")
    pb.add_argument("--seed", type=int, default=0, help="seed of the train/held-out split")
    pb.add_argument("--out", help="write points.csv, summary.json, report.md and plots here")
    pb.add_argument("--no-plots", action="store_true")
    pb.add_argument("--implementation", default=None, choices=list(PROFILES),
                    help="score every row under this profile instead of the file's")
    pb.add_argument("--save-calibration", action="store_true",
                    help="refit on every row and store the result as the calibration record "
                         "of the rows' (hardware, implementation) in costmodel/data/"
                         "calibrations.json")
    pb.set_defaults(func=cmd_published)

    from .serve import register as register_serve

    register_serve(vs)

    from .parallel_cli import register_allreduce, register_tp  # torch loads when they run

    register_allreduce(vs)
    register_tp(vs)

    r = vs.add_parser("run", help="microbench -> measure -> calibrate -> report")
    r.add_argument("--device", required=True, choices=["cpu", "cuda"])
    r.add_argument("--suite", required=True, choices=["tiny", "cpu", "gpu", "cpu-quant", "gpu-quant"])
    r.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads (torch; default: the suite's, else torch's)")
    r.add_argument("--limit", type=int, default=None, help="first N points of the suite only")
    r.add_argument("--models", default=None, help="comma-separated presets: their points only")
    r.add_argument("--smoke", action="store_true",
                   help="shrink every point (batch <= 2, prompt <= 32, generate <= 8, one "
                        "repeat): an end-to-end check of a big suite on a small machine")
    r.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"],
                   help="override the suite's dtype (e.g. fp32 for the gpu suite on a CPU)")
    r.add_argument("--budget-s", type=float, default=None,
                   help="stop starting new points after this many seconds of measuring")
    r.add_argument("--memory-gib", type=float, default=None,
                   help="device memory for the max-batch search (default: the device's)")
    r.add_argument("--rebench", action="store_true", help="re-run the micro-benchmarks")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--no-wait", action="store_true",
                   help="stop (instead of waiting) if another run is writing --out")
    r.set_defaults(func=cmd_run)
