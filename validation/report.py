"""Predicted vs measured: tables (CSV/JSON/Markdown), plots (PNG), MAPE and bound violations.

Files written to the run directory:

- ``points.csv``: one row per measured point (columns: `POINT_COLUMNS`): measured median and
  spread, uncalibrated and calibrated predictions, signed errors in percent, the split, the
  executed FLOPs and bytes of the timed region (cost model) and the attained rates;
- ``summary.json``: MAPE per phase (held-out and train, calibrated and uncalibrated), the
  fitted parameters and error band, the bound violations with an explanation each, memory
  and max-batch comparisons, run conditions;
- ``report.md``: the same for people;
- ``scatter.png`` (predicted vs measured, identity line), ``roofline.png`` (the device's
  measured roofline with every point at its intensity and attained FLOP/s),
  ``error_by_phase.png``.

A roofline is a lower bound on time: a point whose UNcalibrated prediction (measured peak
rates, no overheads) exceeds its measured time is a *bound violation*, and each one is listed
with the reason the data show (`explain_violation`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from costmodel.errors import write_atomic
from costmodel.hardware import Hardware

from .calibrate import Calibration, base_rates, fit, rates_for
from .dataset import write_json_atomic
from .predict import Predictor, predicted_memory_bytes

POINT_COLUMNS = (
    "point_id", "model", "kind", "implementation", "phase", "batch", "prompt_tokens",
    "generated_tokens", "context", "block_length", "max_batch", "measured_s", "spread_s",
    "predicted_s", "predicted_calibrated_s", "error_pct", "error_calibrated_pct", "split",
    "flops", "bytes", "attained_flops_per_s", "attained_bytes_per_s", "bound_violation",
    "peak_allocated_bytes", "predicted_memory_bytes", "loadavg_1m",
)
PHASE_ORDER = ("prefill", "decode_step", "generate")


def _mape(errors_pct: pd.Series) -> float | None:
    return float(errors_pct.abs().mean()) if len(errors_pct) else None


def points_frame(records: list[dict[str, Any]], hw: Hardware, cal: Calibration) -> pd.DataFrame:
    dtype = records[0]["dtype"]
    base = base_rates(hw, dtype)
    pred = Predictor(records, hw)
    uncal = pred.predict(base)
    calp = pred.predict(rates_for(base, cal.params))
    rows = []
    test = set(cal.test)
    for i, r in enumerate(records):
        row = {k: r.get(k) for k in POINT_COLUMNS}
        row["loadavg_1m"] = (r.get("env") or {}).get("loadavg_1m")
        row["predicted_s"] = float(uncal[i])
        row["predicted_calibrated_s"] = float(calp[i])
        row["error_pct"] = 100 * (uncal[i] / r["measured_s"] - 1)
        row["error_calibrated_pct"] = 100 * (calp[i] / r["measured_s"] - 1)
        row["split"] = "test" if i in test else "train"
        row["attained_flops_per_s"] = r.get("flops", 0.0) / r["measured_s"]
        row["attained_bytes_per_s"] = r.get("bytes", 0.0) / r["measured_s"]
        row["bound_violation"] = bool(uncal[i] > r["measured_s"])
        if r.get("peak_allocated_bytes") is not None and r["phase"] == "generate":
            # the cost model as it is now (the record keeps the one it was measured with)
            row["predicted_memory_bytes"] = predicted_memory_bytes(r, hw)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(POINT_COLUMNS))


def mape_table(df: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """{phase: {heldout_calibrated, heldout_uncalibrated, train_calibrated, ..., points}}."""
    out: dict[str, dict[str, float | None]] = {}
    for phase in [p for p in PHASE_ORDER if p in set(df["phase"])]:
        part = df[df["phase"] == phase]
        test, train = part[part["split"] == "test"], part[part["split"] == "train"]
        out[phase] = {
            "points": float(len(part)), "heldout_points": float(len(test)),
            "heldout_calibrated": _mape(test["error_calibrated_pct"]),
            "heldout_uncalibrated": _mape(test["error_pct"]),
            "train_calibrated": _mape(train["error_calibrated_pct"]),
            "train_uncalibrated": _mape(train["error_pct"]),
            "all_calibrated": _mape(part["error_calibrated_pct"]),
            "all_uncalibrated": _mape(part["error_pct"]),
        }
    return out


def explain_violation(row: pd.Series, hw: Hardware, dtype: str) -> str:
    """Why a measured time beat the uncalibrated roofline, from the point's attained rates."""
    base = base_rates(hw, dtype)
    bw, pi = base.beta_bytes_per_s, base.pi_flops_per_s
    a_bw, a_fl = row["attained_bytes_per_s"], row["attained_flops_per_s"]
    parts = []
    if a_bw > bw:
        parts.append(
            f"attained {a_bw / 1e9:.3g} GB/s over the cost model's byte count exceeds the "
            f"measured copy bandwidth {bw / 1e9:.3g} GB/s: the cost model counts every op's "
            f"activation reads and writes as memory traffic (no fusion, costmodel/ops.py), "
            f"and {row['bytes'] / 1e6:.3g} MB of such traffic per timed region is largely "
            "served from caches" + (f" (L2 {hw.l2_cache_MB:g} MB)" if hw.l2_cache_MB else "")
            + " or never leaves registers")
    if a_fl > pi:
        parts.append(f"attained {a_fl / 1e12:.3g} TFLOP/s exceeds the measured matmul rate "
                     f"{pi / 1e12:.3g} TFLOP/s (the microbenchmark's best shape is not the "
                     "device's peak)")
    if not parts:
        parts.append("neither attained rate exceeds its measured peak, yet the sum over ops of "
                     "max(T_math, T_mem) exceeds the measured time: either the micro-benchmark "
                     "under-measured a rate (other processes running while it ran, or its best "
                     "shape below the device's best), or the device overlaps one op's compute "
                     "with another op's memory traffic")
    return "; ".join(parts)


def _plots(df: pd.DataFrame, hw: Hardware, cal: Calibration, dtype: str, out: Path,
           title: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colors = {"prefill": "tab:blue", "decode_step": "tab:orange", "generate": "tab:green"}
    # scatter
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    both = pd.concat([df["measured_s"], df["predicted_s"], df["predicted_calibrated_s"]])
    lo, hi = float(both.min()) / 2, float(both.max()) * 2
    for ax, col, name in ((axes[0], "predicted_s", "uncalibrated roofline"),
                          (axes[1], "predicted_calibrated_s", "calibrated")):
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="predicted = measured")
        for phase, part in df.groupby("phase", sort=False):
            for split, marker in (("train", "o"), ("test", "^")):
                sub = part[part["split"] == split]
                if len(sub):
                    ax.scatter(sub["measured_s"], sub[col], c=colors.get(str(phase), "gray"),
                               marker=marker, s=28, alpha=0.8, label=f"{phase} ({split})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured (s)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("predicted (s)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Predicted vs measured: {title}")
    fig.tight_layout()
    fig.savefig(out / "scatter.png", dpi=120)
    plt.close(fig)
    written.append("scatter.png")
    # roofline
    base = base_rates(hw, dtype)
    calr = rates_for(base, cal.params)
    sel = df[(df["flops"] > 0) & (df["bytes"] > 0)]
    fig, ax = plt.subplots(figsize=(7, 5))
    if len(sel):
        inten = sel["flops"] / sel["bytes"]
        grid = np.geomspace(float(inten.min()) / 4, float(inten.max()) * 4, 200)
        for r, style, name in ((base, "k-", "measured peak roofline"),
                               (calr, "k:", "calibrated efficiencies")):
            ax.plot(grid, np.minimum(r.pi_flops_per_s, r.beta_bytes_per_s * grid), style,
                    label=name)
        for phase, part in sel.groupby("phase", sort=False):
            ax.scatter(part["flops"] / part["bytes"], part["attained_flops_per_s"],
                       c=colors.get(str(phase), "gray"), s=24, label=str(phase))
    finish_roofline_plot(fig, ax, f"{hw.name}: measured points on the roofline",
                         "attained FLOP/s (executed FLOPs / measured time)", out / "roofline.png")
    written.append("roofline.png")
    # error by phase
    phases = [p for p in PHASE_ORDER if p in set(df["phase"])]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    data, labels = [], []
    for p in phases:
        part = df[df["phase"] == p]
        data += [part["error_pct"].to_numpy(), part["error_calibrated_pct"].to_numpy()]
        labels += [f"{p}\nuncal.", f"{p}\ncalib."]
    if data:
        ax.boxplot(data, tick_labels=labels, showfliers=True)
        for i, p in enumerate(phases):
            test = df[(df["phase"] == p) & (df["split"] == "test")]
            ax.scatter(np.full(len(test), 2 * i + 2), test["error_calibrated_pct"], marker="^",
                       c="red", s=18, zorder=3, label="held out" if i == 0 else None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("(predicted - measured) / measured, %")
    ax.set_title("Error by phase")
    ax.grid(True, axis="y", alpha=0.3)
    if data:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "error_by_phase.png", dpi=120)
    plt.close(fig)
    written.append("error_by_phase.png")
    return written


def paper_throughput(preset: str, prompt_tokens: int, generated_tokens: int) -> float | None:
    """The paper's Table 1 throughput (docs/model.md 5.2: one H100, bf16, max batch) for a preset at
    one of its two settings, tokens/s; None elsewhere."""
    from costmodel.paper import SETTINGS, TABLE1

    setting = next((k for k, v in SETTINGS.items() if v == (prompt_tokens, generated_tokens)),
                   None)
    row = next((r for r in TABLE1 if r.preset == preset), None)
    if setting is None or row is None:
        return None
    k = row.thr_prefill_ktok_s if setting == "prefill-heavy" else row.thr_decode_ktok_s
    return 1e3 * k


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}%"


def write_report(records: list[dict[str, Any]], hw: Hardware, cal: Calibration,
                 hw_cal: Hardware, out_dir: str | Path, suite: str,
                 problems: list[str] | None = None, plots: bool = True) -> dict[str, Any]:
    """Write every report file (module docstring) and return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = records[0]["dtype"]
    df = points_frame(records, hw, cal)
    write_atomic(out / "points.csv", lambda f: df.to_csv(f, index=False), durable=False)
    mape = mape_table(df)
    ablation = overlap_ablation(records, hw, dtype, cal)
    violations = [
        {"point_id": r["point_id"], "model": r["model"], "phase": r["phase"],
         "batch": int(r["batch"]), "context": r["context"],
         "measured_s": r["measured_s"], "predicted_s": r["predicted_s"],
         "excess_pct": r["error_pct"], "explanation": explain_violation(r, hw, dtype)}
        for _, r in df[df["bound_violation"]].iterrows()]
    mem = df[df["peak_allocated_bytes"].notna() & df["predicted_memory_bytes"].notna()]
    memory = [{"model": r["model"], "implementation": r["implementation"],
               "batch": int(r["batch"]), "prompt_tokens": int(r["prompt_tokens"]),
               "generated_tokens": int(r["generated_tokens"]),
               "peak_bytes": float(r["peak_allocated_bytes"]),
               "predicted_bytes": float(r["predicted_memory_bytes"]),
               "ratio": float(r["predicted_memory_bytes"] / r["peak_allocated_bytes"])}
              for _, r in mem.iterrows()]
    throughput = [{k: rec.get(k) for k in (
        "model", "batch", "prompt_tokens", "generated_tokens", "throughput_tokens_per_s",
        "predicted_throughput_tokens_per_s", "predicted_max_batch", "max_batch_search")}
        | {"paper_throughput_tokens_per_s": paper_throughput(
            rec.get("preset", ""), rec["prompt_tokens"], rec["generated_tokens"])}
        for rec in records if rec.get("max_batch")]
    cal_s = dict(zip(df["point_id"], df["predicted_calibrated_s"], strict=True))
    uncal_s = dict(zip(df["point_id"], df["predicted_s"], strict=True))
    for t, rec in zip(throughput, [r for r in records if r.get("max_batch")], strict=True):
        tokens = rec["batch"] * rec["generated_tokens"]
        t["predicted_throughput_tokens_per_s"] = tokens / uncal_s[rec["point_id"]]
        t["predicted_calibrated_throughput_tokens_per_s"] = tokens / cal_s[rec["point_id"]]
        t["roofline_fraction"] = (rec["throughput_tokens_per_s"]
                                  / t["predicted_throughput_tokens_per_s"])
    loads = [x for x in df["loadavg_1m"] if x is not None]
    summary = {
        "suite": suite, "device": hw.id, "device_name": hw.measured.device_name
        if hw.measured else hw.name, "dtype": dtype, "points": len(df),
        "hardware": hw.id, "hardware_calibrated": hw_cal.id,
        "calibration": cal.to_json() | {"train_points": len(cal.train),
                                        "heldout_points": len(cal.test)},
        "mape_pct": mape,
        "bound_violations": violations,
        "memory": memory,
        "max_batch_throughput": throughput,
        "ablation_overlap_1": ablation,
        "conditions": {"loadavg_1m_min": min(loads, default=None),
                       "loadavg_1m_max": max(loads, default=None),
                       "threads": (records[0].get("env") or {}).get("threads"),
                       "dates": [records[0].get("env", {}).get("date"),
                                 records[-1].get("env", {}).get("date")]},
        "dataset_problems": problems or [],
    }
    write_json_atomic(out / "summary.json", summary)
    if plots:
        summary["plots"] = _plots(df, hw, cal, dtype, out, f"{hw.name}, suite {suite}")
    text = markdown(summary)
    write_atomic(out / "report.md", lambda f: f.write(text), durable=False)
    return summary


def params_text(p: dict[str, float]) -> str:
    return (f"matmul efficiency {p['matmul']:.3f}, bandwidth efficiency {p['bandwidth']:.3f}, "
            f"overlap {p.get('overlap', 1.0):.3f}, kernel overhead "
            f"{p['kernel_overhead_s'] * 1e6:.2f} us, forward overhead "
            f"{p['forward_overhead_s'] * 1e6:.1f} us")


def overlap_ablation(records: list[dict[str, Any]], hw: Hardware, dtype: str,
                     cal: Calibration) -> dict[str, Any]:
    """The calibration refitted on the same split with overlap held at 1 (the roofline's max
    per op): its parameters and MAPE per phase, beside the full fit's."""
    held = fit(records, hw, dtype, cal.train, cal.test, fixed={"overlap": 1.0})
    df = points_frame(records, hw, held)
    return {"params": held.params, "pinned": held.pinned,
            "mape_pct": {p: {k: v[k] for k in ("heldout_calibrated", "train_calibrated")}
                         for p, v in mape_table(df).items()}}


def markdown(s: dict[str, Any]) -> str:
    cal = s["calibration"]
    p = cal["params"]
    lines = [
        f"# Validation run: suite `{s['suite']}` on {s['device_name']} ({s['dtype']})", "",
        f"{s['points']} measured points; hardware record `{s['hardware']}` (measured rates), "
        f"calibrated record `{s['hardware_calibrated']}`.", "",
        "## Held-out MAPE per phase", "",
        "| phase | points (held out) | calibrated | uncalibrated | train calibrated |",
        "| --- | --- | --- | --- | --- |",
    ]
    for phase, m in s["mape_pct"].items():
        lines.append(f"| {phase} | {int(m['points'])} ({int(m['heldout_points'])}) | "
                     f"{_fmt(m['heldout_calibrated'])} | {_fmt(m['heldout_uncalibrated'])} | "
                     f"{_fmt(m['train_calibrated'])} |")
    lines += [
        "", "## Calibrated parameters", "",
        params_text(p)
        + (f" (at a bound: {', '.join(cal['pinned'])})" if cal["pinned"] else "") + ".",
        "", "Error band (held out, measured / calibrated prediction): " + (
            "p05 {measured_over_predicted_p05:.3f}, median {measured_over_predicted_p50:.3f}, "
            "p95 {measured_over_predicted_p95:.3f}".format(**cal["band"]) if cal.get("band")
            else "n/a"), "",
        f"## Bound violations (uncalibrated prediction above measured): "
        f"{len(s['bound_violations'])}", "",
    ]
    for v in s["bound_violations"]:
        lines.append(f"- {v['model']} {v['phase']} B={v['batch']} context={v['context']}: "
                     f"predicted {v['predicted_s']:.4g} s > measured {v['measured_s']:.4g} s "
                     f"(+{v['excess_pct']:.1f}%). {v['explanation']}.")
    if s["memory"]:
        lines += ["", "## Memory (generate points): predicted / peak", "",
                  "Predicted: the cost model's weights + batch x (KV cache + workspace), less "
                  "the unused block-decoder embed_in of the hf-legacy profile, which the "
                  "reference does not allocate (`validation.predict.predicted_memory_bytes`).",
                  ""]
        for m in s["memory"]:
            lines.append(f"- {m['model']} {m['implementation']} B={m['batch']} "
                         f"{m['prompt_tokens']}/{m['generated_tokens']}: peak "
                         f"{m['peak_bytes'] / 2**20:.1f} MiB, predicted "
                         f"{m['predicted_bytes'] / 2**20:.1f} MiB (x{m['ratio']:.3f})")
    if s["max_batch_throughput"]:
        lines += ["", "## Throughput at the largest batch", ""]
        for t in s["max_batch_throughput"]:
            paper = t["paper_throughput_tokens_per_s"]
            lines.append(f"- {t['model']} {t['prompt_tokens']}/{t['generated_tokens']}: batch "
                         f"{t['batch']} (predicted max {t['predicted_max_batch']}), "
                         f"{t['throughput_tokens_per_s']:.0f} tok/s measured, "
                         f"{t['predicted_throughput_tokens_per_s']:.0f} tok/s predicted "
                         f"uncalibrated ({100 * t['roofline_fraction']:.0f}% of this roofline "
                         f"reached), {t['predicted_calibrated_throughput_tokens_per_s']:.0f} "
                         "calibrated" + (f"; paper Table 1 {paper:.0f} tok/s" if paper else ""))
    a = s.get("ablation_overlap_1")
    if a:
        q = a["params"]
        lines += ["", "## Ablation: overlap held at 1 (the pure roofline max)", "",
                  "The same calibration with `overlap` fixed at 1, i.e. every op taking "
                  "max(T_math, T_mem). A higher error here than above is what the overlap "
                  "parameter buys on this device.", "",
                  "| phase | held-out MAPE | train MAPE |", "| --- | --- | --- |"]
        for phase, m in a["mape_pct"].items():
            lines.append(f"| {phase} | {_fmt(m['heldout_calibrated'])} | "
                         f"{_fmt(m['train_calibrated'])} |")
        lines += ["", f"Fitted: {params_text(q)}."]
    c = s["conditions"]
    lines += ["", "## Conditions", "",
              f"threads {c['threads']}, 1-minute load average {c['loadavg_1m_min']} to "
              f"{c['loadavg_1m_max']}, from {c['dates'][0]} to {c['dates'][1]}."]
    if s["dataset_problems"]:
        lines += ["", "## Dataset lines not used", ""] + [f"- {x}" for x in
                                                          s["dataset_problems"]]
    return "\n".join(lines) + "\n"


def finish_roofline_plot(fig, ax, title: str, ylabel: str, path: Path) -> None:
    """Log-log roofline axes (intensity against attained FLOP/s), legend, saved and closed."""
    import matplotlib.pyplot as plt

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (executed FLOP / byte, cost model)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
