"""Requests and arrivals: a `Trace` of (arrival time, prompt tokens, generated tokens).

Sources (docs/serving.md 2):
- `poisson_trace(rate, duration_s, prompt, generated, seed)`: exponential inter-arrival times at
  `rate` requests/s over [0, duration_s), lengths drawn from `Distribution`s. The draws are made
  at unit rate and scaled by 1/rate, so one seed gives the same requests at every rate (common
  random numbers: planning compares rates on the same requests).
- `read_trace(path)`: a text file, one request a line: ``arrival_s prompt_tokens
  generated_tokens`` separated by spaces, tabs or commas; ``#`` starts a comment; a header line
  is allowed. Malformed lines are reported with their line number and skipped; the rest is kept.

Distributions (`parse_distribution`): ``N`` (a constant), ``uniform:LO:HI`` (integers, both
ends included), ``lognormal:MEDIAN:SIGMA[:MAX]`` (exp(N(log MEDIAN, SIGMA)), rounded, clipped to
1..MAX, MAX default 32768).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from costmodel.errors import UserError

MAX_TOKENS = 1 << 20  # a request longer than a million tokens is an input mistake
MAX_REQUESTS = 5_000_000


@dataclass(frozen=True)
class Distribution:
    """A distribution of token counts (module docstring)."""

    kind: str  # "const", "uniform", "lognormal"
    a: float
    b: float = 0.0
    cap: float = 32768.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "const":
            return np.full(n, int(self.a), dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(int(self.a), int(self.b) + 1, size=n, dtype=np.int64)
        x = np.exp(rng.normal(math.log(self.a), self.b, size=n))
        return np.clip(np.rint(x), 1, self.cap).astype(np.int64)

    @property
    def mean(self) -> float:
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return min(self.a * math.exp(self.b**2 / 2), self.cap)

    def __str__(self) -> str:
        if self.kind == "const":
            return str(int(self.a))
        if self.kind == "uniform":
            return f"uniform:{int(self.a)}:{int(self.b)}"
        return f"lognormal:{self.a:g}:{self.b:g}:{int(self.cap)}"


def parse_distribution(text: str | int, field: str = "tokens") -> Distribution:
    """``N``, ``uniform:LO:HI`` or ``lognormal:MEDIAN:SIGMA[:MAX]``; UserError naming `field`."""
    if isinstance(text, int | np.integer):
        text = str(int(text))
    parts = str(text).strip().split(":")
    rule = (f"{field}: expected N, uniform:LO:HI or lognormal:MEDIAN:SIGMA[:MAX] with whole "
            f"token counts 1..{MAX_TOKENS}, got {text!r}")
    try:
        if len(parts) == 1:
            n = int(parts[0])
            if not 1 <= n <= MAX_TOKENS:
                raise UserError(rule)
            return Distribution("const", n)
        kind, args = parts[0].lower(), [float(p) for p in parts[1:]]
    except ValueError:
        raise UserError(rule) from None
    if kind == "uniform" and len(args) == 2:
        lo, hi = args
        if lo == int(lo) and hi == int(hi) and 1 <= lo <= hi <= MAX_TOKENS:
            return Distribution("uniform", lo, hi)
    if kind == "lognormal" and len(args) in (2, 3):
        med, sigma = args[:2]
        cap = args[2] if len(args) == 3 else 32768.0
        if 1 <= med <= MAX_TOKENS and 0 <= sigma <= 5 and 1 <= cap <= MAX_TOKENS:
            return Distribution("lognormal", med, sigma, cap)
    raise UserError(rule)


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival: arrival_s [n] float64, prompt/generated tokens [n] int64."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    generated_tokens: np.ndarray
    source: str = ""
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if n == 0:
            raise UserError(f"trace: no requests{f' in {self.source}' if self.source else ''}")
        if len(self.prompt_tokens) != n or len(self.generated_tokens) != n:
            raise UserError("trace: arrival_s, prompt_tokens and generated_tokens differ in "
                            "length")
        if n > MAX_REQUESTS:
            raise UserError(f"trace: {n} requests is more than the limit {MAX_REQUESTS}")
        order = np.argsort(self.arrival_s, kind="stable")
        for name in ("arrival_s", "prompt_tokens", "generated_tokens"):
            object.__setattr__(self, name, np.asarray(getattr(self, name))[order])

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def span_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0


MAX_DURATION_S = 30 * 24 * 3600.0  # a month of simulated time


def check_rate(rate: float, field: str = "rate") -> float:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise UserError(f"{field}: must be a number > 0 (requests/s), got {rate!r}")
    return float(rate)


def check_duration(duration_s: float, field: str = "duration") -> float:
    if not (isinstance(duration_s, int | float) and math.isfinite(duration_s)
            and 0 < duration_s <= MAX_DURATION_S):
        raise UserError(f"{field}: must be > 0 and at most {MAX_DURATION_S:g} s (30 days), "
                        f"got {duration_s!r}")
    return float(duration_s)


def poisson_trace(rate: float, duration_s: float, prompt: Distribution | str | int,
                  generated: Distribution | str | int, seed: int = 0) -> Trace:
    """Poisson arrivals at `rate` requests/s over [0, duration_s) (module docstring)."""
    rate = check_rate(rate)
    duration_s = check_duration(duration_s)
    expected = rate * duration_s
    if expected > MAX_REQUESTS:
        raise UserError(f"duration: rate x duration = {expected:.3g} requests is more than the "
                        f"limit {MAX_REQUESTS}; shorten the duration")
    p = prompt if isinstance(prompt, Distribution) else parse_distribution(prompt, "prompt_tokens")
    g = generated if isinstance(generated, Distribution) else \
        parse_distribution(generated, "generated_tokens")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UserError(f"seed: must be a whole number >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    # enough unit-rate gaps for the window (mean + 10 sigma), cut at duration
    n_max = int(expected + 10 * math.sqrt(expected) + 20)
    t = np.cumsum(rng.exponential(1.0, size=n_max)) / rate
    n = int(np.searchsorted(t, duration_s))
    lens = np.random.default_rng([seed, 1])  # lengths independent of the rate
    prompts, gens = p.sample(lens, n_max)[:n], g.sample(lens, n_max)[:n]
    return Trace(t[:n], prompts, gens, source=f"poisson rate {rate:g}/s, {duration_s:g} s, "
                 f"prompt {p}, generated {g}, seed {seed}")


_SPLIT = re.compile(r"[,\s]+")


def read_trace(path: str | Path) -> Trace:
    """A trace file (module docstring); malformed lines become `Trace.warnings`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"trace: cannot read {path}: {e.strerror or e}") from None
    arr, pr, ge, warns = [], [], [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in _SPLIT.split(line) if f]
        try:
            if len(fields) != 3:
                raise ValueError(f"expected 3 fields (arrival_s prompt_tokens "
                                 f"generated_tokens), got {len(fields)}")
            t, s, g = float(fields[0]), float(fields[1]), float(fields[2])
            if not (math.isfinite(t) and t >= 0):
                raise ValueError(f"arrival_s must be a number >= 0, got {fields[0]!r}")
            for name, v, f in (("prompt_tokens", s, fields[1]), ("generated_tokens", g, fields[2])):
                if not (v == int(v) and 1 <= v <= MAX_TOKENS):
                    raise ValueError(f"{name} must be a whole number 1..{MAX_TOKENS}, got {f!r}")
        except (ValueError, OverflowError) as e:
            if lineno == 1 and not arr and not any(c.isdigit() for c in fields[0][:1]):
                continue  # a header line
            warns.append(f"{path.name}:{lineno}: {e}; line skipped")
            continue
        arr.append(t)
        pr.append(int(s))
        ge.append(int(g))
    if not arr:
        extra = f" ({len(warns)} malformed lines, first: {warns[0]})" if warns else ""
        raise UserError(f"trace: no valid requests in {path}{extra}")
    return Trace(np.array(arr, dtype=np.float64), np.array(pr, dtype=np.int64),
                 np.array(ge, dtype=np.int64), source=str(path), warnings=tuple(warns))
