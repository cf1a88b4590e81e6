#!/usr/bin/env bash
# Issue 7, second look: the two fixes the per-rank profile pointed at (benchmarks/profile_ranks.py), A/B on short
# runs of the default recipe, 1 and 2 GPUs (nvidia-h200-x2): cuDNN attention on (the old behaviour) / off (the
# new default), and 2 dataloader workers. Each run its own launch; metrics in $OUT/ab.tar.gz.
set -uo pipefail
export PYTHONPATH=$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast stays off
STEPS=${STEPS:-150}; D=/tmp/ab; R=$D/results; mkdir -p $R
COMMON="--model .carry/minilm --dataset .carry/data/imdb_20k.csv.gz --report-to none --label-names negative positive --max-steps $STEPS --overwrite"
run() {  # name, flags, launcher...
  local name=$1 flags=$2; shift 2; local t0=$(date +%s)
  "$@" -m qlora_helpers train $COMMON $flags --output-dir $D/$name --plots-dir $D/$name-plots > $D/$name.out 2> $D/$name.err
  echo "$name: rc=$? $(( $(date +%s) - t0 )) s"; grep -h "^attention:" $D/$name.out | head -1
  cp $D/$name/metrics.json $R/$name.metrics.json 2>/dev/null || tail -5 $D/$name.err
  python3 -c "import json; m=json.load(open('$R/$name.metrics.json')); print('   ', m['train_step_samples_per_second'], 'samples/s', m['train_step_ms'])" 2>/dev/null
}
CUDA_VISIBLE_DEVICES=0 run warmup1 "--max-steps 30" python3
run warmup2 "--max-steps 30" torchrun --nproc-per-node 2
for round in ${ROUNDS:-1}; do
  for v in "cudnn:--cudnn-attention" "new:" "new-w2:--dataloader-workers 2"; do
    name=${v%%:*}; flags=${v#*:}
    CUDA_VISIBLE_DEVICES=0 run $name-gpu1-r$round "$flags" python3
    run $name-gpu2-r$round "$flags" torchrun --nproc-per-node 2
  done
done
tar czf $OUT/ab.tar.gz -C $D results
