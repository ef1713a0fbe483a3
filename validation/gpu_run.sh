#!/usr/bin/env bash
# The GPU validation run of issue 6 in one command (the `gpu` suite: bf16, vanilla_160,
# vanilla_410, block_main_b4_85, block_main_b4_1.2b; see validation/suites.py).
#
# 1. Here, on a machine with network access, once:
#        bash validation/gpu_run.sh fetch
#    downloads the wheels the GPU image lacks (pydantic and its dependencies, for CPython
#    3.12, manylinux x86-64) into .whl/ (git-ignored).
# 2. On the device machine (device tool `run`, carry [".whl"], timeout_s 600):
#        bash validation/gpu_run.sh
#    installs the wheels into /tmp/site, runs `blockroof validate run --device cuda --suite gpu`
#    (measuring stops starting new points after the suite's 330 s budget; the whole command is
#    cut at BLOCKROOF_GPU_TIMEOUT_S, default 480 s), then always calibrates and reports what
#    was measured (a resumed run that measures nothing), splits one decode step of
#    vanilla_410 and of block_main_b4_1.2b by op (`validate ops`, 90 s each at most and only
#    while the whole script stays under BLOCKROOF_GPU_TOTAL_S, default 570 s, into gpu/ops/;
#    BLOCKROOF_GPU_OPS="model:batch:context ..." to change), then, with the time left, the
#    gpu-quant suite (bf16 vs int8 weights and int8 KV cache, into gpu-quant/; it has not run
#    on a GPU yet), and leaves in $OUT: gpu_run.tar.gz
#    (the whole run directory), run.log, summary.json, report.md, nvidia-smi.txt (5 files:
#    the device tool brings back at most 8).
# With more than one GPU it also runs an NCCL all-reduce sweep (`validate allreduce --device
# cuda`, into gpu/multi/) and a TP=2 reference run (torchrun -m reference.tp); skipped otherwise.
# Unpack here with: tar -xzf gpu_run.tar.gz -C validation/results/  (-> validation/results/gpu/)
#
# Dry run on a CPU (checks the script end to end, not the GPU):
#   BLOCKROOF_GPU_DEVICE=cpu BLOCKROOF_SKIP_WHEELS=1 OUT=/tmp/out \
#   BLOCKROOF_GPU_ARGS="--smoke --models vanilla_160 --dtype fp32 --memory-gib 3" \
#   BLOCKROOF_GPU_OPS="vanilla_160:2:64" bash validation/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0
        typing-inspection==0.4.2 typing-extensions==4.16.0)

if [ "${1:-}" = "fetch" ]; then
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
fi

OUT="${OUT:-/tmp/blockroof-out}"
RUN_PARENT=/tmp/blockroof-results
RUN="$RUN_PARENT/gpu"
mkdir -p "$OUT" "$RUN_PARENT"

DEVICE="${BLOCKROOF_GPU_DEVICE:-cuda}"
read -r -a EXTRA <<< "${BLOCKROOF_GPU_ARGS:-}"

if [ -z "${BLOCKROOF_SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "error: wheel install failed" >&2; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD"
else
    echo "note: no .whl/ carried; assuming pydantic is installed" >&2
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python3 -c "import torch, pydantic; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpu', torch.cuda.is_available() and torch.cuda.get_device_name(0), 'pydantic', pydantic.VERSION)" \
    2>&1 | tee "$OUT/run.log"

timeout "${BLOCKROOF_GPU_TIMEOUT_S:-480}" python3 -m costmodel.cli validate run --device "$DEVICE" \
    --suite gpu --out "$RUN" --no-progress ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee -a "$OUT/run.log"
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ]; then
    echo "note: the measuring run ended with status $rc; reporting what was measured" \
        | tee -a "$OUT/run.log"
    timeout 100 python3 -m costmodel.cli validate run --device "$DEVICE" --suite gpu \
        --out "$RUN" --budget-s 0 --no-progress ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee -a "$OUT/run.log"
    rc=${PIPESTATUS[0]}
fi

# one decode step split by op (validate ops) on the calibrated record, if there is one
CAL=$(ls "$RUN"/hardware/*-calibrated.json 2>/dev/null | head -n 1)
if [ -n "$CAL" ]; then
    OPS_DTYPE=bf16; [ "$DEVICE" = cpu ] && OPS_DTYPE=fp32
    mkdir -p "$RUN/ops"
    read -r -a OPS <<< "${BLOCKROOF_GPU_OPS:-vanilla_410:64:2048 block_main_b4_1.2b:64:2048}"
    for spec in "${OPS[@]}"; do
        IFS=: read -r model batch context <<< "$spec"
        left=$(( ${BLOCKROOF_GPU_TOTAL_S:-570} - SECONDS - 15 ))  # keep the device call < 600 s
        if [ "$left" -lt 30 ]; then
            echo "note: no time left for the op profile of $model" | tee -a "$OUT/run.log"
            continue
        fi
        timeout $(( left < 90 ? left : 90 )) python3 -m costmodel.cli validate ops --model "$model" --batch "$batch" \
            --context "$context" --hardware "$CAL" --device "$DEVICE" --dtype "$OPS_DTYPE" \
            --out "$RUN/ops/${model}_decode_b${batch}_c${context}.json" 2>&1 \
            | tee -a "$OUT/run.log" || true
    done
fi

# multi-GPU case (docs/parallelism.md 6): only with more than one GPU, else skipped
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$DEVICE" = cuda ] && [ "${NGPU:-0}" -gt 1 ]; then
    left=$(( ${BLOCKROOF_GPU_TOTAL_S:-570} - SECONDS - 15 ))
    if [ "$left" -ge 40 ]; then
        mkdir -p "$RUN/multi"
        timeout $(( left / 2 )) python3 -m costmodel.cli validate allreduce --device cuda \
            --world 2 --base "${BLOCKROOF_GPU_BASE:-h100-sxm-80gb}" --out "$RUN/multi" 2>&1 \
            | tee -a "$OUT/run.log" || true
        left=$(( ${BLOCKROOF_GPU_TOTAL_S:-570} - SECONDS - 15 ))
        [ "$left" -ge 20 ] && timeout "$left" torchrun --standalone --nproc-per-node 2 \
            -m reference.tp --model vanilla_410 --prompt 128 --generate 32 2>&1 \
            | tee -a "$OUT/run.log" || true
    else
        echo "note: no time left for the multi-GPU case" | tee -a "$OUT/run.log"
    fi
else
    echo "note: multi-GPU case skipped (${NGPU:-0} GPU(s))" | tee -a "$OUT/run.log"
fi

# bf16 vs int8 weights / int8 KV cache (suite gpu-quant, docs/precision.md), while time lasts
left=$(( ${BLOCKROOF_GPU_TOTAL_S:-570} - SECONDS - 15 ))
QUANT=()
if [ "$left" -ge 90 ]; then
    timeout "$left" python3 -m costmodel.cli validate run --device "$DEVICE" --suite gpu-quant \
        --out "$RUN_PARENT/gpu-quant" --budget-s $(( left - 60 )) --no-progress \
        ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee -a "$OUT/run.log" || true
    [ -d "$RUN_PARENT/gpu-quant" ] && QUANT=(gpu-quant)
else
    echo "note: no time left for the gpu-quant suite" | tee -a "$OUT/run.log"
fi

tar -czf "$OUT/gpu_run.tar.gz" -C "$RUN_PARENT" gpu ${QUANT[@]+"${QUANT[@]}"}
cp "$RUN/summary.json" "$RUN/report.md" "$OUT/" 2>/dev/null || true
exit "$rc"
