#!/usr/bin/env bash
# Issue 7, third look: the 2-GPU step's median was 64 ms in one full run and 82-86 ms in two others on the same
# machine (1 GPU: 65-67 ms). Same machine, full default-recipe runs: 1 GPU, 2 GPUs as they are, 2 GPUs with each
# rank pinned to its half of the cores (benchmarks/pinned_rank.sh), 2 GPUs with 2 dataloader workers per rank.
# Metrics in $OUT/placement.tar.gz (rewritten after every run, so a cut-off call still returns what finished).
set -uo pipefail
source benchmarks/gpu_common.sh
D=/tmp/placement; R=$D/results; mkdir -p $R; TARBALL=$OUT/placement.tar.gz
COMMON="--model .carry/minilm --dataset .carry/data/imdb_20k.csv.gz --epochs 2 --report-to none --label-names negative positive --overwrite"
PIN="torchrun --nproc-per-node 2 --no-python bash benchmarks/pinned_rank.sh"
CUDA_VISIBLE_DEVICES=0 train_run warmup1 "--max-steps 30" python3
train_run warmup2 "--max-steps 30" torchrun --nproc-per-node 2
CUDA_VISIBLE_DEVICES=0 train_run gpu1-s42 "--seed 42" python3
train_run gpu2-s42 "--seed 42" torchrun --nproc-per-node 2
train_run gpu2pin-s42 "--seed 42" $PIN
train_run gpu2w2-s42 "--seed 42 --dataloader-workers 2" torchrun --nproc-per-node 2
train_run gpu2pin-s44 "--seed 44" $PIN
train_run gpu2w2-s44 "--seed 44 --dataloader-workers 2" torchrun --nproc-per-node 2
