#!/usr/bin/env bash
# Second GPU call of 2026-11-26: find which step variant crashes (gpu_diag.py), then measure throughput with
# a variant that trains. Writes to $OUT: diag.log, tp.log, g/ (CUDA graphs k=1,4,8) and e/ (eager k=8).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-diag-out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [ -d .whl ]; then "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site; fi
export PYTHONPATH=$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
timeout 110 "$PY" benchmarks/gpu_diag.py --configs 4 >"$OUT/diag.log" 2>&1
cat "$OUT/diag.log" | cut -c1-400
verdict=$(tail -n 1 "$OUT/diag.log")
extra=()
case "$verdict" in
  *'"shortcut": "conv"'*) export ANYNET_DIAG_SHORTCUT=conv ;;
esac
case "$verdict" in
  *'"cudnn_benchmark": false'*) extra+=(--no-cudnn-benchmark) ;;
esac
echo "verdict: $verdict -> shortcut ${ANYNET_DIAG_SHORTCUT:-slice} ${extra[*]:-}"
{
  timeout 110 "$PY" benchmarks/bench_gpu_throughput.py --ks 1 4 8 --modes graph --max-seconds 30 --min-per-worker 2 \
    --objective gpu_diag:objective "${extra[@]}" --out "$OUT/g"
  timeout 50 "$PY" benchmarks/bench_gpu_throughput.py --ks 8 --modes eager --max-seconds 30 --min-per-worker 2 \
    --objective gpu_diag:objective "${extra[@]}" --out "$OUT/e"
} >"$OUT/tp.log" 2>&1
grep -v '^\[I' "$OUT/tp.log" | grep -E '^\||best|Error|error' | cut -c1-300
