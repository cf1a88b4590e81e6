"""Using a trained model: reload and predict in PyTorch (inference) or from an ONNX export (onnx_model), score a
labelled table (evaluation), check a reload (reload_check), merge the adapter, export and verify ONNX.

May import: everything below it (config, tasks, data, modeling, report). Never train, pipeline, tune or cli.
"""
