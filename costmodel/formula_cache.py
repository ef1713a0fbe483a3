"""Compiled formulas kept on disk, so a new process does not rebuild them (docs/formula-cache.md).

Building a model structure's formulas (sympy) and compiling them (`lambdify` with common
subexpressions) takes seconds; reading them back takes milliseconds. One file per structure
holds:

- the Python source `lambdify` generated for the all-at-once function and for every metric
  (lambdified functions cannot be pickled, their source can: it is executed again in the
  namespace `lambdify` itself gives numpy functions);
- the (phase, op) labels of the rows, which `estimate` needs without any sympy;
- the sympy rows and metric expressions, pickled, unpickled only when someone asks for an
  expression (`formula`, the count validation), about 0.5-1 s instead of a rebuild.

Trust rules: a file is used only when its code version equals this process's (a digest of the
cost-model sources that build formulas plus the Python, sympy and numpy versions) and its
structure key equals the one asked for; anything else (another version, a corrupt or truncated
file, a read error) is ignored and the formulas are rebuilt and written again. Files are written
to a temporary name and renamed (atomic on POSIX and Windows). Deleting the folder is always
safe. The folder is ``$BLOCKROOF_CACHE_DIR`` when set (``off`` disables the disk cache), else
the user's cache folder (``$XDG_CACHE_HOME/blockroof``, ``~/.cache/blockroof``,
``~/Library/Caches/blockroof`` or ``%LOCALAPPDATA%\\blockroof\\cache``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

CACHE_ENV = "BLOCKROOF_CACHE_DIR"
FORMAT = 1

# costmodel modules that cannot change a formula; every other costmodel/*.py (including modules
# added later) is part of the code version, so an unlisted new module only costs a rebuild.
_NOT_FORMULA_SOURCES = frozenset({
    "api.py", "cli.py", "errors.py", "formula_cache.py", "hardware.py", "hf_config.py",
    "paper.py", "presets.py", "capacity.py", "units.py", "aliases.py", "__init__.py",
})


def cache_dir() -> Path | None:
    """Where formula files live, or None when the disk cache is switched off."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "blockroof" / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "blockroof"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "blockroof"


@functools.cache
def code_version() -> str:
    """Digest of the sources that build formulas and of the libraries that print them."""
    import numpy
    import sympy

    h = hashlib.sha256()
    h.update(f"{FORMAT}|{platform.python_version()}|{sympy.__version__}|{numpy.__version__}"
             .encode())
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*.py")):
        if path.name not in _NOT_FORMULA_SOURCES:
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def _path(folder: Path, key_text: str) -> Path:
    digest = hashlib.sha256(key_text.encode()).hexdigest()[:24]
    return folder / f"formulas-{code_version()}-{digest}.json"


def load(key_text: str) -> dict[str, Any] | None:
    """The stored entry for a structure, or None (missing, other version, unreadable)."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        data = json.loads(_path(folder, key_text).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and data.get("format") == FORMAT
            and data.get("code_version") == code_version() and data.get("key") == key_text):
        return None
    text = json.dumps({k: v for k, v in data.items() if k != "checksum"}, sort_keys=True)
    if hashlib.sha256(text.encode()).hexdigest() != data.get("checksum"):
        return None
    return data


def save(key_text: str, entry: dict[str, Any]) -> Path | None:
    """Write an entry atomically; a read-only or full disk only costs the next process time."""
    folder = cache_dir()
    if folder is None:
        return None
    data = {"format": FORMAT, "code_version": code_version(), "key": key_text, **entry}
    data["checksum"] = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    path = _path(folder, key_text)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return None
    return path


def pack_exprs(obj: Any) -> str:
    """Sympy objects as text for the JSON file (pickle, hex-encoded)."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL).hex()


def unpack_exprs(text: str) -> Any:
    return pickle.loads(bytes.fromhex(text))  # noqa: S301 - our own cache file, version-checked


@functools.cache
def _namespace() -> dict[str, Any]:
    """The globals `lambdify(..., "numpy")` runs its generated code in."""
    import sympy as sp

    x = sp.Symbol("x")
    ns = dict(sp.lambdify([x], x, modules="numpy").__globals__)
    ns["reduce"] = functools.reduce  # printed for n-ary Max/Min
    return ns


def function_from_source(source: str, name: str = "_lambdifygenerated"):
    """Rebuild a lambdified function from the source `lambdify` generated for it."""
    ns = dict(_namespace())
    exec(compile(source, f"<blockroof formula {name}>", "exec"), ns)  # noqa: S102 - our source
    return ns[name]
