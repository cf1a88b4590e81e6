#!/usr/bin/env bash
# Issue 7: the default recipe on 1 and 2 GPUs (nvidia-h200-x2), same data and config, each run its own
# launch; then a short `accelerate launch` run to show that launcher works too. Results in $OUT/scaling/.
set -uo pipefail
export PYTHONPATH=$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast stays off
S=$OUT/scaling; W=/tmp/scaling; mkdir -p $S $W
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $S/env.txt
python3 -c "import torch, transformers, peft, bitsandbytes as b, accelerate as a; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__, 'accelerate', a.__version__)" | tee -a $S/env.txt
COMMON="--model .carry/minilm --dataset .carry/data/imdb_20k.csv.gz --epochs ${EPOCHS:-2} --report-to none --label-names negative positive"
run() {  # name, launcher...
  local name=$1; shift
  local t0=$(date +%s)
  "$@" -m qlora_helpers train $COMMON --output-dir $W/$name --plots-dir $W/$name-plots $EXTRA > $S/$name.out 2> $W/$name.err
  echo "$name: rc=$? $(( $(date +%s) - t0 )) s; $(tail -1 $S/$name.out | cut -c1-200)"
  grep -o "\[rank [0-9]/[0-9]\].*MiB" $W/$name.err | tee $S/$name.ranks.txt; tail -3 $W/$name.err | cut -c1-300
  cp $W/$name/metrics.json $S/$name.metrics.json 2>/dev/null
}
if [ -n "${EQUAL_BATCH:-}" ]; then  # 2 GPUs x 32 = the 1-GPU run's effective batch 64: same steps and schedule
  EXTRA="--batch-size 32" run gpu2_b32 torchrun --nproc-per-node 2; exit
fi
EXTRA="" CUDA_VISIBLE_DEVICES=0 run gpu1 python3
EXTRA="" run gpu2 torchrun --nproc-per-node 2
[ -n "${WITH_ACCELERATE:-}" ] && EXTRA="--max-steps 40" run accelerate2 accelerate launch --multi_gpu --num_processes 2
