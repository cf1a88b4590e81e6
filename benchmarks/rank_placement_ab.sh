#!/usr/bin/env bash
# Issue 7, third look: the 2-GPU step's median was 64 ms in one full run and 82-86 ms in two others on the same
# machine (1 GPU: 65-67 ms). Same machine, full default-recipe runs: 1 GPU, 2 GPUs as they are, 2 GPUs with each
# rank pinned to its half of the cores (benchmarks/pinned_rank.sh), 2 GPUs with 2 dataloader workers per rank.
# Metrics in $OUT/placement.tar.gz (rewritten after every run, so a cut-off call still returns what finished).
set -uo pipefail
export PYTHONPATH=$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast stays off
D=/tmp/placement; R=$D/results; mkdir -p $R
COMMON="--model .carry/minilm --dataset .carry/data/imdb_20k.csv.gz --epochs 2 --report-to none --label-names negative positive --overwrite"
run() {  # name, flags, launcher...
  local name=$1 flags=$2; shift 2; local t0=$(date +%s)
  "$@" -m qlora_helpers train $COMMON $flags --output-dir $D/$name --plots-dir $D/$name-plots > $D/$name.out 2> $D/$name.err
  echo "$name: rc=$? $(( $(date +%s) - t0 )) s"
  cp $D/$name/metrics.json $R/$name.metrics.json 2>/dev/null || tail -3 $D/$name.err
  python3 -c "import json; m=json.load(open('$R/$name.metrics.json')); print('   ', m['train_step_samples_per_second'], 'samples/s', m['train_step_ms'], m['test_accuracy'])" 2>/dev/null
  tar czf $OUT/placement.tar.gz -C $D results
}
PIN="torchrun --nproc-per-node 2 --no-python bash benchmarks/pinned_rank.sh"
CUDA_VISIBLE_DEVICES=0 run warmup1 "--max-steps 30" python3
run warmup2 "--max-steps 30" torchrun --nproc-per-node 2
CUDA_VISIBLE_DEVICES=0 run gpu1-s42 "--seed 42" python3
run gpu2-s42 "--seed 42" torchrun --nproc-per-node 2
run gpu2pin-s42 "--seed 42" $PIN
run gpu2w2-s42 "--seed 42 --dataloader-workers 2" torchrun --nproc-per-node 2
run gpu2pin-s44 "--seed 44" $PIN
run gpu2w2-s44 "--seed 44 --dataloader-workers 2" torchrun --nproc-per-node 2
