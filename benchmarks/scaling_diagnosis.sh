#!/usr/bin/env bash
# Issue 7: why a second GPU adds time to every step. Short runs of the default recipe (MiniLM, STEPS steps),
# each its own launch, on nvidia-h200-x2:
#   gpu1          one process on GPU 0 (plain python3), profiled (benchmarks/profile_ranks.py)
#   gpu2          torchrun, 2 processes, profiled, NCCL_DEBUG=INFO (which transport), CPU use sampled
#   solo-pair     two independent 1-GPU runs at the same time, one per GPU (no DDP): host contention alone
#   gpu1-torchrun one process under torchrun (OMP_NUM_THREADS=1, as torchrun sets it)
#   gpu2-omp4     torchrun, 2 processes, OMP_NUM_THREADS=4
# Everything lands in $OUT/diag.tar.gz (metrics.json per run, per-rank step times, profiles, traces, system facts).
set -uo pipefail
source benchmarks/gpu_common.sh
STEPS=${STEPS:-100}; D=/tmp/diag; R=$D/results; mkdir -p $R
COMMON="--model ${MODEL:-.carry/minilm} --dataset ${DATASET:-.carry/data/imdb_20k.csv.gz} --report-to none --label-names negative positive --max-steps $STEPS --overwrite"
{ nproc; lscpu; cat /sys/fs/cgroup/cpu.max 2>/dev/null; nvidia-smi topo -m; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, transformers, peft, bitsandbytes as b, accelerate as a; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__, 'accelerate', a.__version__)"
} > $R/system.txt 2>&1
sample_cpu() {  # per-thread CPU use of the training processes, every 2 s
  while true; do echo "--- $(date +%s)"; top -b -H -n 1 -w 200 | head -30; sleep 2; done > $R/$1.cpu.txt 2>&1 &
  echo $!
}
run() {  # name, launcher... ; PROFILE=1 runs it through profile_ranks.py
  local name=$1; shift; local t0=$(date +%s)
  local entry="-m qlora_helpers"; [ -n "${PROFILE:-}" ] && entry="benchmarks/profile_ranks.py"
  PROFILE_DIR=$R/$name-prof "$@" $entry train $COMMON --output-dir $D/$name --plots-dir $D/$name-plots ${EXTRA:-} > $D/$name.out 2> $D/$name.err
  echo "$name: rc=$? $(( $(date +%s) - t0 )) s"
  cp $D/$name/metrics.json $R/$name.metrics.json 2>/dev/null || tail -5 $D/$name.err
  grep -E "NCCL INFO (Channel|Connected|P2P|Using|comm |NVLS|init)" $D/$name.err | head -40 > $R/$name.nccl.txt
  python3 -c "import json; m=json.load(open('$R/$name.metrics.json')); print('   ', m.get('train_step_samples_per_second'), 'samples/s', m.get('step_ms'))" 2>/dev/null
}
EXTRA="--max-steps 30" CUDA_VISIBLE_DEVICES=0 run warmup1 python3
EXTRA="--max-steps 30" run warmup2 torchrun --nproc-per-node 2
PROFILE=1 CUDA_VISIBLE_DEVICES=0 run gpu1 python3
pid=$(sample_cpu gpu2); PROFILE=1 NCCL_DEBUG=INFO run gpu2 torchrun --nproc-per-node 2; kill $pid
pid=$(sample_cpu solo-pair)
CUDA_VISIBLE_DEVICES=0 run solo-pair-a python3 & CUDA_VISIBLE_DEVICES=1 run solo-pair-b python3 & wait; kill $pid
CUDA_VISIBLE_DEVICES=0 run gpu1-torchrun torchrun --nproc-per-node 1
OMP_NUM_THREADS=4 run gpu2-omp4 torchrun --nproc-per-node 2
tar czf $OUT/diag.tar.gz -C $D results
exit 0
