#!/usr/bin/env bash
# The length study in one command: Bible corpus → RNNencdec, RNNsearch and a Transformer → BLEU of the same verses
# alone and inside passages, and BLEU by sentence length. Each step is a plain mtkit command, so any one of them
# can be changed or rerun on its own.
#   bash scripts/reproduce.sh          # CPU setting: the three models side by side on the machine's cores, each
#                                      # with the same budget of CPU time (train.max_cpu_minutes in its config)
#   SEED=2 bash scripts/reproduce.sh   # the same study with other initial weights, dropout and batch order
#                                      # (train.seed; the data split stays): runs/seed2/, results/seed2/
#   FULL=1 bash scripts/reproduce.sh   # larger models and budgets for a GPU, plus Luong variants
# Runs, cache and results go under the current directory (the repository root for `make reproduce`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MTKIT=${MTKIT:-$ROOT/.venv/bin/mtkit}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
start=$(date +%s)
EXTRA=("$@")  # e.g. --set train.max_cpu_minutes=5 for a quick look
if [ "${FULL:-0}" = 1 ]; then
  CONFIGS=("$ROOT"/configs/full/{rnnencdec,rnnsearch,luong_general,scaled_dot,transformer}.yaml)
  PARALLEL=0
else
  # Three single-threaded processes on two cores: the kernel shares the cores among them, and each stops at the
  # same CPU time, so none gets more compute than another (see the README's budget principle).
  CONFIGS=("$ROOT"/configs/bible_{rnnencdec,rnnsearch,transformer}.yaml)
  PARALLEL=${PARALLEL:-1}
fi
RUNS_DIR=runs
OUT=${OUT:-results}
if [ -n "${SEED:-}" ]; then
  RUNS_DIR=runs/seed$SEED
  OUT=$OUT/seed$SEED
  EXTRA+=(--set "train.seed=$SEED")
fi
mkdir -p "$OUT"

echo "== 1/4 prepare: read, clean and split the Bible, train SentencePiece (once; cached)"
$MTKIT prepare "${CONFIGS[0]}" "${EXTRA[@]}"

echo "== 2/4 train ${#CONFIGS[@]} models of the same size and budget (progress: $OUT/train_*.log)"
runs=()
pids=()
for config in "${CONFIGS[@]}"; do
  name=$(basename "$config" .yaml)
  run=$RUNS_DIR/$(basename "$(sed -n 's/^run_dir: *//p' "$config")")
  runs+=("$run")
  if [ "$PARALLEL" = 1 ]; then
    # Small models use one core well and two cores poorly: one thread each finishes them all sooner.
    $MTKIT train "$config" --overwrite --set "run_dir=$run" --set train.threads=1 "${EXTRA[@]}" \
      2>"$OUT/train_$name.log" &
    pids+=($!)
  else
    $MTKIT train "$config" --overwrite --set "run_dir=$run" "${EXTRA[@]}" 2>"$OUT/train_$name.log"
  fi
done
# While they run, one status line per model every minute.
while [ "${#pids[@]}" -gt 0 ] && kill -0 "${pids[@]}" 2>/dev/null; do
  sleep 60
  for run in "${runs[@]}"; do
    last=$(grep '"kind": "train"' "$run/metrics.jsonl" 2>/dev/null | tail -n 1 || true)
    if [ -n "$last" ]; then echo "$(basename "$run"): $last"; fi
  done
done
for pid in "${pids[@]}"; do wait "$pid"; done

echo "== 3/4 translate each test split and passage set (beam search); score the same verses alone and in passages, and BLEU by length"
# Each run's translations are cached in RUN/eval/, so translate them side by side first.
pids=()
for run in "${runs[@]}"; do
  threads=$([ "$PARALLEL" = 1 ] && echo 1 || nproc)
  ($MTKIT eval --run "$run" --threads "$threads" >/dev/null && \
   $MTKIT eval --run "$run" --passages --threads "$threads" --out "$run/eval/passages" >/dev/null) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
run_args=()
for run in "${runs[@]}"; do run_args+=(--run "$run" --name "$(basename "$run" | sed 's/^bible_//; s/^full_//')"); done
$MTKIT eval "${run_args[@]}" --by-length --out "$OUT" | tee "$OUT/table.txt"
$MTKIT eval "${run_args[@]}" --by-length --passages --out "$OUT" | tee "$OUT/passages_table.txt"

echo "== 4/4 summary, and BLEU by length within bands of training overlap (see the README)"
"$PYTHON" "$ROOT/scripts/overlap_by_length.py" "${runs[@]}" --plot "$OUT/bleu_by_length_high_overlap.png" > "$OUT/overlap_by_length.txt"
"$PYTHON" "$ROOT/scripts/training_curves.py" "${runs[@]}" --plot "$OUT/training_curves.png" > "$OUT/training_curves.md"
"$PYTHON" "$ROOT/scripts/summarize.py" "$OUT" "${runs[@]}" --seconds $(( $(date +%s) - start )) | tee "$OUT/summary.md"
