"""Our reference `generate` against transformers' `GPTNeoXForCausalLM.generate`, on this CPU.

Issue 3, speed. In one process, fp32, torch threads = 2, the same weights, batch, prompt and
generated lengths, greedy decoding:

1. measures this machine's fp32 matmul rate (2048^3 matmuls) and copy bandwidth (a 256 MiB
   ``copy_`` into a preallocated tensor, bytes read + written; a ``clone`` would mostly time
   the page faults of fresh memory, ~2.8 vs ~16 GB/s here), the peaks of the roofline below;
2. for a decode-heavy and a prefill-heavy setting (docs/model.md 5.1's prompt/generated 128/2048 and
   2048/128 scaled down to 128/384 at batch 8 and 512/32 at batch 8), times our `VanillaLM.generate` (static KV cache) and transformers' `generate`
   (``use_cache=True``, EOS disabled, ``min_new_tokens = max_new_tokens``), checks that both
   produce the same tokens, and times our `BlockLM.generate` of the matched block preset;
3. prints throughput (generated tokens per second, docs/model.md 6 item 5: prefill time included),
   and the achieved fraction of the cost model's roofline time (``costmodel.estimate`` with the
   ``static`` profile in fp32 and a `Hardware` record holding the measured peaks).

Timing: 1 warm-up, then ``--repeats`` rounds in which the three models run in turn (so that
background load on a shared machine affects them alike); median (min-max in brackets). The last line printed
is ``reference/hf decode throughput ratio: R`` (ours / transformers, decode-heavy setting).

    python benchmarks/reference_vs_hf.py [--preset vanilla_31] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from costmodel.presets import get_preset  # noqa: E402
from costmodel.spec import VanillaSpec  # noqa: E402
from reference import BlockLM, VanillaLM, build_model  # noqa: E402
from reference.hf_interop import load_into_hf, neox_config_kwargs, to_neox_state_dict  # noqa: E402

THREADS = 2
# vanilla preset -> matched block preset (docs/model.md 5.3)
MATCHED_BLOCK = {"vanilla_31": "block_main_b4_5", "vanilla_70": "block_main_b4_19"}


@dataclass(frozen=True)
class Setting:
    name: str
    batch: int
    prompt_tokens: int
    generated_tokens: int


SETTINGS = (
    Setting("decode-heavy", batch=8, prompt_tokens=128, generated_tokens=384),
    Setting("prefill-heavy", batch=8, prompt_tokens=512, generated_tokens=32),
)


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float

    def __str__(self) -> str:
        return f"{self.median_s:7.3f} s [{self.min_s:.3f}-{self.max_s:.3f}]"


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """1 warm-up, then `repeats` rounds running every function once per round, in turn, so that
    background load on a shared machine hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - t0)
    return {n: Timing(statistics.median(t), min(t), max(t)) for n, t in times.items()}


def time_runs(fn: Callable[[], object], repeats: int) -> Timing:
    return time_interleaved({"fn": fn}, repeats)["fn"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_GiB() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 16.0


def measure_peaks(repeats: int = 5) -> tuple[float, float]:
    """(fp32 matmul FLOP/s, copy bytes/s read + written), medians."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)  # randn, not zeros (docs/engineering-notes.md)
    t = time_runs(lambda: a @ b, repeats).median_s
    flops = 2 * n**3 / t
    x = torch.randn(64 * 2**20)  # 256 MiB
    y = torch.empty_like(x)  # preallocated: a clone would time page faults of fresh memory
    t = time_runs(lambda: y.copy_(x), repeats).median_s
    return flops, 2 * x.numel() * x.element_size() / t


def hardware_record(flops: float, bandwidth: float) -> object:
    from costmodel.hardware import Hardware, PeakFlops

    return Hardware(
        id="benchmark-cpu-measured",
        name=f"{cpu_name()} ({THREADS} threads)",
        vendor=cpu_name().split()[0] if cpu_name() else "unknown",
        kind="cpu",
        peak=PeakFlops(fp32_TFLOPs=flops / 1e12),
        memory_bandwidth_GBps=bandwidth / 1e9,
        memory_capacity_GB=memory_GiB(),
        sources=["measured by benchmarks/reference_vs_hf.py (2048^3 matmul, 256 MiB copy_)"],
    )


def roofline_time_s(spec: object, hardware: object | None, s: Setting) -> float | None:
    """The cost model's request time (static profile, fp32), or None if not available."""
    if hardware is None:
        return None
    from costmodel import Workload, estimate, get_implementation

    est = estimate(
        spec,  # type: ignore[arg-type]
        hardware,  # type: ignore[arg-type]
        Workload(batch=s.batch, prompt_tokens=s.prompt_tokens, generated_tokens=s.generated_tokens),
        implementation=get_implementation("static", dtype="fp32"),
    )
    return float(est.request_time_s)


def hf_model(spec: VanillaSpec, ours: VanillaLM) -> torch.nn.Module:
    import transformers

    config = transformers.GPTNeoXConfig(**neox_config_kwargs(spec))
    model = transformers.GPTNeoXForCausalLM(config).eval()
    load_into_hf(model, to_neox_state_dict(ours))
    model.generation_config.eos_token_id = None
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vanilla_31", choices=sorted(MATCHED_BLOCK))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(THREADS)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch threads {THREADS}, "
          f"{memory_GiB():.1f} GiB; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, Python {platform.python_version()}")
    flops, bandwidth = measure_peaks()
    print(f"measured peaks: fp32 matmul {flops / 1e9:.1f} GFLOP/s (2048^3, median of 5); "
          f"copy {bandwidth / 1e9:.2f} GB/s (256 MiB copy_, read + write, median of 5)")
    try:
        hardware: object | None = hardware_record(flops, bandwidth)
        from costmodel import estimate  # noqa: F401
    except ImportError:
        hardware = None

    spec = get_preset(args.preset)
    block_name = MATCHED_BLOCK[args.preset]
    block_spec = get_preset(block_name)
    assert isinstance(spec, VanillaSpec)
    ours = build_model(spec, seed=0)
    block = build_model(block_spec, seed=0)
    assert isinstance(ours, VanillaLM) and isinstance(block, BlockLM)
    theirs = hf_model(spec, ours)
    print(f"models: {args.preset} ({spec.params_total / 1e6:.1f}M parameters) vs "
          f"transformers GPTNeoXForCausalLM (same weights, attn {theirs.config._attn_implementation}"
          f"); block: {block_name} ({block_spec.params_total / 1e6:.1f}M); fp32, greedy; "
          f"1 warm-up + {args.repeats} runs, median [min-max]")

    decode_ratio = float("nan")
    for s in SETTINGS:
        ids = torch.randint(0, spec.vocab_size, (s.batch, s.prompt_tokens),
                            generator=torch.Generator().manual_seed(0))
        g = s.generated_tokens

        def run_ours(ids: torch.Tensor = ids, g: int = g) -> torch.Tensor:
            return ours.generate(ids, g).tokens

        def run_hf(ids: torch.Tensor = ids, g: int = g) -> torch.Tensor:
            with torch.inference_mode():
                out = theirs.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=g,
                    min_new_tokens=g, do_sample=False, eos_token_id=None, pad_token_id=0,
                    use_cache=True,
                )
            return out[:, ids.shape[1]:]

        def run_block(ids: torch.Tensor = ids, g: int = g) -> torch.Tensor:
            return block.generate(ids, g).tokens

        same = torch.equal(run_ours(), run_hf())
        timed = time_interleaved({"ours": run_ours, "hf": run_hf, "block": run_block},
                                 args.repeats)
        t_ours, t_hf, t_block = timed["ours"], timed["hf"], timed["block"]
        tokens = s.batch * g
        tps = {k: tokens / t.median_s for k, t in
               (("ours", t_ours), ("hf", t_hf), ("block", t_block))}
        ratio = tps["ours"] / tps["hf"]
        if s.name == "decode-heavy":
            decode_ratio = ratio
        print(f"\n[{s.name}] batch {s.batch}, prompt {s.prompt_tokens}, generated {g} "
              f"(tokens identical: {'yes' if same else 'NO'})")
        print(f"  reference vanilla : {t_ours}  {tps['ours']:8.1f} tok/s")
        print(f"  transformers      : {t_hf}  {tps['hf']:8.1f} tok/s")
        print(f"  reference block   : {t_block}  {tps['block']:8.1f} tok/s "
              f"({tps['block'] / tps['ours']:.2f}x reference vanilla)")
        print(f"  reference/hf throughput ratio: {ratio:.2f} (medians; fastest runs: "
              f"{t_hf.min_s / t_ours.min_s:.2f})")
        try:
            for label, sp, t in (("vanilla", spec, t_ours), ("block", block_spec, t_block)):
                roof = roofline_time_s(sp, hardware, s)
                if roof is None:
                    print("  roofline fraction: n/a (costmodel.estimate not available)")
                    break
                print(f"  roofline fraction ({label}): {roof / t.median_s:.3f} "
                      f"(roofline {roof:.3f} s, measured {t.median_s:.3f} s)")
        except Exception as exc:  # the cost model API is still moving; never lose the timings
            print(f"  roofline fraction: n/a ({type(exc).__name__}: {exc})")
    print(f"reference/hf decode throughput ratio: {decode_ratio:.2f}")


if __name__ == "__main__":
    main()
