"""Compiled encoder layers (issue 17) on the CPU: same numbers as eager, no graph breaks in the 4-bit layers,
evaluation left eager, and training batches of one shape. CUDA graphs themselves need a GPU (benchmarks/)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from qlora_helpers.data.collate import padded_length
from qlora_helpers.errors import UserError
from qlora_helpers.hardware import Hardware
from qlora_helpers.modeling import compiled
from qlora_helpers.modeling.lora import add_lora_adapters
from qlora_helpers.modeling.quantization import load_4bit_model

CPU = Hardware("cpu", "cpu", torch.float32, "test")
GPU = Hardware("cuda", "GPU", torch.bfloat16, "test")


def tiny_qlora(path, dtype=torch.float32):
    torch.manual_seed(0)
    model = load_4bit_model(str(path), 2, {0: "negative", 1: "positive"}, dtype, "cpu")
    model = add_lora_adapters(model, 8, 16, 0.0, ["query", "key", "value", "dense"], False)
    for module in model.modules():  # dropout draws differ between eager and compiled code
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def batch(width: int, rows: int = 8):
    ids = torch.randint(5, 100, (rows, width), generator=torch.Generator().manual_seed(width))
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.arange(rows) % 2)


@pytest.mark.slow
def test_compiled_layers_train_like_eager_and_evaluation_stays_eager(tiny_bert):
    eager, fast = tiny_qlora(tiny_bert), tiny_qlora(tiny_bert)
    assert compiled.compile_for_training(fast) == 2  # the tiny BERT's two encoder layers
    graphs = counters["stats"]["unique_graphs"]
    for model in (eager, fast):
        model.train()
        model(**batch(32)).loss.backward()
    assert counters["stats"]["unique_graphs"] > graphs  # the training step did run compiled code
    trained = [(n, p.grad) for n, p in eager.named_parameters() if p.requires_grad]
    compiled_grads = dict((n, p.grad) for n, p in fast.named_parameters() if p.requires_grad)
    assert len(trained) == len(compiled_grads) > 0
    for name, grad in trained:
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6)

    graphs = counters["stats"]["unique_graphs"]
    for model in (eager, fast):
        model.eval()
    with torch.no_grad():  # another shape, in evaluation: eager, so nothing new is compiled
        torch.testing.assert_close(fast(**batch(24, rows=5)).logits, eager(**batch(24, rows=5)).logits)
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
def test_4bit_layers_compile_without_graph_breaks_once_biases_are_cast(tiny_bert):
    model = tiny_qlora(tiny_bert, torch.bfloat16)
    import bitsandbytes as bnb

    biased = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit) and m.bias is not None]
    assert biased and all(m.bias.dtype == torch.float32 for m in biased)
    assert compiled.prepare_4bit_biases(model) == len(biased)
    assert all(m.bias.dtype == torch.bfloat16 for m in biased)
    compiled.compile_for_training(model)
    breaks = sum(counters["graph_break"].values())
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch(16)).loss
    loss.backward()
    assert sum(counters["graph_break"].values()) == breaks
    assert torch.isfinite(loss)


def test_when_and_how_the_step_is_compiled(tiny_config):
    cfg = tiny_config()
    assert (cfg.compile, compiled.active(cfg, CPU), compiled.active(cfg, GPU)) == ("auto", False, True)
    assert compiled.active(cfg.replace(compile="on"), CPU) and not compiled.active(cfg.replace(compile="off"), GPU)

    def multiple(c, hw):
        return compiled.pad_multiple(compiled.active(c, hw), c.max_length, hw.device)

    assert multiple(cfg, GPU) == cfg.max_length  # one shape
    assert multiple(cfg.replace(compile="off"), GPU) == 8
    assert multiple(cfg, CPU) is None
    one_step = cfg.replace(grad_accum=1)
    assert compiled.mode(one_step, GPU) == "reduce-overhead"  # CUDA graphs, on one GPU or each GPU under DDP
    # crashed or not measured with CUDA graphs: accumulation, checkpointing, an OOM retry
    assert compiled.mode(cfg.replace(grad_accum=2), GPU) is None
    assert compiled.mode(one_step.replace(gradient_checkpointing=True), GPU) is None
    assert compiled.mode(one_step.replace(oom_retry=True), GPU) is None
    assert compiled.mode(one_step, CPU) is None
    with pytest.raises(UserError, match="compile must be one of"):
        cfg.replace(compile="yes")
    assert cfg.lr_for(4) == cfg.lr  # the default keeps --lr on any number of processes
    sqrt = cfg.replace(lr_scaling="sqrt")
    assert (sqrt.lr_for(1), sqrt.lr_for(4)) == (cfg.lr, 2 * cfg.lr)  # sqrt(N) for N processes


def test_an_unpadded_batch_reaches_the_compiled_layer_with_an_all_true_mask():
    hidden = torch.zeros(3, 5, 8)
    filled, kwargs = compiled.with_mask((hidden, None, "rest"))  # the mask second, positionally (BERT)
    assert filled[1].dtype == torch.bool and filled[1].shape == (3, 1, 5, 5) and bool(filled[1].all())
    assert filled[0] is hidden and filled[2] == "rest" and kwargs == {}
    args, by_name = compiled.with_mask((hidden,), {"attention_mask": None, "other": 1})  # by keyword (ModernBERT)
    assert args == (hidden,) and by_name["other"] == 1 and by_name["attention_mask"].shape == (3, 1, 5, 5)
    mask = torch.zeros(3, 1, 5, 5, dtype=torch.bool)
    assert compiled.with_mask((hidden, mask))[0][1] is mask  # a padded batch's own mask is kept
    with pytest.raises(UserError, match="--compile off"):
        compiled.encoder_layers(torch.nn.Linear(2, 2))


def test_padding_to_max_length_and_full_training_batches(tiny_config):
    from qlora_helpers.pipeline import model_for, prepare
    from qlora_helpers.train.training import TrainingJob, build_trainer

    assert [padded_length(n, 32, 32) for n in (5, 31, 32)] == [32, 32, 32]
    assert padded_length(70, 64, 100) == 100  # rounded up, but never past the truncation length
    assert padded_length(13, 8, 100) == 16
    cfg = tiny_config(compile="on", batch_size=7, grad_accum=1)  # 192 training rows: 27 full batches, 3 left
    ready = prepare(cfg)
    built = model_for(cfg, ready)
    assert built.compiled and not built.graphs  # --compile on: compiled on the CPU too, never as CUDA graphs
    tokenized = ready.tokenized
    job = TrainingJob.of(ready, built.model, built.compiled)
    trainer, schedule = build_trainer(job, cfg, ready.hw)
    train = list(trainer.get_train_dataloader())
    assert len(train) == len(tokenized["train"]) // 7 == schedule.steps_per_epoch  # the schedule counts them too
    assert {tuple(b["input_ids"].shape) for b in train} == {(7, cfg.max_length)}
    evaluation = list(trainer.get_eval_dataloader())
    assert sum(len(b["labels"]) for b in evaluation) == len(tokenized["validation"])  # evaluation drops nothing


def test_a_failed_compile_trains_on_eager_from_the_same_start(tiny_config, monkeypatch, capsys):
    """When compiling fails on the platform, training restarts with eager layers and the initial adapter and
    head; any other error is raised as it is."""
    import torch._dynamo

    from qlora_helpers.pipeline import model_for, prepare
    from qlora_helpers.train import training

    cfg = tiny_config(compile="on")
    ready = prepare(cfg)
    built = model_for(cfg, ready)
    layers = compiled.encoder_layers(built.model)
    assert all("forward" in layer.__dict__ for layer in layers)  # wrapped for compiled training steps
    trainable = [p for p in built.model.parameters() if p.requires_grad]
    initial = [p.detach().clone() for p in trainable]
    jobs = []

    def fails_once_compiled(job, *args):
        jobs.append(job)
        with torch.no_grad():
            trainable[0].add_(1.0)  # the failed attempt had already changed a weight
        if job.compiled:
            raise torch._dynamo.exc.BackendCompilerFailed(lambda: None, RuntimeError("no C compiler"), None)
        return "trained"

    monkeypatch.setattr(training, "_train_once", fails_once_compiled)
    job = training.TrainingJob.of(ready, built.model, built.compiled)
    assert training.train(job, cfg, ready.hw) == "trained"
    assert [j.compiled for j in jobs] == [True, False]
    assert not any("forward" in layer.__dict__ for layer in layers)  # the eager forward is back
    printed = capsys.readouterr().out
    assert "compiling the encoder layers failed on this platform (BackendCompilerFailed" in printed
    assert "training on with eager layers from the start" in printed and "--compile off skips the attempt" in printed
    torch.testing.assert_close(trainable[0], initial[0] + 1.0)  # the eager run's own change, from the start
    assert all(torch.equal(p, q) for p, q in zip(trainable[1:], initial[1:]))

    def breaks(job, *args):
        raise RuntimeError("a bug in the data")

    monkeypatch.setattr(training, "_train_once", breaks)
    with pytest.raises(RuntimeError, match="a bug in the data"):
        training.train(job, cfg, ready.hw)
