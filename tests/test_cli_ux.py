"""The first hour with the CLI and the API (issue 15): help, units, typed output, no silent
wrong answers (no-fit, labels, --block-length), formula legend and value, aliases, paths."""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import costmodel
from costmodel import Workload, estimate, sweep, units
from costmodel.cli import build_parser, main
from costmodel.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
LLAMA7 = ROOT / "examples" / "configs" / "llama-2-7b.json"
LLAMA70 = ROOT / "examples" / "configs" / "llama-2-70b.json"
MISTRAL = ROOT / "examples" / "configs" / "mistral-7b-v0.1.json"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in action.choices.items()
            if name in ("presets", "hardware", "estimate", "sweep", "formula", "paper", "app")}


@pytest.mark.parametrize("name", ["presets", "hardware", "estimate", "sweep", "formula", "paper",
                                  "app"])
def test_every_option_has_help_and_shows_its_default(name):
    sub = _subcommands()[name]
    text = sub.format_help()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
        has_default = action.default not in (None, False) and action.required is False
        if has_default and action.option_strings:
            flat = " ".join(text.split())
            assert f"(default: {action.default})" in flat, (name, action.option_strings)


def test_out_dash_writes_csv_to_stdout_with_integer_columns(capsys):
    rc, out, err = run(capsys, "sweep", "--model", "vanilla_410", "block_main_b4_85",
                       "--batch", "1,8", "--prompt", "128", "--out", "-")
    assert rc == 0
    df = pd.read_csv(io.StringIO(out))
    assert len(df) == 4 and list(df["batch"]) == [1, 8, 1, 8]
    lines = out.splitlines()
    header = lines[0].split(",")
    first = dict(zip(header, lines[1].split(","), strict=True))
    # counts are written as integers, not 1.0 / 2048.0
    assert first["batch"] == "1" and first["prompt_tokens"] == "128"
    assert first["max_batch"].isdigit() and first["memory_bytes_per_sample"].isdigit()
    assert first["block_length"] == ""  # vanilla: no block length (was nan)
    block = dict(zip(header, lines[3].split(","), strict=True))
    assert block["block_length"] == "4" and block["fits"] == "True"


def test_out_dash_json_and_file_json_are_typed(capsys, tmp_path):
    rc, out, _ = run(capsys, "sweep", "--model", "vanilla_410", "--out", "-", "--format", "json")
    (row,) = json.loads(out)
    assert rc == 0
    for key in ("batch", "prompt_tokens", "generated_tokens", "max_batch",
                "memory_bytes_per_sample"):
        assert isinstance(row[key], int), key
    assert row["block_length"] is None
    # full precision (pandas writes 10 digits unless told otherwise)
    est = estimate("vanilla_410", "h100-sxm-80gb", Workload(prompt_tokens=2048,
                                                            generated_tokens=128))
    assert row["ttft_s"] == pytest.approx(est.ttft_s, rel=1e-14)
    path = tmp_path / "s.json"
    assert run(capsys, "sweep", "--model", "vanilla_410", "--out", str(path))[0] == 0
    assert json.loads(path.read_text()) == [row]


def test_estimate_json_integers_and_never_is_null_like_text_never(capsys):
    args = ("estimate", "--model", "vanilla_410", "--prompt", "2048", "--generate", "128")
    rc, out, _ = run(capsys, *args, "--json")
    data = json.loads(out)
    assert rc == 0
    for key in ("weights_bytes", "memory_bytes_total", "flops_total", "max_batch", "batch"):
        assert isinstance(data[key], int), key
    assert isinstance(data["ops"][0]["weight_bytes"], int)
    assert data["compute_bound_batch"] is None  # infinite: memory-bound at every batch
    rc, text, _ = run(capsys, *args)
    line = next(x for x in text.splitlines() if x.strip().startswith("compute_bound_batch"))
    assert line.split()[-1] == "never" and "--json writes null" in text


def test_estimate_text_uses_human_units(capsys):
    rc, out, _ = run(capsys, "estimate", "--model", "vanilla_410", "--prompt", "2048",
                     "--generate", "128")
    est = estimate("vanilla_410", "h100-sxm-80gb", Workload(prompt_tokens=2048,
                                                            generated_tokens=128))
    assert rc == 0

    def shown(key: str) -> str:  # the bound column of the metric's line
        line = next(x for x in out.splitlines() if x.strip().startswith(key + " "))
        return re.split(r"\s{2,}", line.strip())[1]

    assert shown("ttft_s") == units.seconds(est.ttft_s)
    assert re.fullmatch(r"\d\.\d\d ms", shown("ttft_s"))  # about 2 ms: three digits, a unit
    assert shown("weights_bytes") == units.bytes_(est.weights_bytes) == "773.1 MiB"
    assert units.si(est.flops_total, "FLOP") in out and " tok/s" in out
    assert "e+" not in out  # no raw exponent notation left in text output


def test_units():
    assert units.si(1.765527e12, "FLOP") == "1.77 TFLOP"
    assert units.si(546, "B") == "546 B" and units.si(1090, "B") == "1.09 kB"
    assert units.si(1e15, "FLOP/s") == "1 PFLOP/s"
    assert units.bytes_(810668032) == "773.1 MiB" and units.bytes_(3 * 2**30) == "3.00 GiB"
    assert units.seconds(2.5e-7) == "250 ns" and units.seconds(0.0371) == "37.1 ms"
    assert units.quantity("compute_bound_batch", float("inf")) == "never"
    assert units.quantity("kv_overtakes_weights_context", 7196.56) == "7,197 tokens"


def test_formula_prints_legend_and_value(capsys):
    rc, out, _ = run(capsys, "formula", "ttft_s", "--model", "vanilla_410", "--prompt", "4096",
                     "--batch", "8")
    est = estimate("vanilla_410", "h100-sxm-80gb", Workload(batch=8, prompt_tokens=4096,
                                                            generated_tokens=128))
    assert rc == 0
    assert "\nwhere\n" in out
    legend = {line.split()[0]: line for line in out.split("\nwhere\n")[1].splitlines()
              if " = " in line and not line.startswith("ttft_s")}
    assert "batch size (sequences)" in legend["B"] and legend["B"].split()[2] == "8"
    assert legend["S"].split()[2] == "4096" and "prompt length" in legend["S"]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"ttft_s = {units.seconds(est.ttft_s)} ({est.ttft_s:.6g})")
    rc, out, _ = run(capsys, "formula", "ttft_s", "--expr-only")
    assert "where" not in out and len(out.splitlines()) == 1


def test_model_that_does_not_fit_is_an_error_unless_partial(capsys):
    args = ("estimate", "--model", str(LLAMA70), "--hardware", "a100-sxm-40gb",
            "--prompt", "2048", "--generate", "128")
    rc, out, err = run(capsys, *args)
    assert rc == 2 and out == ""
    assert err.startswith("error: llama-2-70b does not fit on a100-sxm-40gb at batch 1")
    assert "--partial" in err
    rc, out, _ = run(capsys, *args, "--partial")
    assert rc == 0 and any(line.startswith("PARTIAL: llama-2-70b does not fit")
                           for line in out.splitlines()[:4])
    # a batch larger than the max batch is the same error
    rc, _, err = run(capsys, "estimate", "--model", "vanilla_410", "--prompt", "2048",
                     "--generate", "128", "--batch", "100000")
    assert rc == 2 and "(max batch 356)" in err


def test_sweep_no_fit_refused_and_partial_marks_rows(capsys):
    args = ("sweep", "--model", str(LLAMA70), "--hardware", "a100-sxm-40gb", "--out", "-")
    rc, out, err = run(capsys, *args)
    assert rc == 2 and "llama-2-70b: does not fit in device memory at any point" in err
    rc, out, err = run(capsys, *args, "--partial")
    df = pd.read_csv(io.StringIO(out))
    assert rc == 0 and not df["fits"].any() and "1 of 1 design points do not fit" in err


def test_block_length_with_vanilla_models_only_is_refused(capsys):
    rc, out, err = run(capsys, "sweep", "--model", "vanilla_410", "--block-length", "2,8",
                       "--out", "-")
    assert rc == 2 and err.startswith("error: --block-length: re-blocks Block Transformer")
    with pytest.raises(UserError, match="block_length: re-blocks Block Transformer models only"):
        sweep("vanilla_410", block_length=[2, 8])


def test_model_labels_are_unique_and_readable(capsys, tmp_path):
    for name, src in (("llama-2-7b", LLAMA7), ("mistral-7b", MISTRAL)):
        (tmp_path / name).mkdir()
        shutil.copy(src, tmp_path / name / "config.json")
    rc, out, _ = run(capsys, "sweep", "--model", str(tmp_path / "llama-2-7b" / "config.json"),
                     str(tmp_path / "mistral-7b" / "config.json"), "vanilla_410", "vanilla_410",
                     "--out", "-")
    assert rc == 0
    assert list(pd.read_csv(io.StringIO(out))["model"]) == [
        "llama-2-7b", "mistral-7b", "vanilla_410", "vanilla_410 (2)"]


def test_api_accepts_config_paths_and_checkpoint_aliases():
    w = Workload(prompt_tokens=512, generated_tokens=64)
    by_path = estimate(str(LLAMA7), "a100-sxm-80gb", w)
    assert by_path.model == "llama-2-7b" and by_path.weights_bytes == 2 * 6_738_415_616
    assert estimate(LLAMA7, "a100-sxm-80gb", w) == by_path  # a Path as well
    df = sweep([str(LLAMA7), "vanilla_410"], "a100-sxm-80gb")
    assert list(df["model"]) == ["llama-2-7b", "vanilla_410"]
    want = estimate("vanilla_410", "h100-sxm-80gb", w)
    for alias in ("pythia-410m", "EleutherAI/pythia-410m", "eleutherai/pythia-410m-deduped",
                  "Pythia 410M"):
        assert estimate(alias, "h100-sxm-80gb", w) == want
    assert costmodel.get_preset("EleutherAI/pythia-160m").name == "vanilla_160"
    with pytest.raises(ValueError, match="did you mean"):
        costmodel.get_preset("pythia-400m")


def test_plan_capacity_is_exported_and_documented():
    assert costmodel.plan_capacity is costmodel.capacity.plan_capacity
    assert "plan_capacity" in costmodel.__all__ and "batch_curve" in costmodel.__all__
    readme = (ROOT / "README.md").read_text()
    assert "plan_capacity(" in readme
    plan = costmodel.plan_capacity("pythia-410m", "h100-sxm-80gb",
                                   Workload(prompt_tokens=2048, generated_tokens=128),
                                   target_tokens_per_s=1e6)
    assert plan.replicas >= 1 and plan.batch == plan.max_batch == 356


def test_spec_file_errors_in_the_projects_words(capsys, tmp_path):
    spec = costmodel.get_preset("vanilla_70").model_dump()
    spec["stack"] |= {"d_model": -3, "bogus": 1, "mlp": "relu"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    rc, _, err = run(capsys, "estimate", "--model", str(path), "--prompt", "10",
                     "--generate", "5")
    assert rc == 2
    assert err.strip() == (f"error: --model {path}: stack.d_model: must be > 0, got -3; "
                           "stack.mlp: must be one of 'gelu' or 'gated_silu', got 'relu'; "
                           "stack.bogus: is not a known field (misspelled?)")
    assert "Input should" not in err and "Extra inputs" not in err


def test_building_the_parser_does_not_import_torch():
    """Every CLI call builds the whole parser; torch (seconds) loads only for the validate
    commands that run the reference (docs/formula-cache.md: cold estimate vs import)."""
    import subprocess
    import sys

    code = ("import sys; from costmodel.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
                         check=True).stdout.strip()
    assert out == "[]"
