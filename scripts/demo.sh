#!/usr/bin/env bash
# End to end on a synthetic corpus in about two minutes on a laptop CPU:
# make data, train (prepare runs first), translate, evaluate by length, plot attention.
set -euo pipefail
cd "$(dirname "$0")/.."
MTKIT=${MTKIT:-.venv/bin/mtkit}
$MTKIT synth data/reverse --task reverse --n 6000 --max-len 12
$MTKIT train configs/synthetic_reverse.yaml --overwrite
echo "--- three training sentences and their translations (the task: reverse the words)"
head -n 3 data/reverse/train.src
head -n 3 data/reverse/train.src | $MTKIT translate --threads 1
$MTKIT eval --by-length --threads 1
$MTKIT attention --input data/reverse/train.src --line 1 --text --out results/demo
