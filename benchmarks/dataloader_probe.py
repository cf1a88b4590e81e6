"""Issue 7 lead: how long does the Trainer's prepared dataloader take to hand over one batch of the default
recipe (64 reviews, up to 256 tokens, length-grouped, dynamic padding) on the main thread, with 1 or 2 processes,
and where does that time go? The Trainer is the one `train` builds; on the CPU
(no pinned memory, no padding to a multiple of 8); needs no GPU.

python benchmarks/dataloader_probe.py MODEL_DIR DATA [--profile]
torchrun --nproc-per-node 2 benchmarks/dataloader_probe.py MODEL_DIR DATA
"""
import cProfile
import os
import pstats
import statistics
import sys
import time

from qlora_helpers import distributed
from qlora_helpers.config import make_config
from qlora_helpers.data import tokenize_splits
from qlora_helpers.pipeline import build_model, load_data, start
from qlora_helpers.quantization import load_tokenizer
from qlora_helpers.training import build_trainer

model_dir, dataset = sys.argv[1:3]
cfg = make_config("full", model=model_dir, dataset=dataset, max_samples=8000, epochs=1, output_dir="/tmp/dataloader_probe",
                  report_to="none", label_names=["negative", "positive"])
hw = start(cfg)
data = load_data(cfg)
tokenizer = load_tokenizer(cfg.model)
tokenized = tokenize_splits(data, tokenizer, cfg.max_length, cfg.truncation)
model, _ = build_model(cfg, data, hw)
trainer, _ = build_trainer(model, tokenized, tokenizer, cfg, hw, evaluation=False)
batches = iter(trainer.get_train_dataloader())
next(batches)
profiler = cProfile.Profile() if "--profile" in sys.argv else None
if profiler:
    profiler.enable()
times = []
for _ in range(40):
    t0 = time.perf_counter()
    batch = next(batches)
    times.append((time.perf_counter() - t0) * 1000)
if profiler:
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(6)
print(f"[rank {distributed.rank()}/{distributed.world_size()}] OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}: "
      f"one batch in {statistics.median(times):.1f} ms (median of 40; p90 {statistics.quantiles(times, n=10)[8]:.1f}), "
      f"last shape {tuple(batch['input_ids'].shape)}", file=sys.stderr)
