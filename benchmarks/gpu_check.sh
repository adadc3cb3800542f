#!/usr/bin/env bash
# The GPU check, one call on one GPU machine (about 9 minutes on an H100): the CUDA tests, the study
# throughput of ten-epoch CIFAR-size evaluations (CUDA graphs for k = 2 and 8 workers, eager for k = 1, 90 s
# windows: one evaluation takes 40-65 s; k = 1 and 4 with graphs were measured on 2026-11-26, see RESULTS.md),
# the per-step cost of each step mode, and our model's training step against torchvision's RegNet.
# `diag` (which step variant crashes, gpu_diag.py) runs only when named: all 16 variants passed on 2026-11-26.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh                  # the default sections
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh tests throughput # some of them
#
# Files land in $OUT: one log per section and the throughput rows as JSON (graph and eager). Python packages
# the machine lacks (optuna and its needs) are taken from wheels in .whl/ when that folder exists; each
# section has its own time limit, so one that hangs cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
SECTIONS=${*:-env tests throughput steps model}
summary=()
PY=${PYTHON:-python3}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

section() {  # name, time limit in seconds, command...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "=== $name (limit ${limit} s)"
  timeout --signal=INT --kill-after=20 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
  summary+=("$name: exit $rc after $((SECONDS - start)) s")
}

for s in $SECTIONS; do
  case $s in
    env) section env 60 bash -c "nvidia-smi; $PY - <<'EOF'
import torch, optuna, anynet_search
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0),
      'bf16', torch.cuda.is_bf16_supported(), 'optuna', optuna.__version__)
try:
    import torchvision; print('torchvision', torchvision.__version__)
except Exception as exc:
    print('torchvision: not importable:', exc)
EOF" ;;
    diag) section diag 90 "$PY" benchmarks/gpu_diag.py --configs 2 --parallel 4 --child-timeout 60 ;;
    tests) section tests 170 "$PY" -m pytest -m cuda tests/test_cuda.py -p no:cacheprovider -q -rs --durations=15 ;;
    throughput) section throughput 300 bash -c "$PY benchmarks/bench_gpu_throughput.py --ks 2 8 --modes graph \
                  --max-seconds 90 --min-per-worker 2 --json $OUT/throughput-graph.json; CUDA_LAUNCH_BLOCKING=1 \
                  $PY benchmarks/bench_gpu_throughput.py --ks 1 --modes eager --max-seconds 90 --min-per-worker 2 \
                  --json $OUT/throughput-eager.json" ;;
    steps) section steps 60 "$PY" benchmarks/bench_gpu_step.py --configs 2 --batch-size 256 --steps 100 --no-compile ;;
    model) section model 60 "$PY" benchmarks/bench_model_speed.py --devices cuda --models RegNetX-200MF RegNetY-400MF \
             --batch-32 128 --batch-224 64 --rounds 5 --min-seconds 0.3 ;;
    *) echo "unknown section $s (env diag tests throughput steps model)"; exit 2 ;;
  esac
done
printf '%s\n' "${summary[@]}"
