"""Data: a file or Hub dataset in, three clean labelled splits of token ids out.

Owns reading tables (tables), what a model reads from a row (text_input), splits, tokenization and head + tail
truncation (tokens), long-text windows, and batch padding (collate); prepare decides the task and label space
once from the data and builds the splits.
May import: errors, hub, config, tasks. Never modeling, train, infer or anything above.
"""
