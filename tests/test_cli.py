"""`blockroof` CLI: outputs, JSON shape, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from costmodel.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_presets_json(capsys):
    rc, out, _ = run(capsys, "presets", "--json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == 10
    by = {r["name"]: r for r in rows}
    assert by["block_main_b4_1.2b"]["params_total"] == 1_448_800_256
    assert set(rows[0]) >= {"name", "kind", "params_total", "params_non_embedding"}


def test_hardware_lists_database(capsys):
    rc, out, _ = run(capsys, "hardware")
    assert rc == 0 and "h100-sxm-80gb" in out and "mi300x" in out
    rc, out, _ = run(capsys, "hardware", "--json")
    assert any(h["id"] == "a100-sxm-80gb" for h in json.loads(out))


def test_estimate_json_has_documented_keys(capsys):
    rc, out, _ = run(capsys, "estimate", "--model", "block_main_b4_85", "--hardware",
                     "h100-sxm-80gb", "--prompt", "2048", "--generate", "128", "--batch", "max",
                     "--json")
    data = json.loads(out)
    assert rc == 0
    for key in ("batch", "ttft_s", "tpot_s", "request_time_s", "throughput_tokens_per_s",
                "kv_cache_bytes_per_sample", "memory_bytes_per_sample", "memory_bytes_total",
                "flops_total", "ops"):
        assert key in data
    assert data["batch"] == data["max_batch"] > 1
    op = data["ops"][0]
    assert set(op) >= {"name", "flops", "weight_bytes", "activation_bytes", "kv_bytes",
                       "time_s", "bound"}
    assert data["throughput_tokens_per_s"] == pytest.approx(
        data["batch"] * 128 / data["request_time_s"])


def test_estimate_text_and_spec_file(capsys, tmp_path):
    from costmodel import get_preset

    path = tmp_path / "model.json"
    path.write_text(get_preset("vanilla_70").model_dump_json())
    rc, out, _ = run(capsys, "estimate", "--model", str(path), "--prompt", "100",
                     "--generate", "10")
    assert rc == 0 and "throughput_tokens_per_s" in out and "prefill" in out


@pytest.mark.parametrize(("argv", "needle"), [
    (["estimate", "--model", "vanilla_4100", "--prompt", "1", "--generate", "1"],
     "model: unknown preset"),
    (["estimate", "--model", "vanilla_70", "--hardware", "h100", "--prompt", "1",
      "--generate", "1"], "hardware: unknown id 'h100'"),
    (["estimate", "--model", "vanilla_70", "--prompt", "0", "--generate", "1"],
     "--prompt (prompt_tokens)"),
    (["estimate", "--model", "vanilla_70", "--prompt", "5", "--generate", "-2"],
     "--generate (generated_tokens)"),
    (["estimate", "--model", "vanilla_70", "--prompt", "5", "--generate", "2", "--batch", "0"],
     "--batch: expected a whole number >= 1 or 'max'"),
    (["sweep", "--model", "vanilla_70", "--batch", "1,x", "--out", "x.csv"], "--batch"),
    (["formula", "nonsense"], "unknown formula"),
    (["estimate", "--model", "vanilla_70", "--prompt", "5", "--generate", "2", "--efficiency",
      "overlap=1.5"], "--efficiency overlap: Input should be less than or equal to 1 (got 1.5)"),
    (["estimate", "--model", "vanilla_70", "--prompt", "5", "--generate", "2", "--efficiency",
      "speed=2"], "--efficiency: expected NAME=VALUE with NAME one of matmul, bandwidth"),
    (["sweep", "--model", "vanilla_70", "--out", "x.csv", "--efficiency", "matmul=fast"],
     "--efficiency matmul: expected a number, got 'fast'"),
])
def test_bad_input_is_one_line(capsys, argv, needle):
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_efficiency_overrides(capsys, tmp_path):
    from costmodel import Workload, estimate, get_hardware

    argv = ["estimate", "--model", "vanilla_70", "--prompt", "512", "--generate", "8",
            "--batch", "4", "--json"]
    rc, out, _ = run(capsys, *argv, "--efficiency", "matmul=0.5", "overlap=0")
    hw = get_hardware("h100-sxm-80gb").with_efficiency(matmul=0.5, overlap=0.0)
    expected = estimate("vanilla_70", hw, Workload(batch=4, prompt_tokens=512,
                                                   generated_tokens=8))
    assert rc == 0 and json.loads(out)["request_time_s"] == pytest.approx(
        expected.request_time_s, rel=1e-12)
    rc, plain, _ = run(capsys, *argv)
    assert json.loads(plain)["request_time_s"] < expected.request_time_s
    rc, out, _ = run(capsys, "sweep", "--model", "vanilla_70", "--hardware", "h100-sxm-80gb",
                     "a100-sxm-80gb", "--efficiency", "overlap=0", "--out",
                     str(tmp_path / "s.csv"))
    assert rc == 0 and "wrote 2 design points" in out


def test_inconsistent_spec_file(capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"kind": "vanilla", "stack": {
        "n_layers": 2, "d_model": 100, "n_heads": 3, "d_ffn": 400}}))
    rc, _, err = run(capsys, "estimate", "--model", str(path), "--prompt", "5", "--generate", "1")
    assert rc == 2 and "divisible by n_heads" in err


def test_sweep_writes_file_atomically(capsys, tmp_path):
    out = tmp_path / "s.csv"
    rc, stdout, _ = run(capsys, "sweep", "--model", "vanilla_70", "block_main_b4_19",
                        "--batch", "1,8", "--prompt", "128,2048", "--generate", "128",
                        "--out", str(out))
    assert rc == 0 and "wrote 8 design points" in stdout
    assert out.read_text().count("\n") == 9
    assert not list(tmp_path.glob("*.tmp"))
    rc, _, err = run(capsys, "sweep", "--model", "vanilla_70", "--out", str(tmp_path / "s.txt"))
    assert rc == 2 and "--out" in err


def test_formula_latex(capsys):
    rc, out, _ = run(capsys, "formula", "kv_cache_bytes_per_sample", "--latex")
    assert rc == 0 and "s_{kv}" in out


def test_paper_json(capsys):
    rc, out, _ = run(capsys, "paper", "--json")
    data = json.loads(out)
    assert rc == 0 and len(data["table"]) == 20 and len(data["pairs"]) == 10
    rows = {(r["preset"], r["setting"]): r for r in data["table"]}
    for r in data["table"]:  # the ratios printed are those of the printed throughputs
        for p in ("static", "hf-legacy"):
            assert r[f"{p}_over_paper"] == pytest.approx(
                r[f"{p}_throughput_tok_s"] / r["paper_throughput_tok_s"], rel=1e-9)
    for pair in data["pairs"]:
        v, b = rows[(pair["vanilla"], pair["setting"])], rows[(pair["block"], pair["setting"])]
        assert pair["paper_ratio"] == pytest.approx(
            b["paper_throughput_tok_s"] / v["paper_throughput_tok_s"], rel=1e-9)
        assert pair["hf-legacy_ratio"] == pytest.approx(
            b["hf-legacy_throughput_tok_s"] / v["hf-legacy_throughput_tok_s"], rel=1e-9)


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "costmodel.cli", "estimate", "--model",
                           "nope", "--prompt", "1", "--generate", "1"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: model: unknown preset")
