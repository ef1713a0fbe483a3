"""Mutation check: does the test suite (a fast subset) or `validate count` catch each small
change to the cost model's formulas?

Each mutation in `MUTATIONS` replaces one piece of text in one `costmodel` file of a copy of the
repository. The copy is then checked, stopping at the first failure:
1. `validate count` (`validation.count.compare`) on `COUNT_CASES` (vanilla, block, and a
   grouped-query Llama config, and a sharded quantised request; static and hf-legacy in fp32,
   the official profiles in bf16, where their fp32-key casts are kernels): FLOPs, weight, KV,
   activation bytes, kernels, collectives, parameter and KV-cache memory, exactly;
2. `TESTS`: what the count cannot see (the useful/executed switch, useful FLOPs, workspace).
Prints one line per mutation and, last, ``mutations caught: K/N``. Refuses to run (exit 2,
naming each one) when a mutation's text no longer occurs exactly once in its file: when the
formulas change, rewrite the mutation to break the same fact in the new code.

    python benchmarks/mutation_check.py            # about 10-20 minutes on 2 busy cores
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (what it breaks, file, text, replacement)
MUTATIONS: list[tuple[str, str, str, str]] = [
    ("linear FLOPs", "costmodel/ops.py",
     "f = 2 * rows * d_in * d_out", "f = rows * d_in * d_out"),
    ("linear bias weight bytes", "costmodel/ops.py",
     "d_out * s_wc + (d_out * s_e if bias else 0)", "d_out * s_wc + 0"),
    ("linear activation read", "costmodel/ops.py",
     "rows * d_in * s_a, rows * d_out * s_a, dequant", "rows * d_out * s_a, rows * d_out * s_a, dequant"),
    ("norm parameters", "costmodel/params.py",
     'return 2 * D if norm == "layernorm" else D', "return D"),
    ("rotary traffic", "costmodel/ops.py",
     '"attn.rotary", Bq * (H + K) * d_h, Bq * (H + K) * d_h)',
     '"attn.rotary", Bq * H * d_h, Bq * (H + K) * d_h)'),
    ("static cache kernels", "costmodel/ops.py",
     "ZERO, Bq * pos, **quantise))",
     "ZERO, Bq * pos, **(quantise | {\"kernels\": sp.Integer(1)})))"),
    ("concat cache read", "costmodel/ops.py",
     "B * c * pos, B * n_k * pos", "B * n_k * pos, B * n_k * pos"),
    ("attention executed FLOPs", "costmodel/ops.py",
     "attn_flops = 4 * B * H * q * n_k * d_h", "attn_flops = 4 * B * H * q * (c + 1) * d_h"),
    ("attention useful FLOPs", "costmodel/ops.py",
     "return q * c + q * (q + 1) / 2", "return q * c + q * q / 2"),
    ("eager score traffic", "costmodel/ops.py",
     "(3 + several) * scores * s_a", "(2 + several) * scores * s_a"),
    ("eager mask traffic", "costmodel/ops.py",
     "mask = 3 * several * q * n_k * BOOL_BYTES", "mask = 0"),
    ("eager kernels", "costmodel/ops.py",
     "kernels=4 + 4 * several + several * grouped", "kernels=1 + several * grouped"),
    ("fused attention KV read", "costmodel/ops.py",
     "q_and_out * s_a, B * n_k * pos, ZERO,", "q_and_out * s_a, B * c * pos, ZERO,"),
    ("useful/executed switch", "costmodel/ops.py",
     "time_uses_useful=im.skips_masked_tiles", "time_uses_useful=False"),
    ("residual reads", "costmodel/ops.py", "4 * Bq * D, 2 * Bq * D)", "3 * Bq * D, 2 * Bq * D)"),
    ("residual kernels", "costmodel/ops.py", "kernels=sp.Integer(2)))\n    return ops",
     "kernels=sp.Integer(1)))\n    return ops"),
    ("token-id bytes", "costmodel/ops.py", "ID_BYTES = sp.Integer(8)", "ID_BYTES = sp.Integer(4)"),
    ("layout copies", "costmodel/ops.py",
     "copies = several * sp.Min(H - 1, 1) + grouped * sp.Min(K - 1, 1)",
     "copies = several * sp.Min(H - 1, 1)"),
    ("gated MLP activation", "costmodel/ops.py",
     'mlp.act", Bq * F, Bq * F),\n            _elementwise(p + "mlp"',
     'mlp.act", 2 * Bq * F, Bq * F),\n            _elementwise(p + "mlp"'),
    ("embedding rows read", "costmodel/ops.py", "Bq * x.D * s_e, Bq * ID_BYTES",
     "x.D * s_e, Bq * ID_BYTES"),
    ("expansion bias", "costmodel/ops.py", "P * D_t / t, bias=True)",
     "P * D_t / t, bias=False)"),
    ("KV bytes per entry", "costmodel/memory.py",
     "return x.N * kv_position_bytes(im, x.K, x.d_h)",
     "return x.N * kv_position_bytes(im, x.K, x.d_h) / 2"),
    ("workspace residual term", "costmodel/memory.py",
     "return sy.s_a * 2 * q * x.D + sp.Max(", "return sy.s_a * 0 * q * x.D + sp.Max("),
    ("workspace score term", "costmodel/memory.py",
     "attn += x.H * q * n_k", "attn += 0"),
    ("vocab-parallel lookup kernels", "costmodel/ops.py",
     "kernels=op.kernels + 7 * extra)", "kernels=op.kernels)"),
    ("all-gather concatenation", "costmodel/ops.py",
     "concat * gathered_bytes, concat * gathered_bytes,", "ZERO, ZERO,"),
    ("official eager kernels", "costmodel/ops.py",
     "kernels=7 + narrow, dequant_flops", "kernels=6 + narrow, dequant_flops"),
    ("official eager masks", "costmodel/ops.py",
     "masks = q * n_k * BOOL_BYTES + B * n_k * s_a", "masks = q * n_k * BOOL_BYTES"),
    ("official fp32 key cast", "costmodel/ops.py",
     "cast = narrow * B * K * d_h * n_k * s_a", "cast = 0"),
]

# (model, prompt, generated, compare's keywords): dense at tp 1, and one sharded quantised
# request (quantised linears, int8 cache, vocab-parallel lookups, collectives' kernels)
COUNT_CASES = [("vanilla_31", 9, 4, {}), ("block_main_b4_5", 9, 6, {}),
               ("examples/configs/llama-2-70b.json", 5, 3, {}),
               ("block_main_b4_5", 9, 6, {"tp": 2, "weight_dtype": "w8a16", "kv_dtype": "int8"})]
TESTS = ["tests/test_exactness.py", "tests/test_validation_workspace.py"]

# static and hf-legacy in fp32 (every case); the official profiles in bf16, where their fp32-key
# casts are kernels (dense cases: the official profiles cache keys in fp32, not int8)
COUNT_RUNS = ([(m, s, g, p, "fp32", kw) for m, s, g, kw in COUNT_CASES
               for p in ("static", "hf-legacy")]
              + [(m, s, g, p, "bf16", kw) for m, s, g, kw in COUNT_CASES if not kw
                 for p in ("official", "official-eager")])

COUNT_SCRIPT = """
import sys
from costmodel.loading import load_model
from validation.count import compare
for model, s, g, profile, dtype, kw in {runs!r}:
    rep = compare(load_model(model), 2, s, g, profile, dtype, **kw)
    if rep.mismatches:
        bad = next(r for r in rep.rows if not r.ok)
        print(f"{{model}} {{profile}} {{bad.phase}}/{{bad.op}}")
        sys.exit(1)
"""


def _copy(dst: Path) -> None:
    for name in ("costmodel", "validation", "reference", "tests", "examples"):
        shutil.copytree(ROOT / name, dst / name,
                        ignore=shutil.ignore_patterns("__pycache__", "results"))


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(cwd), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


def check(cwd: Path) -> str | None:
    """Where the copy at `cwd` fails ("count: ..." or "tests: ..."), or None if it passes."""
    r = _run([sys.executable, "-c", COUNT_SCRIPT.format(runs=COUNT_RUNS)], cwd)
    if r.returncode:
        return "count: " + (r.stdout.strip().splitlines() or r.stderr.strip().splitlines())[-1]
    r = _run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS], cwd)
    if r.returncode:
        failed = [ln for ln in r.stdout.splitlines() if ln.startswith("FAILED")]
        return "tests: " + (failed[0] if failed else r.stdout.strip().splitlines()[-1])
    return None


def stale_mutations(root: Path = ROOT) -> list[str]:
    """One line per mutation whose text does not occur exactly once in its file under `root`
    (the formulas moved on): such a mutation would test nothing, so the check refuses to run."""
    bad = []
    for what, rel, old, new in MUTATIONS:
        n = (root / rel).read_text().count(old)
        if n != 1 or old == new:
            bad.append(f"{what}: text found {n} times in {rel} (must be exactly once): {old!r}")
    return bad


def main(argv: list[str]) -> int:
    """``--only NAME[,NAME...]`` runs the named mutations only (after a change to some)."""
    mutations = MUTATIONS
    if argv[:1] == ["--only"] and len(argv) == 2:
        wanted = set(argv[1].split(","))
        mutations = [m for m in MUTATIONS if m[0] in wanted]
        if len(mutations) != len(wanted):
            print(f"error: --only: unknown mutation among {sorted(wanted)}", file=sys.stderr)
            return 2
    stale = stale_mutations()
    if stale:
        print("error: mutation texts no longer match the code; rewrite them to the current "
              "formulas:\n  " + "\n  ".join(stale), file=sys.stderr)
        return 2
    caught = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _copy(work)
        baseline = check(work)
        if baseline is not None:
            print(f"unmutated copy fails ({baseline}): fix that first")
            return 1
        for what, rel, old, new in mutations:
            path = work / rel
            original = path.read_text()
            path.write_text(original.replace(old, new))
            try:
                where = check(work)
            finally:
                path.write_text(original)
            caught += where is not None
            print(f"{'caught' if where else 'MISSED'}  {what:28s} {where or ''}", flush=True)
    print(f"mutations caught: {caught}/{len(mutations)}")
    return 0 if caught == len(mutations) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
