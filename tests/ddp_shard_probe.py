"""Run under `torchrun --nproc-per-node 2` by test_distributed.py: which training rows does this rank's
prepared dataloader (the Trainer as `train` builds it, with length-grouped batches) give it in each of two epochs?

python tests/ddp_shard_probe.py MODEL_DIR CSV OUT_DIR   writes OUT_DIR/rank<N>.json: {"rows": [[epoch, token ids],
...], "wrapper": how the Trainer's accelerator wraps the model}
"""

import json
import sys

from qlora_helpers import distributed
from qlora_helpers.config import make_config
from qlora_helpers.data import tokenize_splits
from qlora_helpers.pipeline import build_model, load_data, start
from qlora_helpers.quantization import load_tokenizer
from qlora_helpers.training import build_trainer

model_dir, csv, out = sys.argv[1:4]
cfg = make_config(
    "full",
    model=model_dir,
    dataset=csv,
    max_length=32,
    batch_size=8,
    grad_accum=1,
    epochs=2,
    output_dir=f"{out}/run",
    report_to="none",
    label_names=["negative", "positive"],
)
hw = start(cfg)
data = load_data(cfg)
tokenizer = load_tokenizer(cfg.model)
tokenized = tokenize_splits(data, tokenizer, cfg.max_length, cfg.truncation)
model, _ = build_model(cfg, data, hw)
trainer, _ = build_trainer(model, tokenized, tokenizer, cfg, hw, evaluation=False)
loader = trainer.get_train_dataloader()
rows = []
for epoch in range(2):
    loader.set_epoch(epoch)
    for batch in loader:
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist()):
            rows.append([epoch, [i for i, keep in zip(ids, mask) if keep]])
wrapped = trainer.accelerator.prepare_model(model)
wrapper = {
    "class": type(wrapped).__name__,
    "broadcast_buffers": getattr(wrapped, "broadcast_buffers", None),
    "find_unused_parameters": getattr(wrapped, "find_unused_parameters", None),
}
with open(f"{out}/rank{distributed.rank()}.json", "w") as f:
    json.dump({"rows": rows, "wrapper": wrapper}, f)
