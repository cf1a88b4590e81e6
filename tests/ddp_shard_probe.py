"""Run under `torchrun --nproc-per-node 2` by test_distributed.py: which training rows does this rank's
prepared dataloader (the Trainer as `train` builds it, with length-grouped batches) give it in each of two epochs?

python tests/ddp_shard_probe.py MODEL_DIR CSV OUT_DIR   writes OUT_DIR/rank<N>.json: {"rows": [[epoch, token ids],
...], "wrapper": how the Trainer's accelerator wraps the model}
"""

import json
import sys
from pathlib import Path

from conftest import tiny_run_config  # tests/ is this script's folder, so the tiny run's one definition is found

from qlora_helpers import distributed
from qlora_helpers.pipeline import model_for, prepare
from qlora_helpers.train.training import TrainingJob, build_trainer

model_dir, csv, out = sys.argv[1:4]
cfg = tiny_run_config(model_dir, csv, Path(out) / "run", grad_accum=1, epochs=2.0)
ready = prepare(cfg)
model = model_for(cfg, ready).model
job = TrainingJob.of(ready, model)
trainer, _ = build_trainer(job, cfg, ready.hw, evaluation=False)
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
