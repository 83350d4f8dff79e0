#!/usr/bin/env bash
# How long an input a fixed vector of size d can hold, with no content to recall (issue 26, item 3).
# A synthetic task of incompressible sentences (configs/capacity/synthetic.yaml): RNNencdec with d = 32, 64,
# 128, 256 (encoder 2 × d/2, decoder d, so the fixed vector c = [→h_m; ←h_1] and the decoder state have d units),
# RNNsearch at d = 32 and 128 as the control, each trained until its dev loss stops improving (patience 8
# validations), then BLEU by source length on 2,000 test sentences and L*(d), the length at which BLEU falls to
# half its value on the shortest inputs. Not part of `make reproduce`.
#   bash scripts/capacity_synthetic.sh            # results in results/capacity/
# A run that already finished (RUN/last.pt says so) is not trained again; one that was interrupted resumes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MTKIT=${MTKIT:-$ROOT/.venv/bin/mtkit}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
CONFIG=$ROOT/configs/capacity/synthetic.yaml
OUT=${OUT:-results/capacity}
JOBS=${JOBS:-$(nproc)}  # runs trained at once, one thread each
EXTRA=("$@")
mkdir -p "$OUT"
start=$(date +%s)

[ -f data/capacity/train.src ] || $MTKIT synth data/capacity --task substitute --n 30000 --min-len 5 --max-len 100 \
  --vocab 50 --seed 0
$MTKIT prepare "$CONFIG" "${EXTRA[@]}"

# name:d:attention
RUNS=(encdec_d32:32:none encdec_d64:64:none encdec_d128:128:none encdec_d256:256:none
      search_d32:32:additive search_d128:128:additive)
train_one() {
  local name=$1 d=$2 kind=$3 run=runs/capacity/$1 resume=()
  if [ -f "$run/last.pt" ]; then
    if "$PYTHON" -c "import sys; from pathlib import Path; from mtkit.checkpoint import load_checkpoint; sys.exit(0 if load_checkpoint(Path('$run/last.pt')).state.finished else 1)"; then
      echo "$name: finished before"; return 0
    fi
    resume=(--resume)
  else
    resume=(--overwrite)
  fi
  $MTKIT train "$CONFIG" "${resume[@]}" --set "run_dir=$run" --set "model.hidden_dim=$((d / 2))" \
    --set "model.dec_hidden_dim=$d" --set "model.attention.kind=$kind" --set train.threads=1 "${EXTRA[@]}" \
    2>"$OUT/train_$name.log"
  $MTKIT eval --run "$run" --by-length --threads 1 --out "$run/eval" >/dev/null
}
running=0
for spec in "${RUNS[@]}"; do
  IFS=: read -r name d kind <<<"$spec"
  train_one "$name" "$d" "$kind" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

runs=()
for spec in "${RUNS[@]}"; do runs+=("runs/capacity/${spec%%:*}"); done
"$PYTHON" "$ROOT/scripts/capacity.py" "${runs[@]}" --plot "$OUT/capacity.png" --seconds $(( $(date +%s) - start )) \
  | tee "$OUT/capacity.md"
