#!/usr/bin/env bash
# The project's GPU check: on the lent GPU machine, everything that needs CUDA, in one visit,
# every result written under $OUT. Under 8 minutes there.
#
# Here, first: ../shared/gpu/prepare.sh stages onnxruntime-gpu, Keras and MNIST in .whl/ and
# prints the `run` calls that carry them (one per wheel part). Make those calls back to back,
# then, while the machine is warm:
#   run carry=[".whl/on-device.sh"] command='scripts/gpu-check.sh' timeout_s=540
# Dry run here (CPU, a tiny slice, no .whl needed): GPU_CHECK_DEVICE=cpu OUT=/tmp/gpu-check scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder for the results}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
REPEATS=${GPU_CHECK_REPEATS:-9}
mkdir -p "$OUT"
log=$OUT/gpu-check.log
exec > >(tee -a "$log") 2>&1
status=0
step() {  # step NAME SECONDS COMMAND...: run, keep its output, record its exit status
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date -u +%H:%M:%S))"
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.txt"
  echo "== $name: exit $rc"
  echo "$name $rc" >> "$OUT/steps.txt"
  [ $rc -eq 0 ] || status=1
}

if [ "$DEVICE" != cpu ]; then
  # shellcheck disable=SC1091
  source .whl/on-device.sh || { echo "the GPU kit is not complete: make prepare.sh's run calls first"; exit 2; }
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  PY=python3
else
  PY=${PYTHON:-.venv/bin/python}
  export ONNXDIGITS_MNIST=${ONNXDIGITS_MNIST:-../shared/data/mnist.npz}
fi
export ONNXDIGITS_DEVICE=$DEVICE
cli=("$PY" -m onnxdigits.cli)
data=()
[ -f "${ONNXDIGITS_MNIST:-}" ] && data=(--data "$ONNXDIGITS_MNIST")

step info 120 "${cli[@]}" info --device "$DEVICE"
step verify 120 "${cli[@]}" verify --device "$DEVICE"
if [ "$DEVICE" != cpu ]; then
  step pytest-gpu 240 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/sdk/test_gpu.py
fi
step bench 300 "${cli[@]}" bench sdk --device "$DEVICE" --repeats "$REPEATS" "${data[@]}" --json "$OUT/bench.json"
echo "results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
exit $status
