"""Issue 7 A/B arms: `python -m qlora_helpers ...` unchanged except for the variants named in the environment
variable VARIANTS (comma-separated), applied in this process before the command line starts. Each is a change
the recipe does not make, to measure against it on the GPU:

  stock_collator    transformers' DataCollatorWithPadding instead of the recipe's PaddingCollator (the recipe
                    before commit 8bdcad5): what the numpy collator saves on a GPU step.
  no_bnb_step_sync  bitsandbytes' 8-bit optimizers without the torch.cuda.synchronize() they run after every
                    parameter's update (bitsandbytes 0.50, optim/optimizer.py `step`): 74 host-GPU round trips per
                    MiniLM step (the torch.profiler trace of issue 7 counted 77 cudaDeviceSynchronize per step),
                    and the first one makes the host wait for the other rank's all-reduce before it can queue
                    anything of the next step. The open upstream PR bitsandbytes-foundation/bitsandbytes#2050
                    drops it for non-paged state. Skipped here only while it is safe: no optimizer state is paged
                    (LoRA's tensors are below bitsandbytes' 1e5-element paging threshold) and PyTorch's current
                    stream is the legacy default stream, on which bitsandbytes launches its optimizer kernels.
                    benchmarks/optimizer_sync_check.py showed such a step trains bit for bit the same; its timing
                    (results/optimizer_sync_h200.json) was inside the spread while cuDNN attention made steps
                    bursty, so this arm re-tests it on 1 and 2 GPUs, interleaved.

VARIANTS=no_bnb_step_sync torchrun --nproc-per-node 2 benchmarks/with_variants.py train --model DIR ...
VARIANTS=stock_collator python benchmarks/with_variants.py train ...
"""
import os
import sys

VARIANTS = ("stock_collator", "no_bnb_step_sync")


def stock_collator() -> None:
    from transformers import DataCollatorWithPadding

    from qlora_helpers import training

    training.PaddingCollator = DataCollatorWithPadding


def no_bnb_step_sync() -> None:
    import bitsandbytes.optim.optimizer as bnb_optimizer
    import torch
    from bitsandbytes.functional import GlobalPageManager

    synchronize = bnb_optimizer.sync_gpu

    def sync_only_when_needed(t: torch.Tensor) -> None:
        safe = (t.device.type == "cuda" and not GlobalPageManager.get_instance().paged_tensors
                and torch.cuda.current_stream(t.device).cuda_stream == 0)
        if not safe:
            synchronize(t)

    bnb_optimizer.sync_gpu = sync_only_when_needed


def apply(names: list[str]) -> None:
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"VARIANTS: unknown {unknown}; known: {', '.join(VARIANTS)}")
    for name in names:
        globals()[name]()
    print(f"variants applied: {', '.join(names) or 'none (the recipe as it is)'}", file=sys.stderr)


if __name__ == "__main__":
    apply([n for n in os.environ.get("VARIANTS", "").split(",") if n])
    from qlora_helpers import cli

    sys.exit(cli.main(sys.argv[1:]))
