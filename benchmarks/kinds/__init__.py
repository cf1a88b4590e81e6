"""The runner's experiment kinds that need more than a training run: inference timing, ONNX serving, the memory
breakdown and profile of a step, and time-limited tuning. `benchmarks/run.py` dispatches to them."""
