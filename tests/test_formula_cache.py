"""The on-disk formula cache: reused within a code version, rebuilt otherwise, thread-safe."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import sympy as sp

from costmodel import formula_cache, metrics
from costmodel.api import estimate, resolve_model, structure_key
from costmodel.implementation import get_implementation

KEY = structure_key(resolve_model("vanilla_410"), get_implementation("static"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real build of vanilla_410's formulas and the file it wrote (built once: seconds)."""
    folder = tmp_path_factory.mktemp("formulas")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(formula_cache.CACHE_ENV, str(folder))
        metrics.formulas.cache_clear()
        f = metrics.formulas(KEY)
        metrics.formulas.cache_clear()
    (path,) = folder.glob("formulas-*.json")
    return f, path


@pytest.fixture
def cache(tmp_path, monkeypatch, built):
    """An empty cache folder in which a build costs nothing (it returns the module's build)."""
    monkeypatch.setenv(formula_cache.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(metrics.Formulas, "build",
                        classmethod(lambda cls, key: _record(key, built[0])))
    metrics.formulas.cache_clear()
    BUILDS.clear()
    yield tmp_path
    metrics.formulas.cache_clear()


BUILDS: list[object] = []


def _record(key, f):
    BUILDS.append(key)
    return metrics.Formulas(key, f.row_labels, dict(f._sources), f._expressions())


def _count_builds(monkeypatch) -> list[object]:
    BUILDS.clear()
    return BUILDS


def test_second_process_reads_the_file_instead_of_building(cache, monkeypatch):
    calls = _count_builds(monkeypatch)
    built = metrics.formulas(KEY)
    want = estimate("vanilla_410", "h100-sxm-80gb")
    assert calls == [KEY]
    files = list(cache.glob("formulas-*.json"))
    assert len(files) == 1 and formula_cache.code_version() in files[0].name

    metrics.formulas.cache_clear()  # as a new process: nothing in memory
    loaded = metrics.formulas(KEY)
    assert loaded is not built
    assert estimate("vanilla_410", "h100-sxm-80gb") == want
    assert calls == [KEY]  # no rebuild
    assert loaded.row_labels == [(r.phase, r.op) for r in built.rows]
    # the sympy expressions come back equal, on demand
    for name in ("ttft_s", "max_batch", "kv_overtakes_weights_context"):
        assert sp.simplify(loaded.metrics[name] - built.metrics[name]) == 0
    assert loaded.rows[3].time == built.rows[3].time


@pytest.mark.parametrize("damage", ["other_version", "corrupt", "truncated", "other_key"])
def test_a_file_that_cannot_be_trusted_is_rebuilt(cache, monkeypatch, damage):
    metrics.formulas(KEY)
    want = estimate("vanilla_410", "h100-sxm-80gb")
    (path,) = cache.glob("formulas-*.json")
    data = json.loads(path.read_text())
    if damage == "other_version":
        # a file written by other code, found under this version's name: never trusted
        data["code_version"] = "0" * 20
        path.write_text(json.dumps(data))
    elif damage == "corrupt":
        data["sources"]["*all*"] = data["sources"]["*all*"].replace("+", "-", 1)
        path.write_text(json.dumps(data))  # checksum no longer matches
    elif damage == "truncated":
        path.write_text(path.read_text()[:1000])
    else:
        data["key"] = "another structure"
        path.write_text(json.dumps(data))
    metrics.formulas.cache_clear()
    calls = _count_builds(monkeypatch)
    assert estimate("vanilla_410", "h100-sxm-80gb") == want
    assert calls == [KEY]
    assert json.loads(path.read_text())["key"] == repr(KEY)  # written again, whole


def test_code_version_covers_the_formula_sources(monkeypatch):
    from pathlib import Path

    here = Path(formula_cache.__file__).parent
    covered = {p.name for p in here.glob("*.py")} - formula_cache._NOT_FORMULA_SOURCES
    assert {"ops.py", "phases.py", "roofline.py", "memory.py", "sums.py", "symbols.py",
            "metrics.py", "spec.py", "implementation.py"} <= covered
    # a changed source changes the version (so old files are never read)
    before = formula_cache.code_version()
    formula_cache.code_version.cache_clear()
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: real(p) + (b"#" if p.name == "ops.py"
                                                                 else b""))
    try:
        assert formula_cache.code_version() != before
    finally:
        formula_cache.code_version.cache_clear()


def test_switched_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(formula_cache.CACHE_ENV, "off")
    monkeypatch.chdir(tmp_path)
    assert formula_cache.cache_dir() is None
    assert formula_cache.save("k", {"x": 1}) is None and formula_cache.load("k") is None


def test_unwritable_folder_still_answers(tmp_path, monkeypatch, cache):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(formula_cache.CACHE_ENV, str(blocker / "sub"))
    metrics.formulas.cache_clear()
    try:
        assert estimate("vanilla_410", "h100-sxm-80gb").max_batch > 0
    finally:
        metrics.formulas.cache_clear()


def test_many_threads_build_one_structure_once(monkeypatch):
    """Concurrent first calls for one structure build it once and share the object."""
    monkeypatch.setenv(formula_cache.CACHE_ENV, "off")
    metrics.formulas.cache_clear()
    calls: list[object] = []

    def slow_build(key):
        calls.append(key)
        time.sleep(0.2)  # wide window for a second builder to slip in
        return metrics.Formulas(key, [], {}, ([], {}))

    monkeypatch.setattr(metrics.Formulas, "build", classmethod(lambda cls, key: slow_build(key)))
    key2 = KEY._replace(tied=not KEY.tied)
    results: list[object] = []
    start = threading.Barrier(9)

    def worker(key):
        start.wait()
        results.append(metrics.formulas(key))

    threads = [threading.Thread(target=worker, args=(KEY if i % 2 else key2,)) for i in range(8)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    metrics.formulas.cache_clear()
    assert sorted(map(repr, calls)) == sorted([repr(KEY), repr(key2)])  # once per structure
    assert len({id(r) for r in results}) == 2


def test_compiled_functions_from_source_match_lambdify():
    x, y = sp.symbols("x y", positive=True)
    expr = sp.Max(x, y, 2 * x) + sp.ceiling(x / y)
    src = metrics.inspect.getsource(sp.lambdify([x, y], expr, "numpy", cse=True))
    fn = formula_cache.function_from_source(src)
    a, b = np.array([1.0, 3.0, 0.5]), np.array([2.0, 1.0, 4.0])
    assert np.allclose(fn(a, b), np.maximum(np.maximum(a, b), 2 * a) + np.ceil(a / b))
