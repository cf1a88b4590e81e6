#!/usr/bin/env bash
# The notebook on a GPU as a user runs it (papermill), beside the CLI with the same settings, then the notebook on
# every GPU; each timed into a run record (benchmarks/timed.py) in OUT (default outputs/runs).
#   QLORA_MINILM=... QLORA_IMDB=... OUT=... bash benchmarks/notebook_gpu.sh
# The notebook and the CLI share the profile `full` with MiniLM and the 20k IMDb reviews (split seed 42, default
# recipe, EPOCHS epochs, default 3); CUDA_VISIBLE_DEVICES=0 keeps the one-GPU runs on one GPU; LOGS: where the executed
# notebooks go.
set -uo pipefail
out=${OUT:-outputs/runs}; work=$(mktemp -d); mkdir -p "$out"
nb=QLoRA_BERT_TextClassification.ipynb
epochs=${EPOCHS:-3}
data=(-p MODEL "$QLORA_MINILM" -p DATASET "$QLORA_IMDB" -y 'LABEL_NAMES: [negative, positive]' -p EPOCHS "$epochs")
CUDA_VISIBLE_DEVICES=0 python3 -m benchmarks.timed notebook_gpu --output "$out/notebook_gpu.json" \
  --metrics "$work/nb1/metrics.json" --notebook "$work/nb1.ipynb" -- \
  python3 -m papermill "$nb" "$work/nb1.ipynb" -p PROFILE full "${data[@]}" -p OUTPUT_DIR "$work/nb1" \
  -p PLOTS_DIR "$work/plots1" -p GPUS 1 --cwd . --log-output
CUDA_VISIBLE_DEVICES=0 python3 -m benchmarks.timed cli_gpu --output "$out/cli_gpu.json" --metrics "$work/cli1/metrics.json" -- \
  python3 -m qlora_helpers train --model "$QLORA_MINILM" --dataset "$QLORA_IMDB" --label-names negative positive --epochs "$epochs" \
  --output-dir "$work/cli1" --plots-dir "$work/plots2"
python3 -m benchmarks.timed notebook_gpus --output "$out/notebook_gpus.json" \
  --metrics "$work/nb2/metrics.json" --notebook "$work/nb2.ipynb" -- \
  python3 -m papermill "$nb" "$work/nb2.ipynb" -p PROFILE full "${data[@]}" -p OUTPUT_DIR "$work/nb2" \
  -p PLOTS_DIR "$work/plots3" -p GPUS all --cwd . --log-output
cp "$work"/nb1.ipynb "$work"/nb2.ipynb "${LOGS:-$out}/" 2>/dev/null
