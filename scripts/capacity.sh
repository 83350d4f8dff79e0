#!/usr/bin/env bash
# How long an input a fixed vector of size d can hold (issue 26): RNNencdec with only the vector's size d varied
# (encoder 2 × d/2, decoder d, so the fixed vector c = [→h_m; ←h_1] and the decoder state have d units), RNNsearch
# at two sizes as the control, each trained until its dev loss stops improving (the patience is in the config,
# stated before the runs). Not part of `make reproduce`.
#   bash scripts/capacity.sh synthetic   # incompressible sentences (configs/capacity/synthetic.yaml; item 3):
#                                        # d = 32..256, BLEU by length on the test set; minutes a run
#   bash scripts/capacity.sh bible       # the study's data (configs/capacity/bible.yaml; item 2): d = 64..512,
#                                        # the paired k/k1 ratios and the loss by position on the passage set;
#                                        # hours a run on a CPU
# Results in results/capacity_TASK/ (the table, L*(d) and each run's wall time). A run that finished (its
# last.pt says so) is not trained again and one that was interrupted resumes exactly, so the script can be
# stopped and started again at any point. JOBS=n trains n runs at once (default: one per core).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MTKIT=${MTKIT:-$ROOT/.venv/bin/mtkit}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TASK=${1:?usage: scripts/capacity.sh synthetic|bible [--set key=value ...]}
shift
EXTRA=("$@")
CONFIG=$ROOT/configs/capacity/$TASK.yaml
case $TASK in
  synthetic)  # name:d:attention
    RUNS=(encdec_d32:32:none encdec_d64:64:none encdec_d128:128:none encdec_d256:256:none
          search_d32:32:additive search_d128:128:additive)
    [ -f data/capacity/train.src ] || $MTKIT synth data/capacity --task substitute --n 30000 --min-len 5 \
      --max-len 100 --vocab 50 --seed 0 ;;
  bible)
    RUNS=(encdec_d64:64:none encdec_d128:128:none encdec_d256:256:none encdec_d512:512:none
          search_d64:64:additive search_d256:256:additive) ;;
  *) echo "scripts/capacity.sh: unknown task '$TASK' (synthetic or bible)" >&2; exit 2 ;;
esac
OUT=${OUT:-results/capacity_$TASK}
RUNS_DIR=runs/capacity_$TASK
JOBS=${JOBS:-$(nproc)}  # runs trained at once, one thread each
mkdir -p "$OUT"
start=$(date +%s)
$MTKIT prepare "$CONFIG" "${EXTRA[@]}"

finished() {
  "$PYTHON" -c "import sys; from pathlib import Path; from mtkit.checkpoint import load_checkpoint; \
sys.exit(0 if load_checkpoint(Path(sys.argv[1])).state.finished else 1)" "$1/last.pt"
}
score() {  # the run's best.pt: BLEU by length on the test set; for the Bible, the passage set too
  local run=$1
  $MTKIT eval --run "$run" --by-length --threads 1 --out "$run/eval" >/dev/null
  if [ "$TASK" = bible ]; then
    $MTKIT eval --run "$run" --passages --threads 1 --out "$run/eval/passages" >/dev/null
    $MTKIT eval --run "$run" --passages --forced --threads 1 --out "$run/eval/passages" >/dev/null
  fi
}
train_one() {
  local name=$1 d=$2 kind=$3 run=$RUNS_DIR/$1 how=--overwrite
  if [ -f "$run/last.pt" ] && finished "$run"; then
    echo "$name: trained before"
  else
    [ -f "$run/last.pt" ] && how=--resume
    $MTKIT train "$CONFIG" "$how" --set "run_dir=$run" --set "model.hidden_dim=$((d / 2))" \
      --set "model.dec_hidden_dim=$d" --set "model.attention.kind=$kind" --set train.threads=1 "${EXTRA[@]}" \
      2>>"$OUT/train_$name.log"
  fi
  [ -f "$run/eval/.scored" ] || { score "$run" && touch "$run/eval/.scored"; }
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
for spec in "${RUNS[@]}"; do runs+=("$RUNS_DIR/${spec%%:*}"); done
"$PYTHON" "$ROOT/scripts/capacity.py" "${runs[@]}" --plot "$OUT/capacity.png" --seconds $(( $(date +%s) - start )) \
  | tee "$OUT/capacity.md"
