"""`qlora-bert evaluate`: scores of a trained model on a labelled file, its mistakes, and the rows it trained on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qlora_helpers.cli.flags import (
    add_long_text_flags,
    add_model_source,
    add_shape_flags,
    check_new_files,
    check_shape,
    header_of,
    load_model,
    model_dir,
)
from qlora_helpers.errors import require


def add_parser(sub) -> None:
    evaluate = sub.add_parser("evaluate", help="metrics of a trained adapter on a labelled file")
    add_model_source(evaluate, "output directory of a `train` run")
    evaluate.add_argument(
        "--dataset",
        required=True,
        help="labelled .csv/.tsv/.json/.jsonl/.parquet file, or a Hub dataset (name:config)",
    )
    evaluate.add_argument("--split", help="with a Hub dataset: the split to score (default: test, else validation)")
    add_long_text_flags(evaluate)
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", help="where to write the metrics JSON (default: ADAPTER/evaluation_<file>.json)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation's files")
    add_shape_flags(evaluate)


def run(args: argparse.Namespace) -> int:
    from qlora_helpers.data.windows import check_window
    from qlora_helpers.infer.evaluation import mistakes_table, one_answer_note, save_table, seen_rows
    from qlora_helpers.run_files import write_json

    require(args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}")
    adapter = Path(model_dir(args))
    classifier_config, frame = _config_and_table(args, adapter)
    dropped = frame.attrs.get("dropped_rows", 0)
    if dropped:
        print(
            f"note: {dropped} row(s) of {args.dataset} with an empty text or label are left out; {len(frame)} scored"
        )
    if args.long_text == "window":
        args.stride = check_window(classifier_config.max_length, args.stride, pairs="text_pair" in frame)
    stem = Path(args.dataset).name.split(".")[0].replace(":", "_")
    output = Path(args.output) if args.output else adapter / f"evaluation_{stem}.json"
    mistakes = output.with_name(f"misclassified_{stem}.csv")
    check_new_files([output, mistakes], args.overwrite)
    loaded = load_model(args)
    thresholds = classifier_config.decision_thresholds()
    metrics, logits = loaded.scores(frame, args.batch_size, thresholds, args.long_text, args.stride)
    summary = {k: metrics[k] for k in classifier_config.task.summary_keys if k in metrics}
    if classifier_config.thresholds:
        others = classifier_config.scores_at_thresholds(frame["label"], logits, ("0.5", "global"))
        metrics["thresholds"] = classifier_config.thresholds.get("mode", "per_label")
        metrics["at_other_thresholds"] = others
        summary |= {"f1_macro_at_0.5": others["0.5"]["f1_macro"], "f1_micro_at_0.5": others["0.5"]["f1_micro"]}
    seen = seen_rows(adapter, frame)
    metrics.update(
        task=classifier_config.task_name,
        dataset=str(args.dataset),
        rows=len(frame),
        dropped_rows=dropped,
        rows_seen_in_training=seen,
        long_text=args.long_text,
        stride=args.stride if args.long_text == "window" else None,
        device=loaded.hardware.name,
        compute_dtype=loaded.hardware.dtype_name,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    wrong = mistakes_table(frame, logits, classifier_config, thresholds)
    save_table(wrong, mistakes)
    metrics["misclassified"] = len(wrong)
    metrics["misclassified_file"] = str(mistakes)
    metrics["warning"] = one_answer_note(classifier_config, logits, thresholds)
    write_json(output, metrics)
    print(classifier_config.task.report(metrics))
    if metrics["warning"]:
        print(metrics["warning"])
    if seen and (seen["train"] or seen["validation"]):
        print(
            f"note: {seen['train']} of these {len(frame)} rows are in the model's training split and "
            f"{seen['validation']} in its validation split; scores on them overstate what it does on new text"
        )
    print(f"{metrics['misclassified']} {classifier_config.task.mistakes}: {mistakes}")
    print(json.dumps({**summary, "rows": len(frame), "written_to": str(output)}))
    return 0


def _config_and_table(args: argparse.Namespace, adapter: Path):
    """The model's saved settings (with --label-delimiter applied) and the labelled table, read as it was trained."""
    from qlora_helpers.data.prepare import read_labelled_file
    from qlora_helpers.modeling.classifier_config import ClassifierConfig

    classifier_config = ClassifierConfig.load(adapter)
    check_shape(args, classifier_config)
    if args.label_delimiter is not None:
        from dataclasses import replace

        classifier_config = replace(
            classifier_config, labels=replace(classifier_config.labels, delimiter=args.label_delimiter)
        )
    frame = read_labelled_file(
        args.dataset,
        classifier_config,
        args.text_column,
        args.label_column,
        header_of(args, classifier_config),
        args.text_pair_column,
        args.text_columns,
        args.split,
    )
    return classifier_config, frame
