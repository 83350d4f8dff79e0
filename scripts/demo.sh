#!/usr/bin/env bash
# End to end on a synthetic corpus: make data, prepare, train, translate, evaluate by length, plot attention.
set -euo pipefail
cd "$(dirname "$0")/.."
MTKIT=${MTKIT:-.venv/bin/mtkit}
$MTKIT synth data/reverse --task reverse --n 6000 --max-len 12
$MTKIT train configs/synthetic_reverse.yaml --overwrite
echo "ka lo mi ru te" | $MTKIT translate
$MTKIT eval --by-length
$MTKIT attention "kami lote sano rumi" --text --out results/demo
