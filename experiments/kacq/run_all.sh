#!/usr/bin/env bash
# Full clean-protocol table (1 repeat of 10 folds by default), resumable: rerun to continue.
# Usage (repo root):  QNN_DATA_DIR=/path/to/datasets nohup bash experiments/kacq/run_all.sh [REPEATS] > experiments/kacq/results/log_run_all.txt 2>&1 &
set -euo pipefail
R=${1:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
$PY experiments/kacq/run_cv.py --group classical --repeats "$R"
$PY experiments/kacq/run_cv.py --models kacq_L1 --repeats "$R" --threads 1
$PY experiments/kacq/run_cv.py --group qnn --repeats "$R" --threads 1
$PY experiments/kacq/run_cv.py --models BiLSTMKANnet QDenseKANnet --repeats "$R" --threads 1
$PY experiments/kacq/run_cv.py --models kacq_L2 kacq_L3 kacq_L4 --repeats "$R" --threads 1
$PY experiments/kacq/run_cv.py --group ablations --repeats "$R" --threads 1
$PY experiments/kacq/run_cv.py --models QCKANnet_L1 QCKANnet_L2 QCKANnet_L3 QCKANnet_L4 --repeats "$R" --threads 1
$PY experiments/kacq/summarize_cv.py --prep clean
