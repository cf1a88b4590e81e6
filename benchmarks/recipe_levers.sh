#!/usr/bin/env bash
# Issue 4: speed and memory of each lever on bert-base shapes (random weights, real IMDb text, 256 tokens),
# each run in its own process. Usage: recipe_levers.sh 1|2|3 (the rounds in recipe_notes.md).
# On the lent GPU from the repo root with carry [".carry"]; results in $OUT/levers<round>/.
#   1: through the stock Trainer (run before RecipeTrainer existed; cut off by the 600 s limit after 8 levers)
#   2: after RecipeTrainer cached the FLOP count (with 2 dataloader workers, then the default)
#   3: the spread of one configuration's step times, and the expandable-segments allocator
set -uo pipefail
export PYTHONPATH=$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
round=${1:?round 1, 2 or 3}; dir=$OUT/levers$round; mkdir -p $dir
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $dir/env.txt
python3 -c "import torch, transformers, peft, bitsandbytes as b; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__)" | tee -a $dir/env.txt
SPEED="--model .carry/bert-base-shape --random-weights --dataset .carry/data/imdb_20k.csv.gz --max-samples 4000 --max-steps 40 --warmup-steps 5"
lever() {  # name, then bench-recipes arguments
  local name=$1; shift
  python3 -m qlora_helpers bench-recipes $SPEED --label "lever: $name" --output $dir/$name.json "$@" 2>>$dir/stderr.txt | grep -v "^wrote"
}
case $round in
1)
  lever baseline --runs reference:qlora full:qlora full:full_16bit
  lever ckpt_on --runs full:qlora --set full:gradient_checkpointing=true
  lever qv_only --runs full:qlora --set 'full:target_modules=["query","value"]'
  lever batch32 --runs full:qlora --set full:batch_size=32
  lever batch128 --runs full:qlora --set full:batch_size=128
  lever random_order --runs full:qlora --set full:group_by_length=false
  lever fused_adamw --runs full:qlora --set full:optim=adamw_torch_fused
  lever fp16 --runs full:qlora --set full:compute_dtype=float16
  lever ref_memory --runs full:qlora --set full:batch_size=16 full:grad_accum=4 full:gradient_checkpointing=true
  lever ref_bf16 --runs reference:qlora --set reference:compute_dtype=bfloat16 ;;
2)
  lever baseline --runs reference:qlora full:qlora
  lever fused_adamw --runs full:qlora --set full:optim=adamw_torch_fused
  lever qv_fused --runs full:qlora --set full:optim=adamw_torch_fused 'full:target_modules=["query","value"]'
  lever batch128 --runs full:qlora --set full:batch_size=128
  lever no_workers --runs full:qlora --set full:dataloader_workers=0
  python3 benchmarks/step_anatomy.py .carry/bert-base-shape 64 256 1 2>/dev/null | grep targets ;;
3)
  lever default --runs full:qlora
  lever default_again --runs full:qlora
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True lever expandable --runs full:qlora ;;
esac
