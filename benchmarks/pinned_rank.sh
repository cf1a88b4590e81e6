#!/usr/bin/env bash
# One torchrun rank pinned to its own share of the CPU cores (an experiment for issue 7):
#   torchrun --nproc-per-node N --no-python bash benchmarks/pinned_rank.sh -m qlora_helpers train ...
n=$(nproc --all)  # plain nproc obeys OMP_NUM_THREADS, which torchrun sets to 1
per=$(( n / ${LOCAL_WORLD_SIZE:-1} )); first=$(( ${LOCAL_RANK:-0} * per ))
exec taskset -c $first-$(( first + per - 1 )) python3 "$@"
