"""`qlora-bert predict`: classify texts (arguments, a file of lines, or a table's rows) with a trained model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qlora_helpers import distributed
from qlora_helpers.cli.flags import (
    add_long_text_flags,
    add_model_source,
    add_shape_flags,
    check_shape,
    header_of,
    load_model,
    model_dir,
)
from qlora_helpers.errors import UserError, require


def add_parser(sub) -> None:
    predict = sub.add_parser("predict", help="classify texts with a trained adapter or merged model")
    add_model_source(predict, "output directory of a `train` run, or a `merge` output")
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--file", help="a UTF-8 file with one text per line")
    predict.add_argument("--dataset", help="a .csv/.tsv/.json/.jsonl/.parquet file: classify its text column")
    predict.add_argument(
        "--text-pair",
        nargs="+",
        help="sentence-pair models: the second text of each text given as an argument, in the same order",
    )
    add_long_text_flags(predict)
    predict.add_argument(
        "--mode",
        choices=["4bit", "16bit", "merged"],
        default="4bit",
        help="4bit: as trained, least memory; 16bit: dequantized base + adapter; merged: adapter folded in",
    )
    predict.add_argument("--output", help="write predictions to .jsonl or .csv instead of printing JSON lines")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--top-k", type=int, help="list only the K most probable labels' probabilities")
    predict.add_argument(
        "--thresholds",
        choices=["per_label", "global", "0.5"],
        help="multi-label: which tuned thresholds decide (default: the saved choice, per_label)",
    )
    add_shape_flags(predict)


def texts_from_dataset(args: argparse.Namespace, classifier_config) -> tuple[list[str], list[str] | None]:
    """The texts (and second texts) of `predict --dataset`, read from the columns training read."""
    from qlora_helpers.data.tables import TEXT_CANDIDATES, read_local_file
    from qlora_helpers.data.text_input import check_pairs, from_saved

    frame = read_local_file(Path(args.dataset).expanduser(), header=header_of(args, classifier_config))
    chosen = from_saved(
        classifier_config.text_input,
        list(frame.columns),
        args.text_column,
        args.text_pair_column,
        TEXT_CANDIDATES,
        args.text_columns,
    )
    inputs = chosen.extract(frame)
    has_text = inputs["text"].map(lambda t: isinstance(t, str) and t.strip() != "").to_numpy()
    inputs = inputs[has_text]
    if not has_text.all():  # the output has a line per text predicted; say which input rows have none
        empty = np.flatnonzero(~has_text).tolist()
        print(
            f"note: {len(empty)} row(s) of {args.dataset} have an empty text and get no prediction (rows "
            f"{', '.join(str(i + 1) for i in empty[:10])}{' ...' if len(empty) > 10 else ''}, counted from 1 "
            f"after the header)",
            file=sys.stderr,
        )
    if chosen.pair_column:
        check_pairs(inputs, chosen.pair_column, args.dataset)
        return inputs["text"].tolist(), inputs["text_pair"].tolist()
    return inputs["text"].tolist(), None


def gather_texts(args: argparse.Namespace, classifier_config) -> tuple[list[str], list[str] | None]:
    """The texts to predict: arguments (with --text-pair), --file lines and --dataset rows, in that order."""
    from qlora_helpers.data.text_input import texts_from_file

    require(all(t.strip() for t in args.texts), "an empty text was given to classify; every text argument needs words")
    texts = list(args.texts) + (texts_from_file(args.file) if args.file else [])
    pairs = list(args.text_pair) if args.text_pair else None
    if pairs is not None and not classifier_config.text_input.pair_column:
        raise UserError("this model was trained on single texts; leave out the second texts (--text-pair)")
    if pairs is not None and len(pairs) != len(args.texts):
        raise UserError(
            f"{len(args.texts)} text(s) but {len(pairs)} --text-pair value(s); give one second text per text, in order"
        )
    if pairs is not None and args.file:
        raise UserError(
            "--text-pair pairs the texts given as arguments; for a file of pairs use --dataset with two columns"
        )
    if pairs is None and texts and classifier_config.text_input.pair_column:
        raise UserError(
            f"this model reads sentence pairs (second texts from {classifier_config.text_input.pair_column!r} in "
            f"training); give a second text for each: --text-pair, or --dataset with both columns"
        )
    if args.dataset:
        more, more_pairs = texts_from_dataset(args, classifier_config)
        if texts and (more_pairs is None) != (pairs is None):
            raise UserError("give pairs both as arguments (--text-pair) and in --dataset, or single texts in both")
        texts = texts + more
        if more_pairs is not None:
            pairs = (pairs or []) + more_pairs
    if not texts:
        raise UserError("no texts given: pass them as arguments, with --file (one text per line) or --dataset")
    return texts, pairs


def run(args: argparse.Namespace) -> int:
    from qlora_helpers.data.windows import check_window
    from qlora_helpers.modeling.classifier_config import ClassifierConfig

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    classifier_config = ClassifierConfig.load(model_dir(args))
    check_shape(args, classifier_config)
    # --thresholds on a model without thresholds, and --top-k: said before the model loads
    classifier_config.decision_thresholds(args.thresholds)
    if args.top_k is not None:
        empty = np.zeros((0, classifier_config.labels.num_labels))
        classifier_config.task.rows(empty, classifier_config.labels, None, args.top_k)
    texts, pairs = gather_texts(args, classifier_config)
    out = Path(args.output) if args.output else None
    if out is not None:
        inputs = [Path(p).expanduser().resolve() for p in (args.dataset, args.file) if p]
        require(out.expanduser().resolve() not in inputs, f"--output {out} is the input file; name another file")
        require_output_file(out, args.overwrite)
    if args.long_text == "window":
        args.stride = check_window(classifier_config.max_length, args.stride, pairs=pairs is not None)
    loaded = load_model(args, args.mode)
    share = distributed.my_share(len(texts))  # under torchrun: each process predicts its part, the main one writes
    rows = loaded.predict(
        texts[share],
        args.batch_size,
        len(texts) > args.batch_size and distributed.is_main_process(),
        args.top_k,
        args.thresholds,
        pairs[share] if pairs is not None else None,
        args.long_text,
        args.stride,
    )
    rows = distributed.gather(rows)
    distributed.finish()
    if rows is None:  # not the main process
        return 0
    if out is None:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    write_predictions(rows, out)
    print(f"wrote {len(rows)} predictions to {out}")
    return 0


def require_output_file(out: Path, overwrite: bool) -> None:
    from qlora_helpers.run_files import writable

    if not out.name.endswith((".jsonl", ".csv")):
        raise UserError(f"--output must end in .jsonl or .csv, got {out}")
    if out.is_dir():
        raise UserError(f"--output {out} is a folder; name a .jsonl or .csv file")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it or name another --output")
    if not writable(out):
        raise UserError(f"cannot write to {out} (read-only or no permission); choose another --output")


def write_predictions(rows: list[dict[str, Any]], out: Path) -> None:
    """Rows as JSON lines, or as CSV with one p_<label> column per probability; written whole, then renamed."""
    import os

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".csv":
        import pandas as pd

        flat = []
        for r in rows:
            row = {k: v for k, v in r.items() if k not in ("probabilities", "label_probabilities")}
            if isinstance(row.get("labels"), list):
                row["labels"] = ",".join(row["labels"])
            flat.append({**row, **{f"p_{k}": v for k, v in r.get("probabilities", {}).items()}})
        pd.DataFrame(flat).to_csv(tmp, index=False)
    else:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, out)
