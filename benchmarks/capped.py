"""`python -m benchmarks.capped GIB ARGS...`: the command line in a process allowed at most GIB of GPU memory.

A T4-sized check on a larger GPU (issue 17): `torch.cuda.set_per_process_memory_fraction` makes the caching
allocator raise out-of-memory beyond the cap, as a 16 GB card would. Memory only - not a T4's speed.
"""

from __future__ import annotations

import sys

import torch

from qlora_helpers.cli import main

if __name__ == "__main__":
    gib, *args = sys.argv[1:]
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(float(gib) * 2**30 / total)
    print(f"GPU memory capped at {gib} GiB of {total / 2**30:.1f}", flush=True)
    sys.exit(main(args))
