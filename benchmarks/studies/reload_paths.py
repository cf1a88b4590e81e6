"""Why a reloaded adapter's test logits differed from the trained model's on a GPU.

A short MiniLM run on the GPU path (compiled layers, CUDA graphs, bf16 autocast); then the trained model's test
logits against a reload of the saved run, in equal batches and in the notebook's old pairing (the run's batches of
256 against the reload's 64), with the frozen 4-bit layers' state on both sides.

    python -m benchmarks.studies.reload_paths --output results/reload_paths_minilm.json   (QLORA_MINILM, QLORA_IMDB)

What it showed (results/reload_paths_minilm.json, written at b35acaf by the first form of this study, which also
restored the 4-bit layers' biases after training): in equal batches the reloaded logits equal the trained ones
exactly, before any restore (the layers' biases and dtypes match: bf16 on both sides after their first call). The
notebook's check compared batches of 256 with batches of 64, and a batch is padded to its longest text.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter

import numpy as np


def layer_states(model) -> dict:
    import bitsandbytes as bnb

    states = Counter(
        (str(m.bias.dtype) if m.bias is not None else None, str(m.compute_dtype), bool(m.compute_type_is_set))
        for m in model.modules()
        if isinstance(m, bnb.nn.Linear4bit)
    )
    return {f"bias {k[0]}, compute {k[1]}, fixed {k[2]}": n for k, n in states.items()}


def versus(a, b) -> dict:
    return {
        "max_abs_logit_diff": float(np.abs(a - b).max()),
        "decision_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--compute-dtype", default="auto")
    args = parser.parse_args()
    import qlora_helpers.train.training as training
    from benchmarks.timed import commit, machine
    from qlora_helpers import pipeline
    from qlora_helpers.infer.evaluation import logits_of
    from qlora_helpers.infer.inference import load_adapter
    from qlora_helpers.presets import make_config
    from qlora_helpers.run_files import library_versions, write_json

    started_at = commit()
    out = tempfile.mkdtemp()
    cfg = make_config(
        "full", model=os.environ["QLORA_MINILM"], dataset=os.environ["QLORA_IMDB"],
        label_names=["negative", "positive"], max_samples=args.rows, epochs=1.0, output_dir=f"{out}/run",
        plots_dir=f"{out}/plots", compute_dtype=args.compute_dtype,
    )  # fmt: skip
    ready = pipeline.prepare(cfg)
    built = pipeline.model_for(cfg, ready)
    test = ready.data.splits["test"]
    job = training.TrainingJob.of(ready, built.model, built.compiled)
    training.train(job, cfg, ready.hw)
    classifier_config = pipeline.classifier_config(cfg, ready.data)
    trained = {b: logits_of(built.model, ready.tokenizer, test, classifier_config, b) for b in (64, 256)}
    built.model.save_pretrained(cfg.output_dir)  # what save_run writes for a reload: adapter, tokenizer, settings
    ready.tokenizer.save_pretrained(cfg.output_dir)
    classifier_config.save(cfg.output_dir)
    reloaded = load_adapter(cfg.output_dir)
    again = reloaded.logits(test["text"].tolist(), 64, progress=False)
    record = {
        "what": __doc__.splitlines()[0],
        "rows": len(test),
        "compute_dtype": ready.hw.dtype_name,
        "compiled": built.compiled,
        "cuda_graphs": built.graphs,
        "trained": layer_states(built.model),
        "reloaded_after_first_call": layer_states(reloaded.model),
        "reloaded_64_vs_trained_64": versus(again, trained[64]),
        "reloaded_64_vs_trained_256": versus(again, trained[256]),
        "commit": started_at,
        "machine": machine(),
        "versions": library_versions(),
        "command": "python -m benchmarks.studies.reload_paths "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    write_json(args.output, record)
    print({k: v for k, v in record.items() if k.startswith("reloaded_")})


if __name__ == "__main__":
    main()
