"""`blockroof` command line: presets, hardware, estimate, sweep, formula, plan, paper, app,
simulate, validate.

Bad input prints one line `error: <field>: <rule>` on stderr and exits with status 2; no
tracebacks for users. `--json` prints machine-readable output on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import UserError, check_field, describe_validation_error, finite, user_message
from .flags import OnceParser, conflict, whole_list
from .implementation import PROFILES
from .workload import DEFAULT_SWEEP_METRICS

FLAG_FOR_FIELD = {"prompt_tokens": "--prompt", "generated_tokens": "--generate",
                  "batch": "--batch", "memory_reserve_bytes": "--reserve-gib"}


def _load_model(text: str):
    """A preset name or alias, a spec JSON file (a dumped VanillaSpec/BlockSpec) or an HF
    config.json (`costmodel.loading.load_model`)."""
    from .loading import load_model

    return load_model(text)


def _workload(args: argparse.Namespace):
    from .workload import Workload

    batch: Any = args.batch
    if batch != "max":
        try:
            batch = int(batch)
        except ValueError:
            batch = 0
        if batch < 1:
            raise UserError(f"--batch: expected a whole number >= 1 or 'max', got {args.batch!r}")
    try:
        return Workload(batch=batch, prompt_tokens=args.prompt, generated_tokens=args.generate,
                        memory_reserve_bytes=finite("--reserve-gib", args.reserve_gib, lo=0)
                        * 2**30)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, rename=FLAG_FOR_FIELD)) from None


def _hardware(args: argparse.Namespace) -> Any:
    """--hardware (one or several) with the --efficiency overrides applied to each."""
    from .hardware import Efficiency, get_hardware

    many = isinstance(args.hardware, list)
    ids = args.hardware if many else [args.hardware]
    if not args.efficiency:
        return args.hardware
    known = [n for n in Efficiency.model_fields if n != "source"]
    changes: dict[str, float] = {}
    for item in args.efficiency:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise UserError(f"--efficiency: expected NAME=VALUE with NAME one of "
                            f"{', '.join(known)}, got {item!r}")
        if name in changes:
            raise UserError(f"--efficiency: {name} given twice ({changes[name]:g} and "
                            f"{value}); give each NAME once")
        changes[name] = check_field(Efficiency, name, finite(f"--efficiency {name}", value),
                                    f"--efficiency {name}")
    try:
        out = [get_hardware(h).with_efficiency(**changes, source="--efficiency") for h in ids]
    except ValidationError as e:
        raise UserError(describe_validation_error(e, prefix="--efficiency")) from None
    return out if many else out[0]


def _implementation(args: argparse.Namespace) -> Any:
    """--implementation with --weight-dtype / --kv-dtype / --compute-dtype applied (one value
    each; `sweep` takes comma-separated lists, see `_dtype_axes`)."""
    from .implementation import get_implementation

    w, kv, c = (getattr(args, a, None) for a in ("weight_dtype", "kv_dtype", "compute_dtype"))
    if not (w or kv or c):
        return args.implementation
    try:
        return get_implementation(args.implementation, weight_dtype=w, kv_dtype=kv,
                                  compute_dtype=c)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, rename=DTYPE_FLAGS)) from None


DTYPE_FLAGS = {"weight_dtype": "--weight-dtype", "kv_dtype": "--kv-dtype",
               "compute_dtype": "--compute-dtype"}


def _dtype_axes(args: argparse.Namespace) -> dict[str, list[str] | None]:
    return {name: getattr(args, name).split(",") if getattr(args, name) else None
            for name in DTYPE_FLAGS}


def precision_args(s: argparse.ArgumentParser, many: bool = False) -> None:
    """--weight-dtype, --kv-dtype, --compute-dtype (docs/precision.md)."""
    lists = " (comma-separated: a sweep axis)" if many else ""
    s.add_argument("--weight-dtype", default=None, metavar="FORMAT",
                   help="linear weights: fp32, bf16, fp16, fp8, int8, int4-g<N>, or a preset "
                        "w8a16, w4a16-g128, w4a16-g32, w8a16-fp8, w8a8-fp8, w8a8-int8" + lists)
    s.add_argument("--kv-dtype", default=None, metavar="FORMAT",
                   help="KV cache: fp32, bf16, fp16, fp8, int8, or kv-fp8, kv-int8" + lists)
    s.add_argument("--compute-dtype", default=None, metavar="DTYPE",
                   help="dtype the matmuls run in: fp32, tf32, bf16, fp16, fp8, int8" + lists)


def _parallelism(args: argparse.Namespace):
    """--tp/--pp as one `Parallelism` (None when both are 1, i.e. not given)."""
    from .parallel import Parallelism

    try:
        par = Parallelism(tp=args.tp, pp=args.pp)
    except ValidationError as e:
        raise UserError(describe_validation_error(e, rename={"tp": "--tp", "pp": "--pp"})) \
            from None
    return par


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if math.isinf(v):
                return "never" if v > 0 else "-inf"
            if math.isnan(v):
                return "—"
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


# Whole-number fields written as JSON integers (counts, bytes and FLOPs are whole numbers).
_INT_SUFFIXES = ("_bytes", "flops", "_bytes_total", "_bytes_per_sample", "flops_total",
                 "max_batch", "batch", "_tokens", "kernels", "block_length")


def _typed(obj: Any, key: str = "") -> Any:
    """JSON-ready: inf/nan as null (JSON has neither), whole-number fields as integers."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        if key.endswith(_INT_SUFFIXES) and obj.is_integer() and abs(obj) < 2**53:
            return int(obj)
        return obj
    if isinstance(obj, dict):
        return {k: _typed(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_typed(v, key) for v in obj]
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: write them as null (used by the serving CLI too)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _dump(obj: Any) -> None:
    print(json.dumps(_typed(obj), indent=2, default=_json_default, allow_nan=False))


# --- commands -----------------------------------------------------------------------------------

def cmd_presets(args: argparse.Namespace) -> None:
    from .presets import PRESET_NAMES, display_name, get_preset

    rows = [{"name": n, "paper_name": display_name(n), "kind": get_preset(n).kind,
             "params_total": get_preset(n).params_total,
             "params_non_embedding": get_preset(n).params_non_embedding} for n in PRESET_NAMES]
    if args.json:
        _dump(rows)
    else:
        _print_table(rows, ["name", "paper_name", "kind", "params_total", "params_non_embedding"])


def cmd_hardware(args: argparse.Namespace) -> None:
    from .hardware import load_database

    db = load_database()
    if args.json:
        _dump([hw.model_dump(mode="json") for hw in db.values()])
        return
    rows = [{"id": hw.id, "name": hw.name, "bf16_TFLOPs": hw.peak.bf16_TFLOPs or float("nan"),
             "fp32_TFLOPs": hw.peak.fp32_TFLOPs or float("nan"),
             "bandwidth_GBps": hw.memory_bandwidth_GBps,
             "capacity": f"{hw.memory_capacity_GB:g} {hw.memory_capacity_unit}"}
            for hw in db.values()]
    _print_table(rows, ["id", "name", "bf16_TFLOPs", "fp32_TFLOPs", "bandwidth_GBps", "capacity"])


def cmd_estimate(args: argparse.Namespace) -> None:
    from .calibration import expectation

    hw = _hardware(args)
    exp = expectation(_load_model(args.model), hw, _workload(args), _implementation(args),
                      parallelism=_parallelism(args))
    est = exp.bound
    expected = None if args.bound else exp.expected
    if not est.fits and not args.partial:
        raise UserError(_no_fit_message(est))
    if args.json:
        out = est.summary()
        out["figures"] = "roofline bound"
        if expected is not None:
            out["expected"] = expected.summary()
            out["calibration"] = exp.calibration.model_dump() if exp.calibration else None
        out["ops"] = [{"phase": r.phase, "name": r.name, "flops": r.flops,
                       "weight_bytes": r.weight_bytes, "activation_bytes": r.activation_bytes,
                       "kv_bytes": r.kv_bytes, "collective_bytes": r.collective_bytes,
                       "time_s": r.time_s, "bound": r.bound}
                      for r in est.ops]
        _dump(out)
        return
    from .units import quantity

    s = est.summary()
    print(f"{est.model} ({est.kind}) on {est.hardware}, profile {est.implementation}: "
          f"batch {est.batch} (max {est.max_batch}), prompt {est.prompt_tokens}, "
          f"generate {est.generated_tokens}, tp {est.tp}, pp {est.pp} ({est.gpus} GPUs)")
    print(f"precision: weights {est.weight_dtype}, compute {est.compute_dtype}, "
          f"KV cache {est.kv_dtype}")
    if args.efficiency:
        eff = hw.efficiency.model_dump(exclude={"source"})
        print("efficiencies: " + ", ".join(f"{k} {v:g}" for k, v in eff.items()))
    if not est.fits:
        print("PARTIAL: " + _no_fit_message(est) + "; numbers below assume it did")
    if args.efficiency:
        print("figures: this record's efficiencies as overridden (--efficiency)")
    elif expected is None:
        print(f"figures: roofline BOUNDS. {exp.statement if not args.bound else ''}".rstrip())
    else:
        print(exp.statement)
    e = expected.summary() if expected is not None else None
    print(f"  {'':32s} {'bound':>14s}" + (f" {'expected':>14s}" if e else ""))
    for key in ("ttft_s", "tpot_s", "request_time_s", "throughput_tokens_per_s",
                "decode_step_time_s", "decode_time_per_token_s", "weights_bytes", "kv_cache_bytes_per_sample",
                "memory_bytes_per_sample", "memory_bytes_total", "flops_total",
                "compute_bound_batch", "kv_overtakes_weights_context", "weights_bytes_per_gpu",
                "memory_bytes_per_gpu", "collective_bytes_total", "collective_time_s"):
        print(f"  {key:32s} {quantity(key, s[key]):>14s}"
              + (f" {quantity(key, e[key]):>14s}" if e else ""))
    if not math.isfinite(s["compute_bound_batch"] + s["kv_overtakes_weights_context"]):
        print("  (never: the decode step stays memory-bound at every batch, or its KV reads never "
              "overtake its weight reads; --json writes null)")
    print()
    phases = est.phases()
    rows = [{k: (quantity(k, v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in phases.to_dict("records")]
    _print_table(rows, list(phases.columns))


def _no_fit_message(est) -> str:
    from .units import bytes_

    need = est.weights_bytes + est.batch * est.memory_bytes_per_sample
    return (f"{est.model} does not fit on {est.hardware} at batch {est.batch} "
            f"(max batch {est.max_batch}): it needs {bytes_(need)} "
            f"(weights {bytes_(est.weights_bytes)} + {est.batch} x "
            f"{bytes_(est.memory_bytes_per_sample)} per sequence); use a smaller batch, prompt "
            "or model, more memory, or --partial to print the numbers anyway")


def cmd_sweep(args: argparse.Namespace) -> None:
    import pandas as pd

    from .api import MAX_SWEEP_POINTS, plan_sweep, sweep_chunks, typed_frame
    from .parallel import Parallelism
    from .sweep_file import write_sweep

    reserve = finite("--reserve-gib", args.reserve_gib, lo=0) * 2**30
    models = [_load_model(m) for m in args.model]
    if args.block_length and not any(m.kind == "block" for m in models):
        raise UserError("--block-length: re-blocks Block Transformer models only, and every "
                        "--model given is vanilla (it would change nothing)")
    grid = dict(
        prompt_tokens=whole_list("--prompt", args.prompt),
        generated_tokens=whole_list("--generate", args.generate),
        block_length=whole_list("--block-length", args.block_length) if args.block_length
        else None, implementation=args.implementation, memory_reserve_bytes=reserve,
        **_dtype_axes(args),
        parallelism=[Parallelism(tp=tp, pp=pp) for tp in whole_list("--tp", args.tp)
                     for pp in whole_list("--pp", args.pp)])
    batch = "max" if args.batch == "max" else whole_list("--batch", args.batch)
    plan = plan_sweep(models, _hardware(args), batch=batch,
                      metrics=args.metrics.split(",") if args.metrics else DEFAULT_SWEEP_METRICS,
                      **grid)
    # memory per sequence grows with batch, prompt and generated tokens: a model that does not
    # fit at the smallest point of the grid fits nowhere in it
    smallest = plan_sweep(models, _hardware(args),
                          batch="max" if batch == "max" else [min(batch)],
                          metrics=["max_batch"], **(grid | {
                              "prompt_tokens": [min(grid["prompt_tokens"])],
                              "generated_tokens": [min(grid["generated_tokens"])]}))
    fits = pd.concat(list(sweep_chunks(smallest)), ignore_index=True)
    never = [m for m in dict.fromkeys(fits["model"].astype(str))
             if not fits.loc[fits["model"].astype(str) == m, "fits"].any()]
    if never and not args.partial:
        raise UserError(f"{', '.join(never)}: does not fit in device memory at any point of "
                        "this sweep; use --partial to write the rows anyway (column fits)")
    show = sys.stderr.isatty() and not args.no_progress
    not_fitting = 0

    def progress(done: int, total: int) -> None:
        if show:
            bar = "#" * (30 * done // total)
            print(f"\rsweep [{bar:30s}] {done:,}/{total:,} points", end="", file=sys.stderr,
                  flush=True)

    def count(chunk: pd.DataFrame) -> None:
        nonlocal not_fitting
        not_fitting += int((~chunk["fits"]).sum())

    if args.out == "-":
        if args.format == "json" and plan.points > MAX_SWEEP_POINTS:
            raise UserError(f"--out: {plan.points:,} design points are too many for one JSON "
                            f"document (limit {MAX_SWEEP_POINTS:,}); write .csv or .parquet")
        header = True
        chunks = list(sweep_chunks(plan)) if args.format == "json" else sweep_chunks(plan)
        if args.format == "json":
            df = typed_frame(pd.concat(chunks, ignore_index=True))
            count(df)
            sys.stdout.write(df.to_json(orient="records", double_precision=15) + "\n")
        else:
            for chunk in chunks:
                count(chunk)
                sys.stdout.write(typed_frame(chunk).to_csv(index=False, header=header))
                header = False
        rows = plan.points
    else:
        rows = write_sweep(plan, args.out, progress=progress, on_chunk=count)
        if show:
            print(file=sys.stderr)
    if not_fitting:
        print(f"note: {not_fitting} of {rows} design points do not fit in device memory "
              "(column fits = false)", file=sys.stderr)
    if args.out != "-":
        print(f"wrote {rows} design points to {args.out}")






def cmd_formula(args: argparse.Namespace) -> None:
    from .api import formula, formula_names

    conflict("formula NAME", bool(args.name), "--list", args.list)
    par = _parallelism(args)
    if args.list:
        print("\n".join(formula_names(_load_model(args.model), _implementation(args),
                                       parallelism=par)))
        return
    if not args.name:
        raise UserError("formula: give a NAME (or --list to see them)")
    import sympy as sp

    from .api import impl_values, symbol_values
    from .hardware import get_hardware
    from .implementation import get_implementation
    from .units import quantity

    spec = _load_model(args.model)
    impl = _implementation(args)
    f = formula(args.name, spec, impl, parallelism=par)
    if isinstance(impl, str):
        print(f.latex if args.latex else str(f.expr))
    else:  # a dtype flag: bind the precision's bytes and FLOPs
        expr = f.expr.subs(impl_values(impl))
        print(sp.latex(expr) if args.latex else str(expr))
    if args.expr_only:
        return
    hw, workload = get_hardware(_hardware(args)), _workload(args)
    batch = 1 if workload.batch == "max" else workload.batch
    values = {s.name: v for s, v in symbol_values(
        spec, hw, get_implementation(impl), workload, batch, par).items()}
    print("\nwhere")
    width = max((len(n) for n in f.symbols), default=1)
    for name, meaning in f.symbols.items():
        v = values.get(name)
        shown = "" if v is None else f"{v:g}"
        print(f"  {name.ljust(width)} = {shown:>12}  {meaning}")
    value = f.evaluate(spec, hw, workload, par)
    print(f"\n{args.name} = {quantity(args.name, value)} ({value:.6g}) for {spec.name} on "
          f"{hw.id}, profile {f.implementation}, batch {batch}, prompt {workload.prompt_tokens}, "
          f"generate {workload.generated_tokens}")


def cmd_paper(args: argparse.Namespace) -> None:
    from .calibration import calibration_for
    from .paper import CALIBRATED, columns, mape, pair_ratios, paper_table, spearman

    table = paper_table(args.hardware)
    pairs = pair_ratios(table)
    rho, err = spearman(table), mape(table)
    records = {p: calibration_for(args.hardware, p) for p in CALIBRATED}
    if args.json:
        _dump({"table": table.to_dict("records"), "pairs": pairs.to_dict("records"),
               "spearman": rho, "mape_pct": err,
               "calibrations": {p: r.model_dump() for p, r in records.items() if r}})
        return
    print(f"Paper v2 Table 1 (one H100, bf16, measured) vs predictions on {args.hardware} at "
          "max batch (reserve 2 GiB): profiles are roofline BOUNDS, calibrated-* columns the "
          "calibrated expectation\n")
    cols = ["paper_name", "setting", "paper_memory_MB", "paper_throughput_tok_s"]
    cols += [f"{p}_throughput_tok_s" for p in columns(args.hardware)]
    short = {c: c.replace("_throughput_tok_s", "") for c in cols}
    _print_table([{short[c]: r[c] for c in cols} for r in table.to_dict("records")],
                 [short[c] for c in cols])
    print("\nThroughput over the 20 rows: Spearman rank agreement with the paper, MAPE")
    _print_table([{"prediction": p, "spearman": rho[p], "mape_pct": err[p]} for p in rho],
                 ["prediction", "spearman", "mape_pct"])
    for p, rec in records.items():
        if rec is not None:
            print(f"calibrated-{p}: {rec.summary} (in-sample here: fitted on this table)")
    print("\nBlock / vanilla throughput ratios of matched pairs (docs/model.md 5.3)\n")
    _print_table(pairs.to_dict("records"), list(pairs.columns))


def cmd_app(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port: must be a TCP port 1-65535, got {args.port}")
    script = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
    if not script.exists():
        raise UserError(f"app: {script} not found (is the package installed from a checkout?)")
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(args.port),
           "--server.address", args.address, "--browser.gatherUsageStats=false"]
    if args.headless:
        cmd.append("--server.headless=true")
    raise SystemExit(subprocess.call(cmd))


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is None or action.default is False
                or action.default is argparse.SUPPRESS or "%(default)" in text):
            return text
        return super()._get_help_string(action)


# Command groups that live above `costmodel` (they need torch), by dotted module name. The
# module is imported only when its command is the one asked for, and its `register(sub)` adds
# the real parser: `costmodel` never imports `validation` on its own, and `validation` imports
# only public `costmodel` functions (no import cycle; docs/design.md "Layout").
COMMAND_MODULES: dict[str, tuple[str, str]] = {
    "validate": ("validation.cli", "count, time and calibrate the reference vs the model"),
    "simulate": ("serving.cli", "continuous-batching serving simulation; --max-rate for the "
                                "highest rate meeting SLOs"),
}


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The `blockroof` parser; `wanted` (argv[0]) selects which `COMMAND_MODULES` to import."""
    p = OnceParser(prog="blockroof", description=__doc__.splitlines()[0],
                   formatter_class=_HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)

    def json_flag(s: argparse.ArgumentParser) -> None:
        s.add_argument("--json", action="store_true",
                       help="machine-readable JSON on stdout (raw SI units, null for never)")

    s = command("presets", "the paper's ten models with parameter counts")
    json_flag(s)
    s.set_defaults(func=cmd_presets)

    s = command("hardware", "the hardware database")
    json_flag(s)
    s.set_defaults(func=cmd_hardware)

    def model_arg(s: argparse.ArgumentParser, **kw: Any) -> None:
        s.add_argument("--model", **kw,
                       help="preset name or alias (vanilla_410, 'Block 1.4B', "
                            "EleutherAI/pythia-410m), a spec .json, or a Hugging Face "
                            "config.json" + (" (one or several)" if kw.get("nargs") else ""))

    def workload_args(s: argparse.ArgumentParser, many: bool = False) -> None:
        s.add_argument("--hardware", default="h100-sxm-80gb", nargs="+" if many else None,
                       help="hardware id (see `blockroof hardware`) or a record .json")
        s.add_argument("--implementation", default="static", choices=list(PROFILES),
                       help="implementation profile (costmodel/implementation.py): static is "
                            "a static KV cache with last-position logits; the others reproduce "
                            "how the paper's code ran")
        s.add_argument("--efficiency", nargs="+", action="extend", metavar="NAME=VALUE",
                       default=None,
                       help="override the hardware record's efficiencies, e.g. matmul=0.8 "
                            "overlap=0 kernel_overhead_s=5e-6 (costmodel.hardware.Efficiency); "
                            "default: the record's own")

    def partial_flag(s: argparse.ArgumentParser) -> None:
        s.add_argument("--partial", action="store_true",
                       help="print results even where the model does not fit in device memory "
                            "(otherwise that is an error, exit status 2)")

    def one_workload(s: argparse.ArgumentParser, required: bool) -> None:
        kw: dict[str, Any] = {"required": True} if required else {}
        s.add_argument("--prompt", type=int, **kw, **({} if required else {"default": 2048}),
                       help="prompt tokens")
        s.add_argument("--generate", type=int, **kw, **({} if required else {"default": 128}),
                       help="generated tokens")
        s.add_argument("--batch", default="1", help="batch size, or 'max' for the largest "
                                                   "that fits")
        s.add_argument("--reserve-gib", type=float, default=0.0,
                       help="device memory kept free, GiB")

    s = command("estimate", "latency, throughput and memory of one workload")
    model_arg(s, required=True)
    workload_args(s)
    precision_args(s)
    one_workload(s, required=True)
    s.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (GPUs per layer)")
    s.add_argument("--pp", type=int, default=1, help="pipeline stages")
    s.add_argument("--bound", action="store_true",
                   help="the pure roofline only (no calibrated expectation)")
    partial_flag(s)
    json_flag(s)
    s.set_defaults(func=cmd_estimate)

    s = command("sweep", "vectorised sweep over models, hardware and workloads to CSV/JSON")
    model_arg(s, nargs="+", required=True)
    workload_args(s, many=True)
    precision_args(s, many=True)
    s.add_argument("--batch", default="1", help="comma-separated batch sizes, or 'max'")
    s.add_argument("--prompt", default="2048", help="comma-separated prompt lengths")
    s.add_argument("--generate", default="128", help="comma-separated generated lengths")
    s.add_argument("--block-length", default=None,
                   help="comma-separated block lengths: re-blocks every Block Transformer "
                        "model (refused when all models are vanilla); default: each model's own")
    s.add_argument("--metrics", default=None,
                   help="comma-separated metric names (`blockroof formula --list`); default: "
                        + ",".join(DEFAULT_SWEEP_METRICS))
    s.add_argument("--out", required=True,
                   help="FILE.csv or FILE.parquet (streamed in chunks: any size), FILE.json "
                        "(in memory, up to 10^7 points), or - for stdout")
    s.add_argument("--format", choices=["csv", "json"], default="csv",
                   help="format on stdout with --out -")
    s.add_argument("--tp", default="1", help="comma-separated tensor-parallel degrees (an axis)")
    s.add_argument("--pp", default="1", help="comma-separated pipeline stage counts (an axis)")
    s.add_argument("--reserve-gib", type=float, default=0.0,
                   help="memory kept free when sizing the max batch, GiB")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    partial_flag(s)
    s.set_defaults(func=cmd_sweep)

    s = command("formula", "a formula (sympy or LaTeX), its symbols and its value")
    s.add_argument("name", nargs="?", help="metric (ttft_s, tpot_s, ...) or "
                                           "<phase>/<op>/<quantity>; see --list")
    model_arg(s, default="vanilla_410")
    workload_args(s)
    one_workload(s, required=False)
    s.add_argument("--latex", action="store_true", help="print the formula as LaTeX")
    s.add_argument("--expr-only", action="store_true",
                   help="print only the formula, without legend and value")
    s.add_argument("--list", action="store_true", help="list formula names")
    precision_args(s)
    s.add_argument("--tp", type=int, default=1, help="formulas of a tensor-parallel layout")
    s.add_argument("--pp", type=int, default=1, help="formulas of a pipelined layout")
    s.set_defaults(func=cmd_formula)

    from .cli_plan import register as register_plan

    register_plan(sub, workload_args)

    s = command("paper", "paper Table 1 vs predictions, matched-pair ratios")
    s.add_argument("--hardware", default="h100-sxm-80gb", help="hardware id for the predictions")
    json_flag(s)
    s.set_defaults(func=cmd_paper)

    s = command("app", "launch the Streamlit dashboard")
    s.add_argument("--port", type=int, default=8501, help="port to serve on")
    s.add_argument("--address", default="127.0.0.1", help="address to bind")
    s.add_argument("--headless", action="store_true", help="do not open a browser")
    s.set_defaults(func=cmd_app)

    for name, (module, text) in COMMAND_MODULES.items():
        if name == wanted:
            importlib.import_module(module).register(sub)
        else:  # listed in --help; its own options are known once it is the command asked for
            sub.add_parser(name, help=text, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user's mistake (costmodel.errors.user_message: UserError, pydantic's
    ValidationError, the OS refusing a file) prints one line `error: ...` and returns 2; any
    other exception is a bug in blockroof and propagates with its traceback. Usage errors:
    argparse prints them and exits 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv[0] if argv else None).parse_args(argv)
        args.func(args)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] in ("costmodel", "validation", "reference",
                                                        "serving", "app"):
            raise
        # e.g. `blockroof validate ...` without torch: one line, not a traceback
        print(f"error: {argv[0]}: needs the Python package {e.name!r}, which is not installed "
              f"(pip install {e.name})", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        msg = user_message(e)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
