"""Why a reloaded adapter's test logits differed from the trained model's on a GPU: a short MiniLM run on the GPU
path (compiled layers, CUDA graphs, bf16 autocast), then the trained model's frozen 4-bit layers and test logits
before and after `restore_loaded_4bit_state`, against a reload of the saved run.

    python -m benchmarks.studies.reload_paths --output results/reload_paths_minilm.json   (QLORA_MINILM, QLORA_IMDB)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter

import numpy as np


def layer_states(model) -> list[dict]:
    import bitsandbytes as bnb

    return [
        {
            "bias": str(m.bias.dtype) if m.bias is not None else None,
            "compute": str(m.compute_dtype),
            "set": bool(m.compute_type_is_set),
        }
        for m in model.modules()
        if isinstance(m, bnb.nn.Linear4bit)
    ]


def summary(states: list[dict]) -> dict:
    return {
        f"bias {k[0]}, compute {k[1]}, fixed {k[2]}": n
        for k, n in Counter((s["bias"], s["compute"], s["set"]) for s in states).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--compute-dtype", default="auto")
    args = parser.parse_args()
    import qlora_helpers.training as training
    from benchmarks.timed import commit, machine
    from qlora_helpers import pipeline
    from qlora_helpers.evaluation import logits_of
    from qlora_helpers.inference import load_adapter
    from qlora_helpers.presets import make_config
    from qlora_helpers.run_files import library_versions, write_json

    started_at = commit()
    out = tempfile.mkdtemp()
    cfg = make_config(
        "full",
        model=os.environ["QLORA_MINILM"],
        dataset=os.environ["QLORA_IMDB"],
        label_names=["negative", "positive"],
        max_samples=args.rows,
        epochs=1.0,
        output_dir=f"{out}/run",
        plots_dir=f"{out}/plots",
        compute_dtype=args.compute_dtype,
    )
    ready = pipeline.prepare(cfg)
    built = pipeline.model_for(cfg, ready)
    test = ready.data.splits["test"]
    seen: dict = {"loaded": summary(layer_states(built.model))}
    restore = training.restore_loaded_4bit_state

    def spy(model):  # the trained model as training left it, then restored
        seen["trained"] = summary(layer_states(model))
        seen["logits_before"] = logits_of(
            model, ready.tokenizer, test, pipeline.classifier_config(cfg, ready.data), 64
        )
        seen["restored_layers"] = restore(model)
        seen["after_restore"] = summary(layer_states(model))
        return seen["restored_layers"]

    training.restore_loaded_4bit_state = spy
    job = training.TrainingJob(
        built.model, ready.tokenized, ready.tokenizer, ready.data.task, ready.data.labels, built.compiled
    )
    training.train(job, cfg, ready.hw)
    saved = pipeline.classifier_config(cfg, ready.data)
    after = logits_of(built.model, ready.tokenizer, test, saved, 64)
    built.model.save_pretrained(cfg.output_dir)  # what save_run writes for a reload: adapter, tokenizer, settings
    ready.tokenizer.save_pretrained(cfg.output_dir)
    saved.save(cfg.output_dir)
    reloaded = load_adapter(cfg.output_dir)
    again = reloaded.logits(test["text"].tolist(), progress=False)
    seen["reloaded_after_first_call"] = summary(layer_states(reloaded.model))
    before = seen.pop("logits_before")

    def versus(a, b):
        return {
            "max_abs_logit_diff": float(np.abs(a - b).max()),
            "decision_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        }

    record = {
        "what": __doc__.splitlines()[0],
        "rows": len(test),
        "compute_dtype": ready.hw.dtype_name,
        "compiled": built.compiled,
        "cuda_graphs": built.graphs,
        **seen,
        "reloaded_vs_trained_before_restore": versus(again, before),
        "reloaded_vs_trained_after_restore": versus(again, after),
        "commit": started_at,
        "machine": machine(),
        "versions": library_versions(),
        "command": "python -m benchmarks.studies.reload_paths "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    write_json(args.output, record)
    print({k: record[k] for k in ("reloaded_vs_trained_before_restore", "reloaded_vs_trained_after_restore")})


if __name__ == "__main__":
    main()
