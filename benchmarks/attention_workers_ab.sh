#!/usr/bin/env bash
# Issue 7, second look: the two fixes the per-rank profile pointed at (benchmarks/profile_ranks.py), A/B on short
# runs of the default recipe, 1 and 2 GPUs (nvidia-h200-x2): cuDNN attention on (the old behaviour) / off (the
# new default), and 2 dataloader workers. Each run its own launch; metrics in $OUT/ab.tar.gz.
set -uo pipefail
source benchmarks/gpu_common.sh
STEPS=${STEPS:-150}; D=/tmp/ab; R=$D/results; mkdir -p $R
COMMON="--model .carry/minilm --dataset .carry/data/imdb_20k.csv.gz --report-to none --label-names negative positive --max-steps $STEPS --overwrite"
CUDA_VISIBLE_DEVICES=0 train_run warmup1 "--max-steps 30" python3
train_run warmup2 "--max-steps 30" torchrun --nproc-per-node 2
for round in ${ROUNDS:-1}; do
  for v in "cudnn:--cudnn-attention" "new:" "new-w2:--dataloader-workers 2"; do
    name=${v%%:*}; flags=${v#*:}
    CUDA_VISIBLE_DEVICES=0 train_run $name-gpu1-r$round "$flags" python3
    train_run $name-gpu2-r$round "$flags" torchrun --nproc-per-node 2
  done
done
tar czf $OUT/ab.tar.gz -C $D results
