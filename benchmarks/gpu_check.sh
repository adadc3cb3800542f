#!/usr/bin/env bash
# The GPU check, one call on one GPU machine (about 8 minutes on an H200): the CUDA tests, the study's throughput
# against a bare loop over the same networks in the same call (bench_gpu_throughput.py), the eager check
# (200 short eager evaluations in 8 worker processes with cudnn.benchmark on: the settings under which eager
# studies stopped with "illegal memory access" on an H100), and (section `data`, not in the default set) the
# training rate from an uploaded and a streamed prepared store against in-memory data (bench_data_rates.py).
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh                   # every section
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh tests throughput  # some of them
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh data              # the data-store rates (about 2 minutes)
#
# Files land in $OUT: one log per section and the throughput rows as JSON. Python packages the machine lacks
# (optuna and its needs) are taken from wheels in .whl/ when that folder exists; each section has its own time
# limit, so one that hangs cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
SECTIONS=${*:-env throughput tests eager}
summary=()
PY=${PYTHON:-python3}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
# a fresh copy of the tree has no bytecode, and spawned workers may run with -B: compile once, not per process
"$PY" -m compileall -q anynet_search >/dev/null 2>&1

section() {  # name, time limit in seconds, command...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "=== $name (limit ${limit} s)"
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 30 "$OUT/$name.log"
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
  summary+=("$name: exit $rc after $((SECONDS - start)) s")
}

eager_check() {  # 200 one-epoch eager evaluations, 8 worker processes on one GPU, cudnn.benchmark on
  local dir
  dir=$(mktemp -d)
  "$PY" -m anynet_search run --space anynet_xa_cifar --dataset synthetic:4000 --devices cuda:0 --workers 8 \
    --in-flight 1 --trials 200 --epochs 1 --train cuda_graphs=false --train cudnn_benchmark=true \
    --train batch_size=256 --train lr=0.4 --out "$dir" --study eager --no-analyze
  local rc=$?
  "$PY" - "$dir/eager/journal.log" <<'EOF'
import sys, collections, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
study = optuna.load_study(study_name="eager", storage=JournalStorage(JournalFileBackend(sys.argv[1])))
states = collections.Counter(t.state.name for t in study.trials)
print("eager check: trials by state", dict(states))
for t in study.trials:
    if t.state.name == "FAIL":
        print("  failed:", t.number, t.user_attrs.get("failure"), "|", t.user_attrs.get("failure_where"))
EOF
  return $rc
}

for s in $SECTIONS; do
  case $s in
    env) section env 60 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; $PY - <<'EOF'
import torch, optuna, anynet_search
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0),
      'bf16', torch.cuda.is_bf16_supported(), 'optuna', optuna.__version__)
EOF" ;;
    tests) section tests 170 "$PY" -m pytest -m cuda tests/test_cuda.py -p no:cacheprovider -q -rs --durations=10 ;;
    throughput) section throughput 240 "$PY" benchmarks/bench_gpu_throughput.py --in-flight 8 --bare-seconds 10 \
                  --study-seconds 140 --json "$OUT/throughput.json" ;;
    eager) export -f eager_check; export PY; section eager 170 bash -c eager_check ;;
    data) section data 150 "$PY" benchmarks/bench_data_rates.py --networks 3 --rounds 2 --json "$OUT/data_rates.json" ;;
    *) echo "unknown section $s (env tests throughput eager data)"; exit 2 ;;
  esac
done
printf '%s\n' "${summary[@]}"
