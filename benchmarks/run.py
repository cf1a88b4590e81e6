"""The one benchmark runner: experiments are data (`benchmarks/experiments/*.json`), results are committed JSON.

    python -m benchmarks.run --list                  what can be run, one line each
    python -m benchmarks.run NAME [NAME ...]         run experiments; each writes benchmarks/results/<its output>
    python -m benchmarks.run NAME --output PATH      write somewhere else (e.g. $OUT on a lent GPU)
    python -m benchmarks.run NAME --set KEY=JSON     change one setting of every run, e.g. --set max_steps=20
    python -m benchmarks.run figures                 redraw benchmarks/figures/*.png from the result files

Model and data locations are never written into an experiment; it names variables, read from the
environment (defaults in `LOCATIONS`), so the same file runs on a laptop with the Hub and on a machine
without it. Every configuration is measured in its own process, and every result file records the
command, the device, the library versions and the date.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.experiment import (
    EXPERIMENTS,
    HERE,
    LOCATIONS,
    ONLY,
    PROVENANCE,
    SEEDS,
    base_settings,
    check_settings,
    cli,
    expand,
    load_experiment,
    provenance,
    train_flags,
    write,
)
from benchmarks.kinds.training import run_scaling, run_train

# ---- kinds of experiment ------------------------------------------------------------------------


def run_arms(spec, settings, output):
    from benchmarks.harness import run_arms as arms

    ckpt = tuple(
        settings.pop("checkpointing", None)
        or spec.get("checkpointing", [settings.get("gradient_checkpointing", True)])
    )
    settings.pop("gradient_checkpointing", None)
    return arms(
        spec.get("arms", ["qlora"]),
        settings,
        output,
        spec.get("warmup_steps", 5),
        spec.get("evaluate_test", False),
        ckpt,
        spec.get("about", ""),
        tuple(SEEDS or spec.get("seeds", [])) or None,
        tuple(spec.get("probes", ["memory"] if spec.get("memory_breakdown") else [])),
        [v for v in spec["variants"] if not ONLY or v["name"] in ONLY] if spec.get("variants") else None,
    )


def run_ranks(spec, settings, output):
    from benchmarks.kinds.ranks import rank_sweep

    return rank_sweep(spec["ranks"], settings, output, spec.get("warmup_steps", 5))


def run_recipes(spec, settings, output):
    from benchmarks.kinds.recipes import compare_recipes

    runs = [tuple(r.split(":")) for r in spec.get("runs", ["reference:qlora", "full:qlora", "full:full_16bit"])]
    return compare_recipes(
        settings,
        spec.get("seeds", [42]),
        output,
        runs,
        spec.get("warmup_steps", 5),
        evaluate_test=settings.get("max_steps") is None,
        label=spec.get("about", ""),
        changes=expand(spec.get("set", {})),
    )


def run_inference(spec, settings, output):
    """Train an adapter as the spec says (own process), then time and compare its three serving forms."""
    from benchmarks.kinds.inference_modes import run_modes

    flags = train_flags({k: v for k, v in settings.items() if k not in ("overwrite",)})
    cli(["train", "--profile", spec.get("profile", "full"), *flags, "--overwrite"])
    frame = __import__("pandas").read_csv(Path(settings["output_dir"]) / "test_predictions.csv")
    texts = Path(settings["output_dir"]) / "texts.txt"
    texts.write_text("\n".join(" ".join(str(t).splitlines()) for t in frame["text"]), encoding="utf-8")
    return run_modes(settings["output_dir"], texts, output, repeats=spec.get("repeats", 20))


def run_quant_error(spec, settings, output):
    """NF4, FP4 and absmax int4 reconstruction error on the real pretrained weight matrices (CPU is enough)."""
    import statistics

    from qlora_helpers.modeling.quant_error import pretrained_matrices, quantization_errors

    rows = quantization_errors(pretrained_matrices(settings["model"]))
    methods = sorted({r["method"] for r in rows})
    mean = {
        m: {
            k: round(statistics.fmean(r[k] for r in rows if r["method"] == m), 4)
            for k in ("relative_error", "bits_per_weight")
        }
        for m in methods
    }
    return {"records": rows, "mean_by_method": mean}


def run_tune(spec, settings, output):
    """A time-limited tuning study, then its best setting against the default (benchmarks/kinds/tuning.py)."""
    from benchmarks.kinds.tuning import run_tune as study_then_retrain

    return study_then_retrain(spec, settings, output)


def run_onnx(spec, settings, output):
    """Export an adapter to ONNX (+ int8) with its verification, then time it against PyTorch fp32 on the CPU."""
    from benchmarks.kinds.onnx_serving import run_onnx as measure

    return measure(spec, output, expand)


def run_calibration(spec, settings, output):
    """The temperature `train` would fit to trained adapters, and ECE / Brier before and after (CPU)."""
    from benchmarks.kinds.calibration_check import run_calibration as measure

    return measure(spec, output, expand)


KINDS = {
    "onnx": run_onnx,
    "calibration": run_calibration,
    "arms": run_arms,
    "ranks": run_ranks,
    "recipes": run_recipes,
    "inference": run_inference,
    "train": run_train,
    "scaling": run_scaling,
    "quant_error": run_quant_error,
    "tune": run_tune,
}


# ---- helpers --------------------------------------------------------------------------------------


def run_experiment(name: str, output: str | None, overrides: dict[str, Any]) -> Path:
    spec = load_experiment(name)
    kind = spec.get("kind")
    if kind not in KINDS:
        raise SystemExit(f"error: experiment {name!r} has kind {kind!r}; kinds: {sorted(KINDS)}")
    target = Path(output) if output else HERE / "results" / spec.get("output", f"{spec['name']}.json")
    if target.suffix != ".json":
        target = target / spec.get("output", f"{spec['name']}.json")
    settings = base_settings(spec, overrides)
    check_settings(name, settings)
    head = provenance(spec)
    PROVENANCE.clear()
    PROVENANCE.update(head)
    result = KINDS[kind](spec, settings, target)
    write(target, {**result, **head, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    print(f"wrote {target}")
    return target


def child(argv: list[str]) -> int:
    """One measurement in this process, started by the runner in a fresh one; its record on the last line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run _arm|_infer_mode|_serve_form")
    parser.add_argument("what", choices=["_arm", "_infer_mode", "_serve_form"])
    parser.add_argument("--arm")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--settings")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--evaluate-test", action="store_true")
    parser.add_argument("--probe", action="append", default=[], choices=["memory", "time"])
    parser.add_argument("--adapter")
    parser.add_argument("--mode")
    parser.add_argument("--texts")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--form")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.what == "_serve_form":
        from benchmarks.kinds.onnx_serving import child as serve_form

        print("SERVE_RECORD " + json.dumps(serve_form(args)))
        return 0
    if args.what == "_arm":
        from benchmarks.harness import run_arm
        from qlora_helpers.presets import make_config

        cfg = make_config(args.profile, **json.loads(args.settings))
        print(
            "BENCH_RECORD "
            + json.dumps(run_arm(args.arm, cfg, args.warmup_steps, args.evaluate_test, tuple(args.probe)))
        )
    else:
        from benchmarks.kinds.inference_modes import time_mode

        texts = Path(args.texts).read_text(encoding="utf-8").splitlines()
        print("INFER_RECORD " + json.dumps(time_mode(args.adapter, args.mode, texts, repeats=args.repeats)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_arm", "_infer_mode", "_serve_form"):
        return child(argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiments", nargs="*", help="experiment names (benchmarks/experiments/) or 'figures'")
    parser.add_argument("--list", action="store_true", help="list the experiments and the location variables")
    parser.add_argument("--output", help="result file, or a folder to write each experiment's result into")
    parser.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=JSON", help="change a setting of every run"
    )
    parser.add_argument("--only", nargs="+", default=[], metavar="VARIANT", help="run only these variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=[], help="run only these seeds (train kind)")
    args = parser.parse_args(argv)
    if args.list or not args.experiments:
        for path in sorted(EXPERIMENTS.glob("*.json")):
            spec = json.loads(path.read_text())
            print(
                f"{path.stem:<34} {spec['kind']:<11} -> results/{spec.get('output', path.stem + '.json')}: "
                f"{spec.get('about', '')}"
            )
        print("\nlocations (environment variable, default):")
        for name, (env, default, what) in LOCATIONS.items():
            print(f"  ${{{name}}} = ${env} or {default or 'see below'}: {what}")
        return 0
    ONLY.update(args.only)
    SEEDS.extend(args.seeds)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    for name in args.experiments:
        if name == "figures":
            from benchmarks.draw import draw_all

            for path in draw_all():
                print(f"wrote {path}")
            continue
        run_experiment(name, args.output, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
