"""Regression corpus of bad inputs over every surface (docs/reliability.md): the CLI (every
subcommand, `validate` too), the Python API, datasets and hardware files, and the dashboard's
URL parameters. Each bad input must end in a clean answer: for the CLI, exit status 2 and one
last stderr line naming the input, the value or the rule, no traceback and no file left
behind; for the API, an exception that `costmodel.errors.user_message` recognises as the
user's (not a bug); for URL parameters, a warning quoting the value as given and the default
kept. CLI rows live in tests/data/bad_inputs_cli.csv and run in-process through
`costmodel.cli.main(argv)`; a few run through the real `blockroof` entry point.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from costmodel.cli import main
from costmodel.errors import user_message

ROOT = Path(__file__).resolve().parent.parent
TABLE = Path(__file__).parent / "data" / "bad_inputs_cli.csv"
LLAMA = ROOT / "examples" / "configs" / "llama-2-7b.json"


def _cli_rows() -> list[dict[str, str]]:
    lines = [ln for ln in TABLE.read_text().splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="|"))


CLI_ROWS = _cli_rows()

_HW = {"id": "my-gpu", "name": "My GPU", "vendor": "x", "memory_bandwidth_GBps": 1000.0,
       "memory_capacity_GB": 16, "memory_capacity_unit": "GiB",
       "peak": {"bf16_TFLOPs": 100.0}, "sources": ["test"]}


def _make_broken_files(d: Path) -> None:
    llama = json.loads(LLAMA.read_text())
    (d / "bin.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe garbage \x80\x81")
    (d / "latin1.json").write_bytes('{"model_type": "llama", "name": "café"}'.encode("latin-1"))
    (d / "empty.json").write_text("")
    (d / "notjson.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2]")
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "dir.json").mkdir()
    (d / "outdir.csv").mkdir()
    (d / "outdir.json").mkdir()
    (d / "outdir.png").mkdir()
    (d / "file.txt").write_text("a file, not a folder")
    (d / "cfg_missing.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    (d / "cfg_neg.json").write_text(json.dumps(llama | {"hidden_size": -4096}))
    (d / "cfg_type.json").write_text(json.dumps(llama | {"model_type": "bert"}))
    (d / "cfg_str.json").write_text(json.dumps(llama | {"num_hidden_layers": "many"}))
    (d / "cfg_heads.json").write_text(json.dumps(llama | {"num_attention_heads": 33}))
    stack = {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_ffn": 256}
    (d / "spec_bad.json").write_text(json.dumps(
        {"kind": "vanilla", "name": "x", "stack": stack | {"n_layers": 0}}))
    (d / "spec_extra.json").write_text(json.dumps(
        {"kind": "vanilla", "name": "x", "stack": stack, "colour": "red"}))
    (d / "hw_bad.json").write_text(json.dumps(_HW | {"efficiency": {"matmul": 2.0}}))
    (d / "hw_inf.json").write_text(
        json.dumps(_HW).replace('"sources"', '"efficiency": {"kernel_overhead_s": Infinity}, '
                                             '"sources"'))
    (d / "hw_neg_peak.json").write_text(json.dumps(_HW | {"peak": {"bf16_TFLOPs": -1}}))
    (d / "hw_list.json").write_text("[]")
    (d / "mistral.json").write_text((ROOT / "examples" / "configs" / "mistral-7b-v0.1.json")
                                    .read_text())


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("broken")
    _make_broken_files(d)
    return d


def _argv(row: dict[str, str], d: Path) -> list[str]:
    argv = shlex.split(row["argv"].replace("{d}", str(d)))
    return [",".join(map(str, range(1, int(a[6:]) + 1))) if a.startswith("@range") else a
            for a in argv]


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


@pytest.mark.parametrize("row", CLI_ROWS, ids=[r["argv"][:70] for r in CLI_ROWS])
def test_cli_bad_input(row: dict[str, str], broken: Path, capsys: pytest.CaptureFixture) -> None:
    before = _files(broken)
    try:
        status = main(_argv(row, broken))
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert status == int(row["status"]), (out, err)
    assert "Traceback" not in err and lines, err
    assert row["fragment"].lower() in lines[-1].lower(), lines[-1]
    assert "error: " in lines[-1]
    if not lines[0].startswith("usage:"):  # not argparse's: exactly one line
        assert len(lines) == 1, err
    assert _files(broken) == before  # nothing written, no temporary file left


def test_corpus_covers_the_issue() -> None:
    """>= 200 bad inputs over all surfaces, the issue's 55 among them."""
    total = len(CLI_ROWS) + len(API_CASES) + len(URL_CASES) + len(APP_URL_CASES) \
        + len(DATASET_CASES) + len(ENTRY_POINT_CASES)
    issue = sum(r["issue16"] == "1" for r in CLI_ROWS) + sum(c[0] for c in API_CASES) \
        + sum(c[0] for c in URL_CASES) + len(APP_URL_CASES) + sum(c[0] for c in DATASET_CASES)
    assert total >= 200 and issue >= 55, (total, issue)


# --- Python API -------------------------------------------------------------------------------

def _api_cases() -> list[tuple[bool, str, Callable[[], Any], str]]:
    from costmodel import api
    from costmodel.api import estimate, formula, formula_names, max_batch, plan_sweep, sweep
    from costmodel.capacity import plan_capacity
    from costmodel.hardware import Efficiency, get_hardware
    from costmodel.hf_config import load_hf_config, spec_from_hf_config
    from costmodel.presets import get_preset
    from costmodel.workload import Workload

    inf, nan = math.inf, math.nan
    wl = Workload(prompt_tokens=8, generated_tokens=8)
    h100 = "h100-sxm-80gb"
    return [
        (True, "sweep([])", lambda: sweep([]), "models: needs at least one"),
        (True, "sweep(hardware=[])", lambda: sweep("vanilla_70", hardware=[]),
         "hardware: needs at least one"),
        (True, "sweep reserve -1", lambda: sweep("vanilla_70", memory_reserve_bytes=-1),
         "memory_reserve_bytes: must be a finite number >= 0"),
        (True, "sweep reserve nan", lambda: sweep("vanilla_70", memory_reserve_bytes=nan),
         "memory_reserve_bytes"),
        (True, "sweep reserve inf", lambda: sweep("vanilla_70", memory_reserve_bytes=inf),
         "memory_reserve_bytes"),
        (False, "sweep reserve text", lambda: sweep("vanilla_70", memory_reserve_bytes="x"),
         "expected a number"),
        (True, "sweep 10^8 in memory",
         lambda: sweep("vanilla_70", batch=range(1, 1001), prompt_tokens=range(1, 1001),
                       generated_tokens=range(1, 101)), "exceed the in-memory limit"),
        (False, "sweep batch []", lambda: sweep("vanilla_70", batch=[]), "batch: needs"),
        (False, "sweep batch 0", lambda: sweep("vanilla_70", batch=[0]), "whole number from 1"),
        (False, "sweep batch 1.5", lambda: sweep("vanilla_70", batch=[1.5]), "whole number"),
        (False, "sweep batch nan", lambda: sweep("vanilla_70", batch=[nan]), "whole number"),
        (False, "sweep batch 'big'", lambda: sweep("vanilla_70", batch="big"), "'max'"),
        (False, "sweep prompt -1", lambda: sweep("vanilla_70", prompt_tokens=-1), "prompt_tokens"),
        (False, "sweep prompt inf", lambda: sweep("vanilla_70", prompt_tokens=inf),
         "prompt_tokens"),
        (False, "sweep generated 0", lambda: sweep("vanilla_70", generated_tokens=[0]),
         "generated_tokens"),
        (False, "sweep block_length 0", lambda: sweep("block_main_b4_5", block_length=0),
         "block_length"),
        (False, "sweep metrics unknown", lambda: sweep("vanilla_70", metrics=["speed"]),
         "metrics: unknown"),
        (False, "sweep metrics []", lambda: sweep("vanilla_70", metrics=[]), "metrics: needs"),
        (False, "sweep model 123", lambda: sweep([123]), "model: expected a preset name"),
        (False, "sweep hardware 123", lambda: sweep("vanilla_70", hardware=[123]),
         "hardware: expected an id"),
        (False, "sweep implementation", lambda: sweep("vanilla_70", implementation="fast"),
         "unknown profile"),
        (False, "plan_sweep unknown model", lambda: plan_sweep("nosuch"), "unknown"),
        (True, "formula(123)", lambda: formula(123), "name: expected a formula name"),
        (False, "formula(None)", lambda: formula(None), "name: expected a formula name"),
        (False, "formula unknown", lambda: formula("nosuch"), "unknown formula"),
        (False, "formula bad row", lambda: formula("decode/x/y"), "unknown formula"),
        (False, "formula_names bad model", lambda: formula_names("nosuch"), "unknown"),
        (True, "load_hf_config binary", lambda: load_hf_config(BROKEN / "bin.json"),
         "not UTF-8 text"),
        (False, "load_hf_config dir", lambda: load_hf_config(BROKEN / "dir.json"),
         "is a directory"),
        (False, "load_hf_config missing", lambda: load_hf_config(BROKEN / "missing.json"),
         "does not exist"),
        (False, "load_hf_config deep", lambda: load_hf_config(BROKEN / "deep.json"),
         "nested too deeply"),
        (False, "spec_from_hf_config list", lambda: spec_from_hf_config([1]),
         "must be a JSON object"),
        (True, "Workload reserve inf", lambda: Workload(memory_reserve_bytes=inf), "finite"),
        (True, "Workload reserve nan", lambda: Workload(memory_reserve_bytes=nan), "finite"),
        (False, "Workload reserve -1", lambda: Workload(memory_reserve_bytes=-1),
         "greater than or equal to 0"),
        (False, "Workload batch 0", lambda: Workload(batch=0), "greater than 0"),
        (False, "Workload batch 'all'", lambda: Workload(batch="all"), "batch"),
        (False, "Workload prompt -1", lambda: Workload(prompt_tokens=-1), "greater than 0"),
        (False, "Workload extra key", lambda: Workload(prompt=5), "extra"),
        (True, "Efficiency kernel_overhead_s inf", lambda: Efficiency(kernel_overhead_s=inf),
         "finite"),
        (True, "Efficiency forward_overhead_s inf", lambda: Efficiency(forward_overhead_s=inf),
         "finite"),
        (True, "Efficiency overlap nan", lambda: Efficiency(overlap=nan), "finite"),
        (True, "Efficiency matmul nan", lambda: Efficiency(matmul=nan), "finite"),
        (False, "Efficiency matmul 0", lambda: Efficiency(matmul=0), "greater than 0"),
        (True, "with_efficiency kernel inf",
         lambda: get_hardware(h100).with_efficiency(kernel_overhead_s=inf), "finite"),
        (False, "get_hardware unknown", lambda: get_hardware("nosuch"), "unknown id"),
        (False, "get_hardware binary file", lambda: get_hardware(str(BROKEN / "bin.json")),
         "not UTF-8"),
        (False, "get_hardware dir", lambda: get_hardware(BROKEN / "dir.json"), "is a directory"),
        (False, "get_preset unknown", lambda: get_preset("vanila_410"), "vanilla_410"),
        (False, "estimate model 3.5", lambda: estimate(3.5, h100, wl), "model: expected"),
        (False, "estimate hardware None", lambda: estimate("vanilla_70", None, wl),
         "hardware: expected"),
        (False, "estimate implementation", lambda: estimate("vanilla_70", h100, wl, "fast"),
         "unknown profile"),
        (False, "max_batch memory 0", lambda: max_batch("vanilla_70", 0), "memory_bytes"),
        (False, "max_batch memory nan", lambda: max_batch("vanilla_70", nan), "memory_bytes"),
        (False, "plan_capacity no target", lambda: plan_capacity("vanilla_70", h100, wl),
         "target"),
        (False, "api chunk limit", lambda: api.sweep("vanilla_70", batch=[1, 2], max_points=1),
         "max_points=N"),
    ]


BROKEN = Path()  # set by the fixture below before the API cases run
API_CASES = _api_cases()


@pytest.fixture
def broken_api(broken: Path) -> Path:
    global BROKEN
    BROKEN = broken
    return broken


@pytest.mark.parametrize("case", API_CASES, ids=[c[1] for c in API_CASES])
def test_api_bad_input(case: tuple[bool, str, Callable[[], Any], str], broken_api: Path) -> None:
    _, _, call, fragment = case
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is checked just below
        call()
    msg = user_message(info.value)
    assert msg is not None, f"not recognised as a user error: {info.value!r}"
    assert fragment.lower() in msg.lower(), msg
    assert "\n" not in msg.strip()


# --- datasets and records ---------------------------------------------------------------------

def _dataset_cases() -> list[tuple[bool, str, str, str]]:
    """(issue16, what, dataset.jsonl lines, fragment of the warning)."""
    from validation.dataset import SCHEMA

    ok = {"schema": SCHEMA, "point_id": "p1", "phase": "prefill"}
    return [
        (False, "not JSON", "{oops", "not JSON"),
        (False, "a list", "[1, 2]", "expected a JSON object"),
        (False, "foreign schema", json.dumps({"schema": "other/1"}), "foreign record"),
        (False, "no schema", json.dumps({"point_id": "x"}), "foreign record"),
        (True, "duplicate point", json.dumps(ok) + "\n" + json.dumps(ok), "already on line 1"),
        (False, "binary garbage", "\udcff\udcfe", "not JSON"),
        (False, "partial last line", json.dumps(ok)[:20], "not JSON"),
    ]


DATASET_CASES = _dataset_cases()


@pytest.mark.parametrize("case", DATASET_CASES, ids=[c[1] for c in DATASET_CASES])
def test_dataset_bad_lines(case: tuple[bool, str, str, str], tmp_path: Path) -> None:
    from validation.dataset import read_dataset

    path = tmp_path / "dataset.jsonl"
    path.write_bytes(case[2].encode("utf-8", "surrogateescape") + b"\n")
    before = path.read_bytes()
    data = read_dataset(path)
    assert any(case[3] in p for p in data.problems), data.problems
    assert path.read_bytes() == before  # reported, never rewritten


def test_calibration_skips_unusable_records(tmp_path: Path, capsys) -> None:
    """A record of the right schema but missing what calibration reads (the audit's
    `error: measured_s`) is left out with a warning naming it, not a KeyError."""
    from validation.pipeline import usable_records

    rec = {"point_id": "p1", "phase": "prefill", "spec": {"kind": "vanilla"}}
    assert usable_records([rec], tmp_path / "dataset.jsonl") == []
    assert "point 'p1' not used" in capsys.readouterr().out


# --- dashboard URL parameters -----------------------------------------------------------------

URL_CASES: list[tuple[bool, dict[str, str], str]] = [
    (True, {"batch": "-1"}, "batch='-1' was ignored"),
    (True, {"eff_mm": "2"}, "eff_mm='2' was ignored"),
    (True, {"eff_ov": "-1"}, "eff_ov='-1' was ignored"),
    (True, {"eff_ov": "inf"}, "eff_ov='inf' was ignored"),
    (True, {"reserve_gib": "-1"}, "reserve_gib='-1' was ignored"),
    (True, {"t_kernel_us": "inf"}, "t_kernel_us='inf' was ignored"),
    (True, {"t_forward_us": "inf"}, "t_forward_us='inf' was ignored"),
    (True, {"reserve_gib": "nan"}, "reserve_gib='nan' was ignored"),
    (True, {"eff_bw": "0"}, "eff_bw='0' was ignored"),
    (False, {"batch": "0"}, "batch='0' was ignored"),
    (False, {"batch": "two"}, "expected a whole number"),
    (False, {"prompt": "-3"}, "prompt='-3' was ignored"),
    (False, {"gen": "0"}, "gen='0' was ignored"),
    (False, {"prompt": "1e3"}, "expected a whole number"),
    (False, {"eff_mm": "fast"}, "expected a number"),
    (False, {"eff_mm": "nan"}, "eff_mm='nan' was ignored"),
    (False, {"t_kernel_us": "-5"}, "t_kernel_us='-5' was ignored"),
    (False, {"v_layers": "0"}, "v_layers='0' was ignored"),
    (False, {"v_width": "-64"}, "v_width='-64' was ignored"),
    (False, {"b_lb": "0"}, "b_lb='0' was ignored"),
    (False, {"bf_lb": "-2"}, "bf_lb='-2' was ignored"),
    (False, {"vanilla": "nosuch"}, "vanilla='nosuch' was ignored"),
    (False, {"hw": "nosuch"}, "hw='nosuch' was ignored"),
    (False, {"profile": "fast"}, "profile='fast' was ignored"),
    (False, {"colour": "red"}, "'colour' is unknown"),
]


@pytest.mark.parametrize("case", URL_CASES, ids=[str(c[1]) for c in URL_CASES])
def test_url_parameter_validated_before_widgets(case: tuple[bool, dict[str, str], str]) -> None:
    from app.state import DEFAULT, from_query_params

    whatif, warnings = from_query_params(case[1])
    assert any(case[2] in w for w in warnings), warnings
    assert whatif == DEFAULT  # the bad value is not applied, clamped or coerced


# The issue's six through the running app (AppTest): the warning quotes the value as given,
# no exception, and the widget holds the default, not a clamped value.
APP_URL_CASES = [({"batch": "-1"}, "batch", 64), ({"eff_mm": "2"}, "eff_matmul", None),
                 ({"eff_ov": "-1"}, "eff_overlap", None), ({"eff_ov": "inf"}, "eff_overlap", None),
                 ({"reserve_gib": "-1"}, "reserve_GiB", 0.0),
                 ({"t_kernel_us": "inf"}, "kernel_overhead_us", None)]


def test_app_url_values_are_checked_before_widgets_clamp_them() -> None:
    from streamlit.testing.v1 import AppTest

    for query, key, default in APP_URL_CASES:
        at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=180)
        at.query_params.update(query)
        at.run()
        (name, value), = query.items()
        assert not at.exception, at.exception
        warnings = [w.value for w in at.warning]
        assert any(f"{name}={value!r} was ignored" in w for w in warnings), warnings
        assert at.session_state[key] == default


# --- the real entry point ---------------------------------------------------------------------

ENTRY_POINT_CASES = [
    (["estimate", "--model", "vanilla_410", "--prompt", "1", "--generate", "1",
      "--reserve-gib", "inf"], "--reserve-gib: must be a finite number"),
    (["sweep", "--model", "vanilla_410", "--out", "/nonexistent-dir/o.csv"], "does not exist"),
    (["app", "--port", "-1"], "--port"),
    (["validate", "run", "--device", "cpu", "--suite", "tiny", "--out", "x", "--limit", "-1"],
     "--limit"),
]


def test_entry_point_subprocess(tmp_path: Path) -> None:
    """A handful through `python -m costmodel.cli` (the `blockroof` script's function)."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    for argv, fragment in ENTRY_POINT_CASES:
        r = subprocess.run([sys.executable, "-m", "costmodel.cli", *argv], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and fragment in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_internal_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only user errors are turned into one line: a bug (here an IndexError) propagates."""
    import costmodel.cli as cli

    def broken(args: Any) -> None:
        raise IndexError("a bug")

    monkeypatch.setattr(cli, "cmd_presets", broken)
    with pytest.raises(IndexError, match="a bug"):
        cli.main(["presets"])


def test_failed_atomic_write_leaves_nothing(tmp_path: Path) -> None:
    from costmodel.errors import write_atomic

    target = tmp_path / "out.json"
    target.write_text("old")

    def fail(f: Any) -> None:
        f.write("half")
        raise OSError(28, "No space left on device", str(target))

    with pytest.raises(OSError):
        write_atomic(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]
