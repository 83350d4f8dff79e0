#!/usr/bin/env bash
# The length study in one command: Bible corpus → RNNencdec, RNNsearch and a Transformer → BLEU of the same verses
# alone and inside passages, and BLEU by sentence length. Each step is a plain mtkit command, so any one of them
# can be changed or rerun on its own.
#   bash scripts/reproduce.sh          # CPU setting: the three models side by side on the machine's cores, each
#                                      # with the same budget of CPU time (train.max_cpu_minutes in its config)
#   SEED=2 bash scripts/reproduce.sh   # the same study with other initial weights, dropout and batch order
#                                      # (train.seed; the data split stays): runs/seed2/, results/seed2/
#   STEPS="3328 2653 1770" bash scripts/reproduce.sh
#                                      # each model also stops at that many steps (RNNencdec, RNNsearch,
#                                      # Transformer): to match a recorded run on a machine of other speed
#   FULL=1 bash scripts/reproduce.sh   # larger models and budgets for a GPU, plus Luong variants
# Runs, cache and results go under the current directory (the repository root for `make reproduce`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MTKIT=${MTKIT:-$ROOT/.venv/bin/mtkit}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
start=$(date +%s)
EXTRA=("$@")  # reach mtkit prepare and train, e.g. --set train.max_len=30
CPU_MINUTES=${CPU_MINUTES:-30}  # each model's training budget in CPU-minutes (CPU_MINUTES=5 for a quick look)
read -r -a STEPS_OF <<<"${STEPS:-}"  # optional: each model's steps (train.max_steps), in the order of CONFIGS
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

echo "== 2/4 train ${#CONFIGS[@]} models of about the same size with the same budget (progress: $OUT/train_*.log)"
runs=()
names=()
for config in "${CONFIGS[@]}"; do
  names+=("$(basename "$config" .yaml)")
  runs+=("$RUNS_DIR/$(basename "$(sed -n 's/^run_dir: *//p' "$config")")")
done
# Train model I (one thread) on core CORE until its process has used MINUTES of CPU time in all: NEW starts it
# (--overwrite), RESUME continues it from its last.pt.
train_leg() {
  local i=$1 core=$2 minutes=$3 how=$4 steps=()
  if [ -n "${STEPS_OF[$i]:-}" ]; then steps=(--set "train.max_steps=${STEPS_OF[$i]}"); fi
  pin "$core" $MTKIT train "${CONFIGS[$i]}" "$how" --set "run_dir=${runs[$i]}" --set train.threads=1 \
    --set "train.max_cpu_minutes=$minutes" "${steps[@]}" "${EXTRA[@]}" 2>>"$OUT/train_${names[$i]}.log"
}
# Run a command on the given cores (taskset's list, e.g. 0 or 0-1); without taskset the kernel places it.
pin() {
  if command -v taskset >/dev/null; then taskset -c "$@"; else shift; "$@"; fi
}
rm -f "$OUT"/train_*.log "$OUT/.first_half"
pids=()
if [ "$PARALLEL" != 1 ]; then
  for i in "${!CONFIGS[@]}"; do
    $MTKIT train "${CONFIGS[$i]}" --overwrite --set "run_dir=${runs[$i]}" "${EXTRA[@]}" 2>"$OUT/train_${names[$i]}.log"
  done
elif [ "${#CONFIGS[@]}" = 3 ] && [ "$(nproc)" = 2 ]; then
  # Three models, two cores: each model runs on a core of its own, never time-sliced with another, so what
  # it gets does not depend on the scheduler. Two queues of CPU_MINUTES * 3/2 each; the third model's budget is
  # split across them, its first half early on core 1, its second half late on core 0, resumed exactly from its
  # checkpoint:
  #   core 0: model 1 (all of it), then model 3 (second half)
  #   core 1: model 3 (first half), then model 2 (all of it)
  half=$(awk "BEGIN {print $CPU_MINUTES / 2}")
  (if train_leg 2 1 "$half" --overwrite; then echo 0 >"$OUT/.first_half"; else echo 1 >"$OUT/.first_half"; exit 1; fi
   train_leg 1 1 "$CPU_MINUTES" --overwrite) &
  pids+=($!)
  (train_leg 0 0 "$CPU_MINUTES" --overwrite
   while [ ! -f "$OUT/.first_half" ]; do sleep 5; done
   [ "$(cat "$OUT/.first_half")" = 0 ] && train_leg 2 0 "$CPU_MINUTES" --resume) &
  pids+=($!)
else
  # As many cores as models (or too few to schedule): one process a model, on core i where there is one.
  for i in "${!CONFIGS[@]}"; do
    train_leg "$i" "$(( i % $(nproc) ))" "$CPU_MINUTES" --overwrite &
    pids+=($!)
  done
fi
# While they run, one status line per model every minute.
while [ "${#pids[@]}" -gt 0 ] && kill -0 "${pids[@]}" 2>/dev/null; do
  sleep 60
  for run in "${runs[@]}"; do
    last=$(grep '"kind": "train"' "$run/metrics.jsonl" 2>/dev/null | tail -n 1 || true)
    if [ -n "$last" ]; then echo "$(basename "$run"): $last"; fi
  done
done
for pid in "${pids[@]}"; do wait "$pid"; done
for run in "${runs[@]}"; do
  "$PYTHON" -c "import sys; from pathlib import Path; from mtkit.checkpoint import load_checkpoint; s = load_checkpoint(Path(sys.argv[1])).state; \
print(f'{sys.argv[1]}: {s.step} steps, {s.cpu_seconds / 60:.1f} CPU-minutes, {s.seconds / 60:.1f} wall minutes; {s.stop_reason}')" \
    "$run/last.pt"
done

echo "== 3/4 translate each test split and passage set (beam search); score the same verses alone and in passages, and BLEU by length"
# Each run's translations are cached in RUN/eval/, so translate them side by side first (with two cores and
# three models: the first two one after the other on core 0, the third on core 1).
evaluate_run() {
  pin "$2" $MTKIT eval --run "$1" --threads "$3" >/dev/null && \
  pin "$2" $MTKIT eval --run "$1" --passages --threads "$3" --out "$1/eval/passages" >/dev/null
}
pids=()
if [ "$PARALLEL" != 1 ]; then
  for run in "${runs[@]}"; do evaluate_run "$run" "0-$(( $(nproc) - 1 ))" "$(nproc)"; done
elif [ "${#runs[@]}" = 3 ] && [ "$(nproc)" = 2 ]; then
  (evaluate_run "${runs[0]}" 0 1 && evaluate_run "${runs[1]}" 0 1) &
  pids+=($!)
  evaluate_run "${runs[2]}" 1 1 &
  pids+=($!)
else
  for i in "${!runs[@]}"; do evaluate_run "${runs[$i]}" "$(( i % $(nproc) ))" 1 & pids+=($!); done
fi
for pid in "${pids[@]}"; do wait "$pid"; done
run_args=()
for run in "${runs[@]}"; do run_args+=(--run "$run" --name "$(basename "$run" | sed 's/^bible_//; s/^full_//')"); done
$MTKIT eval "${run_args[@]}" --by-length --out "$OUT" | tee "$OUT/table.txt"
$MTKIT eval "${run_args[@]}" --by-length --passages --out "$OUT" | tee "$OUT/passages_table.txt"

echo "== 4/4 summary, and BLEU by length within bands of training overlap (see the README)"
"$PYTHON" "$ROOT/scripts/overlap_by_length.py" "${runs[@]}" --plot "$OUT/bleu_by_length_high_overlap.png" > "$OUT/overlap_by_length.txt"
"$PYTHON" "$ROOT/scripts/training_curves.py" "${runs[@]}" --plot "$OUT/training_curves.png" > "$OUT/training_curves.md"
"$PYTHON" "$ROOT/scripts/summarize.py" "$OUT" "${runs[@]}" --seconds $(( $(date +%s) - start )) | tee "$OUT/summary.md"
