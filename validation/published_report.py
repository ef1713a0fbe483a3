"""`blockroof validate published`: the text report, and the files of ``--out`` (docs/published.md).

Printed: the rows used and skipped (with reasons), how the fit was made and its parameters,
held-out MAPE per source and metric (calibrated expectation and pure-roofline bound), the worst
held-out points, every bound violation with its explanation, and last
``held-out MAPE: X% over N points`` over the held-out rows of the fitted (time and throughput)
metrics. Memory rows depend on no fitted parameter; their MAPE is printed per metric above.

Files (``--out DIR``), as the CPU suites write them (`validation.report`): ``points.csv`` (one
row per published figure: measured, bound, calibrated, errors, split, executed FLOPs and bytes),
``summary.json``, ``report.md``, ``scatter.png`` (predicted vs measured, bound and calibrated)
and ``roofline_<device>.png`` (each device's rows on that device's own datasheet roofline).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from costmodel.hardware import get_hardware

from .dataset import write_json_atomic
from .published import FITTED_METRICS, Scored, base_hardware, mape_by
from .report import finish_roofline_plot


def _short(source: str, width: int = 48) -> str:
    return source if len(source) <= width else source[: width - 3] + "..."


def params_line(params: dict[str, float]) -> str:
    return (f"matmul {params['matmul']:.3f}, bandwidth {params['bandwidth']:.3f}, overlap "
            f"{params['overlap']:.3f}, kernel overhead {params['kernel_overhead_s'] * 1e6:.2f} us, "
            f"forward overhead {params['forward_overhead_s'] * 1e6:.1f} us")


def explain_violation(row: pd.Series) -> str:
    """Why a measurement beat the pure roofline, from its attained rates."""
    hw = base_hardware(get_hardware(row["hardware"]))
    pi = hw.compute_flops_per_s("bf16") if hw.peak.bf16_TFLOPs else math.nan
    beta = hw.bandwidth_bytes_per_s()
    t = row["flops"] / row["attained_flops_per_s"] if row["attained_flops_per_s"] else math.nan
    parts = []
    if t and row["bytes"] / t > beta:
        parts.append(f"{row['bytes'] / t / 1e9:.0f} GB/s attained over the cost model's byte "
                     f"count exceeds the datasheet {beta / 1e9:.0f} GB/s: traffic the model "
                     "counts is served from cache or fused away")
    if t and row["attained_flops_per_s"] > pi:
        parts.append("attained FLOP/s exceed the datasheet peak: the model counts more FLOPs "
                     "than the implementation executes")
    return "; ".join(parts) or ("the measured workload differs from the row's description "
                                "(batch, lengths or implementation)")


def summary(scored: Scored) -> dict[str, Any]:
    df = scored.frame()
    test = df[df["split"] == "test"]
    fitted = test[test["metric"].isin(FITTED_METRICS)]
    worst = fitted.reindex(fitted["error_calibrated_pct"].abs().sort_values(
        ascending=False).index).head(5)
    violations = [{"row": r["row"], "model": r["model"], "setting": r["setting"],
                   "metric": r["metric"], "measured": r["measured"], "bound": r["bound"],
                   "explanation": explain_violation(r)}
                  for _, r in df[df["bound_violation"]].iterrows()]
    skipped = df[df["skip"] != ""]
    return {
        "rows": len(df), "skipped": len(skipped),
        "skip_reasons": skipped.groupby("skip").size().to_dict(),
        "fit": {"description": scored.fit.description, "params": scored.fit.params,
                "pinned": scored.fit.pinned, "train_rows": len(scored.fit.train_rows),
                "cost": scored.fit.cost},
        "mape": mape_by(df),
        "worst": worst[["row", "model", "setting", "metric", "measured", "calibrated",
                        "error_calibrated_pct"]].to_dict("records"),
        "bound_violations": violations,
        "heldout_mape_pct": float(fitted["error_calibrated_pct"].abs().mean())
        if len(fitted) else math.nan,
        "heldout_points": len(fitted),
    }


def text(s: dict[str, Any]) -> str:
    f = s["fit"]
    lines = [f"published: {s['rows']} rows, {s['skipped']} skipped; fit: {f['description']} "
             f"({f['train_rows']} training rows of the time and throughput metrics)",
             "fitted: " + params_line(f["params"])
             + (f" (at a bound: {', '.join(f['pinned'])})" if f["pinned"] else "")]
    for reason, n in s["skip_reasons"].items():
        lines.append(f"skipped {n} row(s): {reason}")
    lines.append("held-out MAPE per source and metric (calibrated expectation | pure roofline "
                 "bound):")
    for m in s["mape"]:
        note = "" if m["metric"] in FITTED_METRICS else "  (no fitted parameter: memory model)"
        lines.append(f"  {_short(m['source'])} | {m['metric']} | {m['points']} points | "
                     f"{m['mape_calibrated_pct']:.1f}% | {m['mape_bound_pct']:.1f}%{note}")
    lines.append("worst held-out points:")
    for w in s["worst"]:
        lines.append(f"  {w['row']} {w['model']} {w['setting']} {w['metric']}: measured "
                     f"{w['measured']:.4g}, calibrated {w['calibrated']:.4g} "
                     f"({w['error_calibrated_pct']:+.1f}%)")
    lines.append(f"bound violations (measured beyond the uncalibrated roofline): "
                 f"{len(s['bound_violations'])}")
    for v in s["bound_violations"]:
        lines.append(f"  {v['row']} {v['model']} {v['setting']} {v['metric']}: measured "
                     f"{v['measured']:.4g} vs bound {v['bound']:.4g}: {v['explanation']}")
    lines.append(f"held-out MAPE: {s['heldout_mape_pct']:.1f}% over {s['heldout_points']} points")
    return "\n".join(lines)


def markdown(s: dict[str, Any]) -> str:
    f = s["fit"]
    lines = ["# Published measurements: predicted vs measured", "",
             f"{s['rows']} rows ({s['skipped']} skipped). Fit: {f['description']}.", "",
             "Fitted parameters: " + params_line(f["params"]) + ".", "",
             "| source | metric | held-out points | calibrated MAPE | bound MAPE |",
             "| --- | --- | --- | --- | --- |"]
    for m in s["mape"]:
        lines.append(f"| {_short(m['source'], 60)} | {m['metric']} | {m['points']} | "
                     f"{m['mape_calibrated_pct']:.1f}% | {m['mape_bound_pct']:.1f}% |")
    lines += ["", f"Bound violations: {len(s['bound_violations'])}", ""]
    lines += [f"- {v['row']} {v['model']}: {v['explanation']}" for v in s["bound_violations"]]
    if s["skip_reasons"]:
        lines += ["", "Skipped rows:", ""]
        lines += [f"- {n} row(s): {reason}" for reason, n in s["skip_reasons"].items()]
    lines += ["", f"held-out MAPE: {s['heldout_mape_pct']:.1f}% over {s['heldout_points']} points"]
    return "\n".join(lines) + "\n"


def plots(df: pd.DataFrame, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    used = df[df["split"] != "skipped"]
    metrics = list(dict.fromkeys(used["metric"]))
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5.5 * max(1, len(metrics)), 5),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        part = used[used["metric"] == metric]
        vals = pd.concat([part["measured"], part["bound"], part["calibrated"]])
        lo, hi = float(vals.min()) / 2, float(vals.max()) * 2
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="predicted = measured")
        for col, color, name in (("bound", "tab:gray", "roofline bound"),
                                 ("calibrated", "tab:blue", "calibrated")):
            for split, marker in (("train", "o"), ("test", "^")):
                sub = part[part["split"] == split]
                if len(sub):
                    ax.scatter(sub["measured"], sub[col], c=color, marker=marker, s=28,
                               alpha=0.8, label=f"{name} ({split})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {metric}")
        ax.set_ylabel("predicted")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scatter.png", dpi=120)
    plt.close(fig)
    written.append("scatter.png")
    placed = used[np.isfinite(used["attained_flops_per_s"].astype(float))]
    for hw_id, part in placed.groupby("hardware", sort=False):
        hw = base_hardware(get_hardware(str(hw_id)))
        pi = hw.compute_flops_per_s("bf16")
        beta = hw.bandwidth_bytes_per_s()
        inten = part["flops"] / part["bytes"]
        grid = np.geomspace(float(inten.min()) / 4, max(float(inten.max()) * 4, 2 * pi / beta),
                            200)
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.plot(grid, np.minimum(pi, beta * grid), "k-", label=f"{hw.name} datasheet roofline")
        for kind, kpart in part.groupby("kind", sort=False):
            ax.scatter(kpart["flops"] / kpart["bytes"], kpart["attained_flops_per_s"], s=26,
                       label=str(kind))
        name = f"roofline_{hw_id}.png"
        finish_roofline_plot(fig, ax, f"Published measurements on {hw.name}",
                             "attained FLOP/s (cost-model FLOPs / measured time)", out / name)
        written.append(name)
    return written


def write(scored: Scored, out_dir: str | Path, plot: bool = True) -> dict[str, Any]:
    """Every file of ``--out`` (module docstring); returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = scored.frame()
    tmp = out / ".points.csv.tmp"
    df.to_csv(tmp, index=False)
    tmp.replace(out / "points.csv")
    s = summary(scored)
    if plot:
        s["plots"] = plots(df, out)
    write_json_atomic(out / "summary.json", s)
    (out / ".report.md.tmp").write_text(markdown(s), encoding="utf-8")
    (out / ".report.md.tmp").replace(out / "report.md")
    return s

