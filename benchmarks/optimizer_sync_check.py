"""On a GPU: bitsandbytes 0.50's `Optimizer8bit.step()` calls `torch.cuda.synchronize()` after every parameter
tensor (bitsandbytes-foundation/bitsandbytes#2050). Does a step without those synchronisations (kept only
after paged state, of which this recipe has none) change the training, and what does it save?

Both steps train the same QLoRA model (4-bit base, LoRA on every linear layer, dropout off so both runs see
the same arithmetic) from the same start on the same batches; the trained tensors must be bitwise equal.
Then each step is timed (synchronised, after warm-up). Result and decision (not adopted):
benchmarks/results/optimizer_sync_h200.json.

python benchmarks/optimizer_sync_check.py MODEL_DIR [steps]     prints one JSON line
python benchmarks/optimizer_sync_check.py MODEL_DIR 0 --timing-only   the step variants, timed interleaved
"""
import json
import sys
import time
import types

import bitsandbytes as bnb
import torch

from qlora_helpers.lora import add_lora_adapters
from qlora_helpers.quantization import load_4bit_model


def step_without_per_parameter_sync(self, closure=None):
    """bitsandbytes' `Optimizer8bit.step`, with `sync_gpu` only after updates of paged state."""
    import torch
    from bitsandbytes.utils import sync_gpu

    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure()
    with torch.no_grad():
        if not self.initialized:
            self.check_overrides()
            self.to_gpu()
            self.initialized = True
        for gindex, group in enumerate(self.param_groups):
            for pindex, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    self.init_state(group, p, gindex, pindex)
                self.prefetch_state(p)
                self.update_step(group, p, gindex, pindex)
                if getattr(state.get("state1"), "is_paged", False):
                    sync_gpu(p)
    return loss


def without_per_parameter_sync(optimizer):
    optimizer.step = types.MethodType(step_without_per_parameter_sync, optimizer)
    return optimizer


def model_and_params(model_dir):
    torch.manual_seed(0)
    model = load_4bit_model(model_dir, 2, {0: "negative", 1: "positive"}, torch.bfloat16, "cuda")
    model = add_lora_adapters(model, 16, 32, 0.0, ["query", "key", "value", "dense"], False).train()
    return model, [p for p in model.parameters() if p.requires_grad]


def train(model_dir, patched, steps, batches):
    model, params = model_and_params(model_dir)
    opt = bnb.optim.PagedAdamW8bit(params, lr=5e-4, weight_decay=0.01)
    if patched:
        without_per_parameter_sync(opt)

    def step(ids, labels):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for ids, labels in batches[:steps]:
        step(ids, labels)
    trained = [p.detach().clone() for p in params]
    paged = sum(getattr(s.get("state1"), "is_paged", False) for s in opt.state.values())
    # timing: optimizer step alone, then whole steps (host-bound or not, the wall time a user sees)
    ids, labels = batches[0]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        opt.step()
    torch.cuda.synchronize()
    opt_ms = (time.perf_counter() - t) / 20 * 1000
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for ids, labels in batches[:20]:
        step(ids, labels)
    torch.cuda.synchronize()
    step_ms = (time.perf_counter() - t) / 20 * 1000
    return trained, {"optimizer_step_ms": round(opt_ms, 2), "training_step_ms": round(step_ms, 2),
                     "tensors": len(params), "paged_state_tensors": int(paged)}


def interleaved_timing(model_dir, batches, rounds=3, steps=30):
    """Per-step wall time of the same model and optimizer with each step variant, interleaved round by round
    so that drifting clocks or a warming machine affect all variants alike."""
    from bitsandbytes.optim.optimizer import Optimizer8bit

    model, params = model_and_params(model_dir)
    opt = bnb.optim.PagedAdamW8bit(params, lr=5e-4, weight_decay=0.01)

    def no_sync_then_drain(self, closure=None):
        step_without_per_parameter_sync(self, closure)
        torch.cuda.synchronize()

    variants = {"bitsandbytes_step": None, "without_per_tensor_sync": step_without_per_parameter_sync,
                "without_per_tensor_sync_one_sync_at_end": no_sync_then_drain, "no_optimizer_step": "skip"}

    def run(variant):
        vars(opt).pop("step", None)
        if callable(variant):
            opt.step = types.MethodType(variant, opt)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for ids, labels in batches[:steps]:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            if variant != "skip":
                opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / steps * 1000

    run(None)  # warm-up
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            times[name].append(round(run(variant), 2))
    assert isinstance(opt, Optimizer8bit)
    return times


if __name__ == "__main__":
    model_dir, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30
    g = torch.Generator().manual_seed(1)
    if "--timing-only" in sys.argv:
        batches = [(torch.randint(1000, 20000, (64, 256), generator=g).cuda(),
                    torch.randint(0, 2, (64,), generator=g).cuda()) for _ in range(30)]
        print(json.dumps({"gpu": torch.cuda.get_device_name(), "model": model_dir, "batch": "64 x 256",
                          "ms_per_training_step": interleaved_timing(model_dir, batches)}))
        sys.exit()
    batches = [(torch.randint(1000, 20000, (64, 256), generator=g).cuda(), torch.randint(0, 2, (64,), generator=g).cuda())
               for _ in range(max(steps, 20))]
    torch.use_deterministic_algorithms(True, warn_only=True)  # needs CUBLAS_WORKSPACE_CONFIG=:4096:8
    stock, stock_t = train(model_dir, False, steps, batches)
    again, _ = train(model_dir, False, steps, batches)  # is the training itself reproducible bit for bit?
    ours, ours_t = train(model_dir, True, steps, batches)
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "model": model_dir, "batch": "64 x 256", "steps": steps,
                      "stock_twice_bitwise_equal": all(torch.equal(a, b) for a, b in zip(stock, again)),
                      "bitwise_equal_after_steps": all(torch.equal(a, b) for a, b in zip(stock, ours)),
                      "max_abs_difference": max((a.float() - b.float()).abs().max().item() for a, b in zip(stock, ours)),
                      "bitsandbytes_step": stock_t, "without_per_tensor_sync": ours_t,
                      "versions": {"torch": torch.__version__, "bitsandbytes": bnb.__version__}}))
