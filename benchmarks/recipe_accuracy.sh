#!/usr/bin/env bash
# Issue 4: accuracy on real data - all-MiniLM-L6-v2 on the 20k IMDb reviews (80/10/10 split, seed 42),
# 3 epochs, each run in its own process. Usage: recipe_accuracy.sh NAME "SEEDS" bench-recipes-args...
# On the lent GPU with carry [".carry"]; results in $OUT/accuracy/NAME.json.
set -uo pipefail
export PYTHONPATH=$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p $OUT/accuracy
name=$1; seeds=$2; shift 2
python3 -m qlora_helpers bench-recipes --model .carry/minilm --dataset .carry/data/imdb_20k.csv.gz --epochs 3 \
  --seeds $seeds --label "accuracy: $name, MiniLM, 20k IMDb" --output $OUT/accuracy/$name.json "$@" \
  2>>$OUT/accuracy/stderr.txt | grep -v "^wrote"
