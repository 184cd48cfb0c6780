#!/usr/bin/env bash
# The GPU figures in one command, in under five minutes on one GPU: particle-steps/s of the paper's
# toy, the slab and voxel scenes (2-D pyramid, 3-D block), forward and replay gradient, and NUTS
# time per effective sample on the hidden void. Each benchmark prints its own table; copy them
# into the note and README "Performance".
#
#   bash benchmarks/gpu.sh                 # from the repository root, after `make install`
#   PYTHON=/path/to/python bash benchmarks/gpu.sh
#   QUICK=1 bash benchmarks/gpu.sh         # tiny sizes: checks the script itself (e.g. on a CPU)
#
# Each step has a time limit (LIMIT seconds, default 100; 300 with QUICK) so that the whole stays under five
# minutes; a step that runs out is reported and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LIMIT=${LIMIT:-$([[ -n ${QUICK:-} ]] && echo 300 || echo 100)}  # QUICK runs on a CPU: more time
export PPL_BMC_CACHE_DIR=${PPL_BMC_CACHE_DIR:-off}  # cold figures: compile times are part of them

step() {  # step NAME COMMAND...: run with the time limit, say how it ended
  local name=$1; shift
  echo; echo "=== $name: $*"
  local t0=$SECONDS
  timeout "$LIMIT" "$@"; local rc=$?
  if (( rc == 124 )); then echo "=== $name: stopped at the ${LIMIT} s limit"; else echo "=== $name: exit $rc, $((SECONDS - t0)) s"; fi
}

"$PY" -c "import jax; print('jax', jax.__version__, 'devices', jax.devices())"
if [[ -n ${QUICK:-} ]]; then
  step toy "$PY" benchmarks/bench_toy_adjoints.py --quick --no-rss
  step slab "$PY" benchmarks/bench_csda.py --quick
  step scenes "$PY" benchmarks/bench_muography.py --quick
else
  step toy "$PY" benchmarks/bench_toy_adjoints.py --n-particles 1000000 --memory-particles 100000 --steps 16 256 --no-rss --repeats 5
  step slab "$PY" benchmarks/bench_csda.py --n-particles 1000000 --steps 16 256 --repeats 3
  step scenes "$PY" benchmarks/bench_muography.py --n-particles 10000 --replay-only --skip-nuts --repeats 3
  step nuts "$PY" benchmarks/bench_muography.py --nuts-only --nuts-grid 16 --warmup 500 --samples 1000 --chains 4
fi
