"""Layering (docs/design.md): `costmodel` imports no torch/streamlit and nothing from `validation`,
`reference` or `app`; `blockroof validate` without torch is one line and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def test_costmodel_imports_nothing_above_it():
    r = _python("""
        import importlib, pkgutil, sys
        import costmodel
        names = [m.name for m in pkgutil.walk_packages(costmodel.__path__, "costmodel.")]
        for name in names:
            importlib.import_module(name)
        import costmodel.cli
        costmodel.cli.build_parser("estimate")   # every command but the torch ones
        bad = sorted(m for m in sys.modules
                     if m.split(".")[0] in ("validation", "reference", "app", "torch",
                                            "streamlit"))
        print(len(names), bad)
    """)
    assert r.returncode == 0, r.stderr
    n, bad = r.stdout.split(" ", 1)
    assert int(n) >= 15  # every module was imported, not an empty walk
    assert bad.strip() == "[]"


BLOCK_TORCH = """
    import sys
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Blocker())
    from costmodel.cli import main
    rc = main(ARGV)
    print("rc", rc)
"""


def test_validate_without_torch_is_one_line_exit_2():
    r = _python(BLOCK_TORCH.replace(
        "ARGV", "['validate', 'count', '--model', 'vanilla_31', '--prompt', '4', '--generate', '2']"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "rc 2"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: validate: needs the Python package 'torch'")


def test_other_commands_work_without_torch():
    r = _python(BLOCK_TORCH.replace("ARGV", "['presets']"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "rc 0"
    assert "vanilla_410" in r.stdout
