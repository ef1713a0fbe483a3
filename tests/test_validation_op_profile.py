"""Per-op profile: measured ops are the reference's modules, predicted ops add up to the
cost model's metric for the same region, and the CLI checks its inputs."""

from __future__ import annotations

import json

import pytest

from costmodel.cli import main as cli_main
from costmodel.hardware import get_hardware
from validation.op_profile import FORWARD_CALLS, OUTSIDE, format_profile, plot_profile, profile
from validation.predict import predict_record
from validation.suites import Point
from validation.tracing import op_name

HW = get_hardware("h100-sxm-80gb").with_efficiency(matmul=0.6, bandwidth=0.7, overlap=0.3,
                                                   kernel_overhead_s=4e-6,
                                                   forward_overhead_s=2e-5)


@pytest.mark.parametrize("point", [
    Point("vanilla_31", "decode_step", 2, 16),
    Point("vanilla_31", "prefill", 2, 16, profile="hf-legacy"),
    Point("block_main_b4_5", "decode_step", 2, 16),
    Point("block_main_b4_5", "prefill", 2, 16, generated_tokens=12),
    Point("block_main_b4_5", "generate", 1, 8, generated_tokens=6, profile="hf-legacy"),
], ids=lambda p: f"{p.model}-{p.phase}-{p.profile}")
def test_profile_adds_up(point: Point) -> None:
    from reference import build_model

    prof = profile(point, HW, repeats=2, warmup=1)
    spec = point.spec()
    modules = {op_name(n) for n, _ in build_model(spec, device="meta").named_modules() if n}
    measured = {o.op for o in prof.ops if o.measured_s > 0}
    assert measured <= modules | {FORWARD_CALLS, OUTSIDE}
    assert any(o.op.endswith("lm_head") and o.measured_s > 0 for o in prof.ops)
    # every measured op time is inside the hooked region: the module times leave a non-negative
    # remainder (OUTSIDE, not clipped), and with 2 repeats the median region time is their mean,
    # so the ops add up to it exactly
    outside = next(o.measured_s for o in prof.ops if o.op == OUTSIDE)
    inside = sum(o.measured_s for o in prof.ops if o.op != OUTSIDE)
    assert outside > 0 and inside < prof.region_hooked_s
    assert inside + outside == pytest.approx(prof.region_hooked_s, rel=1e-9)
    # the predicted rows of the region add up to the metric `validation.report` compares with
    rec = {"phase": point.phase, "spec": spec.model_dump(), "implementation": point.profile,
           "dtype": "fp32", "batch": point.batch, "prompt_tokens": point.prompt_tokens,
           "generated_tokens": (spec.block_length if point.phase == "decode_step"
                                and spec.kind == "block" else
                                1 if point.phase == "decode_step" else point.generated_tokens)}
    assert prof.predicted_s == pytest.approx(predict_record(rec, HW), rel=1e-9)
    text = format_profile(prof)
    assert text.splitlines()[-1].startswith("region without hooks")


def test_plot_and_cli(tmp_path, capsys) -> None:
    out, png = tmp_path / "p.json", tmp_path / "p.png"
    rc = cli_main(["validate", "ops", "--model", "vanilla_31", "--batch", "2", "--context",
                   "16", "--hardware", "h100-sxm-80gb", "--repeats", "1", "--warmup", "0",
                   "--out", str(out), "--plot", str(png), "--threads", "1"])
    assert rc == 0 and "lm_head" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["model"] == "vanilla_31" and data["ops"] and data["predicted_s"] > 0
    assert png.stat().st_size > 5000 and not list(tmp_path.glob("*.tmp*"))
    prof = profile(Point("vanilla_31", "decode_step", 1, 8), HW, repeats=1, warmup=0)
    assert plot_profile(prof, tmp_path / "q.png", top=3).is_file()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--batch", "0", "--context", "16"], "batch: expected a whole number >= 1"),
    (["--batch", "1", "--context", "16", "--threads", "0"], "--threads: must be a whole number >= 1, got 0"),
    (["--batch", "1", "--context", "16", "--block-length", "2"],
     "block_length: vanilla_31 is not a block model"),
])
def test_cli_errors_are_one_line(argv, needle, capsys) -> None:
    rc = cli_main(["validate", "ops", "--model", "vanilla_31", "--hardware", "h100-sxm-80gb",
                   *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
