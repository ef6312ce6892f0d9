#!/usr/bin/env bash
# The clean-protocol table with N single-threaded workers (default 2 = the 2 cores here).
# Each worker takes every N-th pending fit of each step; results go to the same append-only
# results/cv_results.jsonl; rerun to resume.  Usage (repo root):
#   QNN_DATA_DIR=/path/to/datasets nohup bash experiments/kacq/run_all_parallel.sh [REPEATS] [N] \
#       > experiments/kacq/results/log_run_all_parallel.txt 2>&1 &
set -uo pipefail
R=${1:-1}
N=${2:-2}
export OMP_NUM_THREADS=1
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
step() {
  for ((i = 0; i < N; i++)); do
    $PY experiments/kacq/run_cv.py "$@" --repeats "$R" --threads 1 --shard "$i/$N" &
  done
  wait
}
step --group classical
step --models kacq_L1
step --group qnn
step --models BiLSTMKANnet QDenseKANnet
step --models kacq_L2 kacq_L3 kacq_L4
step --group ablations
step --models QCKANnet_L1 QCKANnet_L2 QCKANnet_L3 QCKANnet_L4
$PY experiments/kacq/summarize_cv.py --prep clean --repeats "$R"
