#!/usr/bin/env bash
# Lent-GPU round 1: environment, offline-profile tuning sweep, speed/memory arms on bert-base shapes.
# Run on the device from the repo root with carry [".carry"]; results land in $OUT.
set -uo pipefail
export PYTHONPATH=$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/env.txt
python3 -c "import torch, transformers, peft, bitsandbytes as b; print(torch.__version__, transformers.__version__, peft.__version__, b.__version__)" | tee -a $OUT/env.txt
t0=$(date +%s)
python3 benchmarks/tune_offline_profile.py .carry/minilm $OUT/tune_offline.json 2>$OUT/tune.err | grep TUNE
echo "tune took $(( $(date +%s) - t0 )) s"; t0=$(date +%s)
python3 -m qlora_helpers bench --model .carry/bert-base-shape --random-weights --dataset .carry/data/imdb_20k.csv.gz \
  --max-samples 4000 --max-steps 25 --warmup-steps 5 --checkpointing both --label "efficiency, bert-base shapes, random weights" \
  --output $OUT/efficiency_bert_base_shapes.json 2>$OUT/bench.err
echo "bench took $(( $(date +%s) - t0 )) s"
