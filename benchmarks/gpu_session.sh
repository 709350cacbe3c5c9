#!/usr/bin/env bash
# One GPU session for issues 15 and 16, sized to a 10-minute call on one H100/H200:
#   1. throughput at the 160m and 1b shapes (every method side by side, each precision, the levers),
#   2. the scorer's busy share over a multi-checkpoint sweep, with and without prefetch,
#   3. the CUDA tests (each precision against the exact CPU sweep, OOM halving, fused heads,
#      torch.compile, the trainer's bf16 path) while the spike study trains and sweeps its runs.
# Every stage has its own time limit and the session goes on when one fails; results and logs
# go to $OUT (the device tool brings them back). Wheels the GPU image lacks travel in .gpusite/
# (polars, duckdb as one site.tar.xz; liger-kernel and cut-cross-entropy as wheels). Build it here once,
# ignored by git (`echo /.gpusite/ >> .git/info/exclude`): `pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d w polars
# polars-runtime-32 duckdb`, unzip each wheel into site/, `tar cJf .gpusite/site.tar.xz site` (the wheels
# themselves are over the 64 MiB a call carries), and download liger-kernel and cut-cross-entropy into .gpusite/.
#
#   bash benchmarks/gpu_session.sh [PART]            # on the GPU machine
#   bash benchmarks/gpu_session.sh --dry-run [PART]  # here, on the CPU, at the smallest sizes (checks the script)
# PART: all (default), throughput (stages 1-2, ~6 min) or study (stage 3, ~5 min): a 15-minute lease
# runs `throughput` and then `study` as two calls on the same warm machine.
set -u
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1 && shift
PART=${1:-all}
OUT=${OUT:-/tmp/gpu_session_out}
mkdir -p "$OUT"
LOG="$OUT/session.log"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
stage() { # name, seconds, command...: run one stage under a time limit, log its status and wall time
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name (limit ${limit}s)" | tee -a "$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1
    echo "== $name: exit $? after $((SECONDS - start))s" | tee -a "$LOG"
}

if [ $DRY = 0 ] && [ ! -d /tmp/gs/site ]; then  # once per machine
    mkdir -p /tmp/gs
    tar xJf .gpusite/site.tar.xz -C /tmp/gs && rm -rf /tmp/gs/site/huggingface_hub*
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gs/site .gpusite/*.whl >>"$LOG" 2>&1
    python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$LOG" 2>&1 \
        || python3 -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/gs/site . >>"$LOG" 2>&1
fi
if [ $DRY = 0 ]; then
    export PYTHONPATH=/tmp/gs/site
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
    SHAPE=160m; BIG=1b; WINDOWS=256; SEQ=2048; BATCH=16; SPIKE_SIZE=small; SPIKE_STEPS=1500; SPIKE_ARGS="--lr 0.04 --warmup 100"; DEV=cuda
    PRECISIONS=bf16,fp32; LEVERS=compile,liger,cce
else
    SHAPE=tiny; BIG=tiny; WINDOWS=8; SEQ=64; BATCH=4; SPIKE_SIZE=tiny; SPIKE_STEPS=120; SPIKE_ARGS="--warmup 10"; DEV=cpu
    PRECISIONS=fp32; LEVERS=
    export LDW_CUDA_TESTS_DEVICE=cpu
fi
python3 -c "import torch, transformers, polars, duckdb, ldw; print('torch', torch.__version__, 'transformers', transformers.__version__, 'polars', polars.__version__, 'duckdb', duckdb.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"

if [ "$PART" != study ]; then
    stage throughput-$SHAPE 150 python3 -m benchmarks.sweep_throughput --shape $SHAPE --windows $WINDOWS --seq-len $SEQ \
        --batch $BATCH --precisions $PRECISIONS --levers "$LEVERS" --device $DEV --out "$OUT/sweep_throughput_$SHAPE.json"
    # the 1b shape: no per-sentence loop and one float64 reference window (the 2026-11-26 run spent its 90 s there)
    stage throughput-$BIG 120 python3 -m benchmarks.sweep_throughput --shape $BIG --windows $((WINDOWS / 4)) --seq-len $SEQ \
        --batch $((BATCH / 2)) --precisions bf16,fp32 --ref-windows 1 --skip-slow --device $DEV \
        --out "$OUT/sweep_throughput_$BIG.json"
    stage sweep-busy 60 python3 -m benchmarks.sweep_busy --shape $SHAPE --checkpoints 6 --windows $((WINDOWS / 4)) \
        --seq-len $SEQ --device $DEV --out "$OUT/sweep_busy.json"
fi
[ "$PART" = throughput ] && exit 0

# The spike study (GPU training, then the workbench) beside the CUDA tests: neither is timed against the other.
cp benchmarks/RESULTS.md "$OUT/RESULTS.md" 2>/dev/null
(stage spike-study 300 python3 -m benchmarks.spike_study --size $SPIKE_SIZE --steps $SPIKE_STEPS $SPIKE_ARGS --device $DEV --workdir /tmp/spike \
    --export /tmp/spike_export --out "$OUT/spike_study_$SPIKE_SIZE.json" --results-md "$OUT/RESULTS.md" \
    && tar czf "$OUT/spike_warehouse.tar.gz" -C /tmp spike_export) &
SPIKE=$!
stage cuda-tests 220 python3 -m pytest -q -p no:cacheprovider -m cuda -rs tests/pipelines/test_sweep_cuda.py
wait $SPIKE
grep -E "^== |passed|failed|error" "$LOG" | tail -30
