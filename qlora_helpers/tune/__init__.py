"""`qlora-bert tune`: an Optuna study over the recipe (study), its search space (space), and one trial in its
own process (trial), which trains through the pipeline like any run.

May import: the pipeline and everything below it. Never cli.
"""
