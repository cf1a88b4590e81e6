"""Training with the Hugging Face Trainer: the recipe's arguments, the schedule (how long, when to evaluate),
the loss's class weights, what a run watches from the side (callbacks), and optional tracking.

May import: errors, hardware, distributed, config, tasks, data, modeling, report. Never infer or above.
"""
