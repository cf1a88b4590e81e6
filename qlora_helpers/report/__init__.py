"""What a reader sees of a run: its plots, the model cards (PyTorch and ONNX), and the committed benchmark
results that the notebook quotes.

May import: errors, figures, run_files, config, tasks, data, modeling. Never train, infer or anything above.
"""
