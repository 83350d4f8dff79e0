#!/usr/bin/env bash
# Where RNNencdec's curve bends, and why (issue 14, item 7): the same RNNencdec with fixed vectors of
# three sizes, everything else as in configs/bible_rnnencdec.yaml, the same wall-clock budget, scored on
# the passage set by input length. Not part of `make reproduce` (it takes about 45 minutes more).
#
# The fixed vector c is the encoder's final state [→h_m; ←h_1], 2 × model.hidden_dim wide, and it also
# starts the decoder; the decoder state is model.dec_hidden_dim wide. Size d sets hidden_dim = d/2 and
# dec_hidden_dim = d, so c and s both have d units (the study's model is d = 256; the papers' is 2000/1000).
# The three runs train at the same time, one thread each, so they share the two cores alike.
#   bash scripts/vector_size.sh [MINUTES]        # default 30 minutes of training each
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MTKIT=${MTKIT:-$ROOT/.venv/bin/mtkit}
MINUTES=${1:-30}
SIZES=(${SIZES:-128 256 512})
OUT=${OUT:-results/vector_size}
mkdir -p "$OUT"
start=$(date +%s)

$MTKIT prepare "$ROOT/configs/bible_rnnencdec.yaml"
pids=()
for d in "${SIZES[@]}"; do
  $MTKIT train "$ROOT/configs/bible_rnnencdec.yaml" --overwrite --set run_dir="runs/encdec_d$d" \
    --set model.hidden_dim=$((d / 2)) --set model.dec_hidden_dim="$d" \
    --set train.threads=1 --set train.max_minutes="$MINUTES" 2>"$OUT/train_d$d.log" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

pids=()
for d in "${SIZES[@]}"; do
  $MTKIT eval --run "runs/encdec_d$d" --passages --threads 1 --out "runs/encdec_d$d/eval/passages" >/dev/null &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
args=()
for d in "${SIZES[@]}"; do args+=(--run "runs/encdec_d$d" --name "RNNencdec d=$d"); done
$MTKIT eval "${args[@]}" --passages --by-length --out "$OUT" | tee "$OUT/table.txt"
echo "whole run: $(( ($(date +%s) - start) / 60 )) min" | tee -a "$OUT/table.txt"
