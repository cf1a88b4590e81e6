"""Anatomy of one QLoRA training step outside the Trainer (issue 4 lever hunting): forward, backward and
optimizer timed separately, synchronised, for a few variants of the recipe on bert-base shapes.

python benchmarks/step_anatomy.py MODEL_DIR [batch] [seq]   (GPU; one process per variant is not needed
here because only times are compared, not peak memory)
"""
import sys
import tempfile
import time

import torch

from qlora_helpers.bench import make_random_model_dir
from qlora_helpers.lora import add_lora_adapters
from qlora_helpers.quantization import load_4bit_model


def timed(fn, repeats=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats * 1000


def variant(model_dir, batch, seq, targets, dropout, optim, ckpt):
    model = load_4bit_model(model_dir, 2, {0: "neg", 1: "pos"}, torch.bfloat16, "cuda")
    model = add_lora_adapters(model, 16, 32, dropout, targets, ckpt)
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if optim == "paged8":
        import bitsandbytes as bnb
        opt = bnb.optim.PagedAdamW8bit(params, lr=1e-4)
    elif optim == "adamw8":
        import bitsandbytes as bnb
        opt = bnb.optim.AdamW8bit(params, lr=1e-4)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    ids = torch.randint(1000, 20000, (batch, seq), device="cuda")
    labels = torch.randint(0, 2, (batch,), device="cuda")
    mask = torch.ones_like(ids)

    def fwd():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def fwd_bwd():
        fwd().backward()

    def step():
        fwd_bwd()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    fwd_bwd()
    count_ms = timed(lambda: model.num_parameters(exclude_embeddings=True), repeats=3)
    opt_ms = timed(lambda: opt.step())
    with torch.no_grad():
        f = timed(fwd)
    fb = timed(fwd_bwd)
    torch.cuda.reset_peak_memory_stats()
    s = timed(step)
    peak = torch.cuda.max_memory_allocated() / 2**20
    print(f"targets={'+'.join(targets):<22} dropout={dropout} optim={optim:<6} ckpt={ckpt!s:<5} | fwd(no_grad) {f:6.1f} ms "
          f"fwd+bwd {fb:6.1f} ms  opt.step {opt_ms:6.1f} ms  full step {s:6.1f} ms = {batch / s * 1000:6.0f} samples/s, "
          f"peak {peak:,.0f} MiB; num_parameters() {count_ms:.1f} ms", flush=True)
    del model, opt
    torch.cuda.empty_cache()


if __name__ == "__main__":
    model_dir = str(make_random_model_dir(sys.argv[1], tempfile.mkdtemp()))
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    seq = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    allin = ["query", "key", "value", "dense"]
    qv = ["query", "value"]
    print(torch.cuda.get_device_name(), f"batch {batch} x {seq}")
    variants = [(allin, 0.1, "paged8", False), (allin, 0.1, "adamw8", False), (allin, 0.1, "fused", False),
                (allin, 0.0, "fused", False), (qv, 0.1, "paged8", False), (qv, 0.0, "fused", False),
                (allin, 0.0, "fused", True), (qv, 0.1, "paged8", True)]
    for targets, dropout, optim, ckpt in variants[:int(sys.argv[4])] if len(sys.argv) > 4 else variants:
        variant(model_dir, batch, seq, targets, dropout, optim, ckpt)
