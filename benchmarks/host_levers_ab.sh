#!/usr/bin/env bash
# Issue 7, fourth look: host-side levers A/B on short runs of the default recipe, 1 and 2 GPUs (nvidia-h200-x2),
# interleaved (the lent machine's speed drifted by more than earlier variants differed within one call):
#   new      the recipe as it is (numpy PaddingCollator since 8bdcad5)
#   stock    transformers' DataCollatorWithPadding (the recipe before)           VARIANTS=stock_collator
#   nosync   bitsandbytes' optimizer without its per-parameter device sync      VARIANTS=no_bnb_step_sync
# (benchmarks/with_variants.py says what each variant changes). Every round runs each arm on 1 then 2 GPUs,
# in the opposite order of arms on even rounds. Each run its own launch; metrics in $OUT/levers.tar.gz,
# rewritten after every run so that a call cut off at its time limit still returns what finished.
#   STEPS=150 ROUNDS="1 2" ARMS="new stock nosync" bash benchmarks/host_levers_ab.sh
# A 150-step run takes about 40 s with its start-up (attention_workers_ab.sh: 8 runs in 316 s), so the two
# rounds of three arms and the warm-ups (14 runs, ~560 s) would fill a 600 s call: run ROUNDS=1, then
# ROUNDS=2 NO_WARMUP=1 in a second call while the machine is still warm. GPUS=1: the 1-GPU runs only (a
# one-GPU machine).
set -uo pipefail
source benchmarks/gpu_common.sh
STEPS=${STEPS:-150}; GPUS=${GPUS:-1 2}; D=/tmp/levers; R=$D/results; mkdir -p $R; TARBALL=$OUT/levers.tar.gz
COMMON="--model ${MODEL:-.carry/minilm} --dataset ${DATASET:-.carry/data/imdb_20k.csv.gz} --report-to none --label-names negative positive --max-steps $STEPS --overwrite"
machine_facts > $R/env.txt
declare -A VARIANT=([new]="" [stock]=stock_collator [nosync]=no_bnb_step_sync)
arm() {  # arm, round
  export VARIANTS=${VARIANT[$1]}
  [[ " $GPUS " == *" 1 "* ]] && CUDA_VISIBLE_DEVICES=0 train_run $1-gpu1-r$2 "" python3
  [[ " $GPUS " == *" 2 "* ]] && train_run $1-gpu2-r$2 "" torchrun --nproc-per-node 2
  return 0
}
export ENTRY=benchmarks/with_variants.py VARIANTS=""
if [ -z "${NO_WARMUP:-}" ]; then  # a freshly started machine ran its first runs up to 20% slower
  CUDA_VISIBLE_DEVICES=0 train_run warmup1 "--max-steps 30" python3 > /dev/null
  [[ " $GPUS " == *" 2 "* ]] && train_run warmup2 "--max-steps 30" torchrun --nproc-per-node 2 > /dev/null
  rm -f $R/warmup*
fi
for round in ${ROUNDS:-1 2}; do
  arms=(${ARMS:-new stock nosync})
  (( round % 2 == 0 )) && arms=($(printf '%s\n' "${arms[@]}" | tac))
  for a in "${arms[@]}"; do arm $a $round; done
done
exit 0
