#!/usr/bin/env bash
# The notebook on a GPU as a user runs it (papermill), beside the CLI with the same settings, then the notebook on
# every GPU; each timed into a run record (benchmarks/timed.py) in OUT (default outputs/runs).
#   QLORA_MINILM=... QLORA_IMDB=... OUT=... [EPOCHS=3] [ROUNDS=1] [EVERY_GPU=1] bash benchmarks/device/notebook_gpu.sh
# The notebook and the CLI share the profile `full` with MiniLM and the 20k IMDb reviews (split seed 42, default
# recipe, EPOCHS epochs). ROUNDS alternates CLI and notebook runs on GPU 0 (cli_gpu_rN, notebook_gpu_rN), so the
# machine's drift falls on both; EVERY_GPU=1 then runs the notebook on every GPU (notebook_gpus). WORK keeps
# the runs' output folders (adapters, executed notebooks).
set -uo pipefail
out=${OUT:-outputs/runs}; work=${WORK:-$(mktemp -d)}; mkdir -p "$out" "$work"
epochs=${EPOCHS:-3}
data=(-p MODEL "$QLORA_MINILM" -p DATASET "$QLORA_IMDB" -y 'LABEL_NAMES: [negative, positive]' -p EPOCHS "$epochs")

notebook() {  # NAME GPUS
  python3 -m benchmarks.timed "$1" --output "$out/$1.json" --metrics "$work/$1/metrics.json" \
    --notebook "$work/$1.ipynb" -- python3 -m papermill QLoRA_BERT_TextClassification.ipynb "$work/$1.ipynb" \
    -p PROFILE full "${data[@]}" -p OUTPUT_DIR "$work/$1" -p PLOTS_DIR "$work/plots-$1" -p GPUS "$2" --cwd . --log-output
}
cli() {  # NAME
  python3 -m benchmarks.timed "$1" --output "$out/$1.json" --metrics "$work/$1/metrics.json" -- \
    python3 -m qlora_helpers train --model "$QLORA_MINILM" --dataset "$QLORA_IMDB" --label-names negative positive \
    --epochs "$epochs" --output-dir "$work/$1" --plots-dir "$work/plots-$1"
}
for round in $(seq "${ROUNDS:-1}"); do
  CUDA_VISIBLE_DEVICES=0 cli "cli_gpu_r$round"
  CUDA_VISIBLE_DEVICES=0 notebook "notebook_gpu_r$round" 1
done
if [ "${EVERY_GPU:-1}" = 1 ]; then notebook notebook_gpus all; fi
