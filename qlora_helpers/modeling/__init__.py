"""The model: a 4-bit base with an unquantized head, LoRA adapters, the encoder family's differences, compiled
encoder layers, and what prediction needs saved beside the weights (classifier_config).

May import: errors, hardware, config, tasks, data. Never train, infer or anything above.
"""
