#!/usr/bin/env bash
# Lent-GPU: agreement, latency and memory of the 4bit / 16bit / merged inference forms (issue 5).
# 1) the real MiniLM, adapter trained with the offline profile's settings on the GPU (real accuracy, real agreement);
# 2) bert-base shapes with random weights, adapter trained 30 steps (latency and memory at bert-base size only).
set -uo pipefail
export PYTHONPATH=$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m qlora_helpers train --profile offline --model .carry/minilm --output-dir /tmp/minilm-adapter --plots-dir /tmp/p \
  --report-to none --overwrite 2>/tmp/train1.err | tail -1
python3 -c "import pandas as pd; t=pd.read_csv('/tmp/minilm-adapter/test_predictions.csv')['text'].map(lambda x: ' '.join(x.splitlines())); open('/tmp/texts.txt','w').write('\n'.join(t))"
python3 -m qlora_helpers infer-bench --adapter /tmp/minilm-adapter --texts /tmp/texts.txt \
  --output $OUT/inference_modes_minilm.json 2>$OUT/infer1.err | tail -4
python3 -m qlora_helpers merge --adapter /tmp/minilm-adapter --output /tmp/minilm-merged 2>>$OUT/infer1.err
python3 -m qlora_helpers evaluate --adapter /tmp/minilm-merged --dataset qlora_helpers/sample_data/imdb_sample_1500.csv.gz \
  --output $OUT/merged_eval_sample.json 2>>$OUT/infer1.err | tail -1
python3 -c "
from qlora_helpers.bench import make_random_model_dir; make_random_model_dir('.carry/bert-base-shape', '/tmp/bert-base-random')"
python3 -m qlora_helpers train --model /tmp/bert-base-random --dataset .carry/data/imdb_20k.csv.gz --max-samples 2000 \
  --max-steps 30 --early-stopping-patience 0 --no-save-checkpoints --label-names negative positive \
  --output-dir /tmp/bb-adapter --plots-dir /tmp/p --report-to none --overwrite 2>/tmp/train2.err | tail -1
python3 -m qlora_helpers infer-bench --adapter /tmp/bb-adapter --texts /tmp/texts.txt \
  --output $OUT/inference_modes_bert_base_shapes.json 2>$OUT/infer2.err | tail -4
