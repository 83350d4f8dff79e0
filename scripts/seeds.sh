#!/usr/bin/env bash
# The length study rerun with N other training seeds (train.seed = 1..N; the data split and passage windows stay),
# one `scripts/reproduce.sh` each, then the spread of each model's paired ratios over those runs and the main run
# (results/ when it is there, else its record in docs/): results/seeds.md.
# Each model trains for as many steps as in the main run (its record, docs/length_study.md), so a seed's run
# differs from the main run in the seed alone on any machine: the CPU-time budget alone would give a faster
# machine more steps. STEPS="a b c" sets other step counts (RNNencdec, RNNsearch, Transformer); STEPS=cpu
# keeps the CPU-time budget alone. A seed takes at most as long as `make reproduce` (under an hour).
#   bash scripts/seeds.sh 2     # `make seeds SEEDS=2`
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
N=${1:?usage: scripts/seeds.sh N [--set key=value ...] (N: how many seeds besides the main run)}
shift
OUT=${OUT:-results}
if [ -z "${STEPS:-}" ]; then
  STEPS=$("$PYTHON" "$ROOT/scripts/record_steps.py" "$ROOT/docs/length_study.md" rnnencdec rnnsearch transformer)
  echo "== steps of the main run (docs/length_study.md): $STEPS"
fi
[ "$STEPS" = cpu ] && STEPS=""
export STEPS
for seed in $(seq 1 "$N"); do
  if [ -f "$OUT/seed$seed/summary.md" ]; then
    echo "== seed $seed: done before ($OUT/seed$seed/summary.md); delete it to run again"
  else
    echo "== seed $seed"
    SEED=$seed bash "$ROOT/scripts/reproduce.sh" "$@"
  fi
done
dirs=()
if [ -f "$OUT/passages_scores.json" ]; then dirs+=("$OUT")
elif [ -f "$ROOT/docs/length_study_passages_scores.json" ]; then dirs+=("$ROOT/docs/length_study_passages_scores.json"); fi
for seed in $(seq 1 "$N"); do dirs+=("$OUT/seed$seed"); done
"$PYTHON" "$ROOT/scripts/seed_spread.py" "${dirs[@]}" | tee "$OUT/seeds.md"
