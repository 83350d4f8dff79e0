#!/usr/bin/env bash
# The length study in one command: Bible corpus → RNNencdec and RNNsearch → BLEU by sentence length.
# Each step is a plain mtkit command, so any one of them can be changed or rerun on its own.
#   bash scripts/reproduce.sh          # CPU setting: both models trained side by side, one core each
#   STUDY=transformer bash scripts/reproduce.sh   # `make transformer`: the Transformer on one core, the same
#                                      # 48 minutes, then scored beside the RNN runs that `make reproduce` left
#   FULL=1 bash scripts/reproduce.sh   # larger models and budgets for a GPU, plus Luong variants and a Transformer
# Runs, cache and results go under the current directory (the repository root for `make reproduce`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MTKIT=${MTKIT:-$ROOT/.venv/bin/mtkit}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
start=$(date +%s)
BESIDE=()  # finished runs scored beside the ones trained here
if [ "${FULL:-0}" = 1 ]; then
  CONFIGS=("$ROOT"/configs/full/{rnnencdec,rnnsearch,luong_general,scaled_dot,transformer}.yaml)
  PARALLEL=0
elif [ "${STUDY:-rnn}" = transformer ]; then
  # Its own target: a third model beside the two of `make reproduce` would either share 2 cores three ways
  # (changing the RNNs' budget) or run 48 minutes after them (breaking the hour).
  CONFIGS=("$ROOT"/configs/bible_transformer.yaml)
  PARALLEL=1
  for run in runs/bible_rnnencdec runs/bible_rnnsearch; do
    if [ -f "$run/best.pt" ]; then BESIDE+=("$run"); else echo "note: $run not found (make reproduce trains it); scoring without it"; fi
  done
  OUT=${OUT:-results/transformer}
else
  CONFIGS=("$ROOT"/configs/bible_{rnnencdec,rnnsearch}.yaml)
  PARALLEL=${PARALLEL:-1}
fi
OUT=${OUT:-results}
mkdir -p "$OUT"
EXTRA=("$@")  # e.g. --set train.max_minutes=5 for a quick look

echo "== 1/4 prepare: read, clean and split the Bible, train SentencePiece (once; cached)"
$MTKIT prepare "${CONFIGS[0]}" "${EXTRA[@]}"

echo "== 2/4 train ${#CONFIGS[@]} models of the same size and budget (progress: $OUT/train_*.log)"
runs=()
pids=()
for config in "${CONFIGS[@]}"; do
  name=$(basename "$config" .yaml)
  run=$(sed -n 's/^run_dir: *//p' "$config")
  runs+=("$run")
  if [ "$PARALLEL" = 1 ]; then
    # Small RNNs use one core well and two cores poorly: one model per core finishes both sooner.
    $MTKIT train "$config" --overwrite --set train.threads=1 "${EXTRA[@]}" 2>"$OUT/train_$name.log" &
    pids+=($!)
  else
    $MTKIT train "$config" --overwrite "${EXTRA[@]}" 2>"$OUT/train_$name.log"
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

echo "== 3/4 translate each test split and passage set (beam search); score BLEU by length"
# Each run's translations are cached in RUN/eval/, so translate them side by side first.
pids=()
for run in "${runs[@]}"; do
  threads=$([ "$PARALLEL" = 1 ] && echo 1 || nproc)
  ($MTKIT eval --run "$run" --threads "$threads" >/dev/null && \
   $MTKIT eval --run "$run" --passages --threads "$threads" --out "$run/eval/passages" >/dev/null) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
all_runs=("${BESIDE[@]}" "${runs[@]}")
run_args=()
for run in "${all_runs[@]}"; do run_args+=(--run "$run" --name "$(basename "$run" | sed 's/^bible_//; s/^full_//')"); done
$MTKIT eval "${run_args[@]}" --by-length --out "$OUT" | tee "$OUT/table.txt"
$MTKIT eval "${run_args[@]}" --by-length --passages --out "$OUT" | tee "$OUT/passages_table.txt"

echo "== 4/4 summary, and BLEU by length within bands of training overlap (see the README)"
"$PYTHON" "$ROOT/scripts/overlap_by_length.py" "${all_runs[@]}" --plot "$OUT/bleu_by_length_high_overlap.png" > "$OUT/overlap_by_length.txt"
"$PYTHON" "$ROOT/scripts/training_curves.py" "${all_runs[@]}" --plot "$OUT/training_curves.png" > "$OUT/training_curves.md"
"$PYTHON" "$ROOT/scripts/summarize.py" "$OUT" "${all_runs[@]}" --seconds $(( $(date +%s) - start )) | tee "$OUT/summary.md"
