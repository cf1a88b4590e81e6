"""Which learning rate and accumulation let the offline profile learn in its small budget?

The offline profile (MiniLM, 1,200 training reviews, 2 epochs, 128 tokens) must learn within ~80-150
optimizer steps on a CPU. This sweep runs the candidates on a GPU (same code path, minutes instead of
hours) and prints validation/test accuracy for each; the chosen setting is then confirmed on the CPU.
Usage: python benchmarks/tune_offline_profile.py MODEL_DIR OUT.json
"""

import json
import sys
import time

from qlora_helpers.config import make_config
from qlora_helpers.pipeline import train_pipeline

CANDIDATES = [  # (lr, grad_accum, epochs)
    (1e-3, 2, 2.0), (1e-3, 1, 2.0), (2e-3, 1, 2.0), (3e-3, 1, 2.0), (2e-3, 2, 2.0), (2e-3, 1, 3.0),
]

model_dir, out = sys.argv[1], sys.argv[2]
rows = []
for lr, accum, epochs in CANDIDATES:
    t = time.time()
    cfg = make_config("offline", model=model_dir, lr=lr, grad_accum=accum, epochs=epochs, overwrite=True,
                      output_dir="/tmp/tune", plots_dir="/tmp/tune-plots", report_to="none")
    m = train_pipeline(cfg).metrics
    rows.append({"lr": lr, "grad_accum": accum, "epochs": epochs, "best_val_accuracy": m["best_val_accuracy"],
                 "test_accuracy": m["test_accuracy"], "optimizer_steps": m["optimizer_steps"],
                 "device": m["device"], "seconds": round(time.time() - t, 1)})
    print("TUNE", json.dumps(rows[-1]), flush=True)
json.dump({"command": " ".join(sys.argv), "rows": rows}, open(out, "w"), indent=2)
