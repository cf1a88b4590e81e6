#!/usr/bin/env bash
# Issue 7: the default recipe on 1 and 2 GPUs (nvidia-h200-x2), same data and config, each run its own launch.
#   bash benchmarks/gpu_scaling.sh [NAME [FLAGS...]]   runs NAME-gpu1 (1 process) and NAME-gpu2 (torchrun, 2)
#                                                      with FLAGS added, for each seed in SEEDS (default 42)
#   EQUAL_BATCH=1 ...     the 2-GPU run with --batch-size 32 (2 x 32 = the 1-GPU run's 64: same steps and schedule)
#   WITH_ACCELERATE=1 ... then a short `accelerate launch` run, to show that launcher works too
#   MODEL=DIR ...         another model (default .carry/minilm, the pretrained MiniLM)
#   NO_WARMUP=1 ...       skip the two short unrecorded runs that warm a freshly started machine up
# Results (metrics.json per run, per-rank lines, env) in $OUT/scaling/; benchmarks/collect_results.py merges them.
set -uo pipefail
source benchmarks/gpu_common.sh
NAME=${1:-default}; shift $(( $# > 0 ? 1 : 0 )); FLAGS="$*"
S=$OUT/scaling; W=/tmp/scaling; mkdir -p $S $W
[ -f $S/env.txt ] || {
  machine_facts > $S/env.txt
}
COMMON="--model ${MODEL:-.carry/minilm} --dataset .carry/data/imdb_20k.csv.gz --epochs ${EPOCHS:-2} --report-to none --label-names negative positive"
run() {  # name, launcher...
  local name=$1; shift
  local t0=$(date +%s)
  "$@" -m qlora_helpers train $COMMON --output-dir $W/$name --plots-dir $W/$name-plots $EXTRA > $W/$name.out 2> $W/$name.err
  echo "$name: rc=$? $(( $(date +%s) - t0 )) s; $(tail -1 $W/$name.out | cut -c1-160)"
  grep -o "\[rank [0-9]/[0-9]\].*MiB" $W/$name.err > $S/$name.ranks.txt; tail -2 $W/$name.err | cut -c1-300
  python3 -c "import json,sys; m=json.load(open('$W/$name/metrics.json')); m['command']=sys.argv[1]; json.dump(m, open('$S/$name.metrics.json','w'))" "$* train ... $EXTRA" 2>/dev/null
}
if [ -z "${NO_WARMUP:-}" ]; then  # the first runs on a freshly started machine were up to 20% slower: run both once
  EXTRA="$FLAGS --max-steps 60" CUDA_VISIBLE_DEVICES=0 run warmup-gpu1 python3 > /dev/null
  EXTRA="$FLAGS --max-steps 60" run warmup-gpu2 torchrun --nproc-per-node 2 > /dev/null
  rm -f $S/warmup-*
fi
for seed in ${SEEDS:-42}; do
  if [ -n "${EQUAL_BATCH:-}" ]; then
    EXTRA="$FLAGS --seed $seed --batch-size 32" run $NAME-gpu2_b32-s$seed torchrun --nproc-per-node 2; continue
  fi
  EXTRA="$FLAGS --seed $seed" CUDA_VISIBLE_DEVICES=0 run $NAME-gpu1-s$seed python3
  EXTRA="$FLAGS --seed $seed" run $NAME-gpu2-s$seed torchrun --nproc-per-node 2
done
[ -n "${WITH_ACCELERATE:-}" ] && EXTRA="$FLAGS --max-steps 40" run $NAME-accelerate2 accelerate launch --multi_gpu --num_processes 2
exit 0
