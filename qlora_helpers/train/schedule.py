"""How long a run trains and when it evaluates: the number of optimizer steps, chosen from the data when
`epochs` is `auto`, and an early-stopping patience that is a share of the run rather than a fixed count.

The rule and the measurements it was chosen from are in benchmarks/recipe_notes.md ("Training length").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qlora_helpers.config import TrainConfig

PATIENCE_SHARE = 1 / 3  # auto patience: a third of the run's evaluations (2 of 6 in a 3-epoch run, as measured)


def auto_epochs(
    cfg: TrainConfig, steps_per_epoch: int, label_rows: float | None, unit: str = "class"
) -> tuple[float, str]:
    """Passes over the data for `epochs: auto`, and the reasoning in words: enough optimizer steps
    (`min_steps`) and enough rows of a typical label (`min_label_rows`), within `min_epochs`..`max_epochs`."""
    by_steps = cfg.min_steps / steps_per_epoch
    reasons = [f"at least {cfg.min_steps:,} optimizer steps -> {passes(by_steps)} epochs"]
    wanted = by_steps
    if label_rows and cfg.min_label_rows:
        by_labels = cfg.min_label_rows / label_rows
        wanted = max(wanted, by_labels)
        reasons.append(
            f"the median {unit}'s {label_rows:,.0f} {'positive ' if unit == 'label' else ''}rows an epoch seen "
            f"{cfg.min_label_rows:,} times -> "
            f"{passes(by_labels)} epochs"
        )
    epochs = min(cfg.max_epochs, max(cfg.min_epochs, wanted))
    bound = (
        f" (capped at {cfg.max_epochs:g})"
        if wanted > cfg.max_epochs
        else (f" (raised to the floor of {cfg.min_epochs:g})" if wanted < cfg.min_epochs else "")
    )
    return epochs, "; ".join(reasons) + f" -> {passes(epochs)} epochs{bound}"


def passes(epochs: float) -> str:
    """Epochs as the plan prints them: one decimal, or two significant digits below 0.1 (not a bare 0.0)."""
    return f"{epochs:.1f}" if epochs >= 0.1 else f"{epochs:.2g}"


@dataclass
class Schedule:
    """How many optimizer steps there are, when evaluation, logging and saving happen, and how many
    evaluations without a better validation score end the run (`patience`, 0 = no early stopping)."""

    steps_per_epoch: int
    total_steps: int
    eval_steps: int
    logging_steps: int
    epochs: float = 0.0  # passes over the training split (resolved when the configuration says auto)
    patience: int = 0
    reason: str = ""  # one line: what was chosen and why

    @classmethod
    def for_run(
        cls,
        cfg: TrainConfig,
        n_train: int,
        world_size: int = 1,
        full_batches: bool = False,
        label_rows: float | None = None,
        unit: str = "class",
    ) -> Schedule:
        """`full_batches`: the epoch's last, shorter batch is dropped (compiled layers), so it is not a step.
        `label_rows`: the task's `median_label_rows` of the training split, for `epochs: auto`; `unit`: class or
        label."""
        per_step = cfg.batch_size * cfg.grad_accum * world_size
        steps_per_epoch = max(1, (n_train // per_step) if full_batches else math.ceil(n_train / per_step))
        head = f"{n_train:,} training rows, batch {per_step}: {steps_per_epoch:,} steps an epoch; "
        if cfg.epochs == "auto":
            epochs, why = auto_epochs(cfg, steps_per_epoch, label_rows, unit)
            head += why
        else:
            epochs = float(cfg.epochs)
            head += f"{epochs:g} epochs as set"
        total = cfg.max_steps or math.ceil(steps_per_epoch * epochs)
        if cfg.max_steps:
            head += f"; --max-steps {cfg.max_steps} overrides"
        eval_steps = max(1, min(total, steps_per_epoch // cfg.evals_per_epoch or 1))
        evaluations = max(1, total // eval_steps)
        patience = cfg.early_stopping_patience
        if patience == "auto":
            patience = max(2, round(evaluations * PATIENCE_SHARE))
        stop = (
            f"early stopping after {patience} evaluation(s) without a better validation score"
            + (" (a third of the run)" if cfg.early_stopping_patience == "auto" else "")
            if patience
            else "no early stopping"
        )
        reason = f"{head}: {total:,} steps; evaluation every {eval_steps:,} steps, {stop}"
        logging_steps = max(1, min(eval_steps, steps_per_epoch // 10))
        return cls(steps_per_epoch, total, eval_steps, logging_steps, epochs, int(patience), reason)


CLIMB = 0.005  # a rise over the run's last quarter that is more than the plateau of a decaying learning rate


def still_climbing(log_history: list[dict], metric: str, planned_steps: int) -> dict | None:
    """Where the best validation score came, and whether a run that used its whole schedule was still improving
    at the end: its best in the last evaluation or two, and at least `CLIMB` above the score a quarter of the run
    earlier. A best at the end alone is no sign: as the cosine schedule's rate falls to zero the last scores
    flatten and the last is often the highest by a hair (STS-B, results/length_rule_stsb.json: 600 steps did as
    well as 1,280-1,560). None with fewer than three evaluations, where a curve says nothing."""
    key = f"eval_{metric}"
    curve = [(e["step"], e[key]) for e in log_history if key in e and "step" in e and math.isfinite(e[key])]
    if len(curve) < 3:
        return None
    best = max(range(len(curve)), key=lambda i: curve[i][1])  # the first of equal bests, as the Trainer keeps it
    ran_out = curve[-1][0] >= planned_steps  # early stopping did not end it
    start = min(len(curve) - 2, (3 * len(curve)) // 4 - 1)  # the evaluation a quarter of the run before the end
    gain = curve[best][1] - curve[start][1] if best > start else 0.0  # a best before the last quarter: no rise
    found = {"best_step": curve[best][0], "best_evaluation": best + 1, "evaluations": len(curve)}
    return {
        **found,
        "last_quarter_gain": round(gain, 4),
        "still_climbing": ran_out and best >= len(curve) - 2 and gain >= CLIMB,
    }


def climbing_note(found: dict | None, metric: str, epochs: float) -> str | None:
    """The line a run prints when it ended while validation was still improving; None otherwise."""
    if not found or not found["still_climbing"]:
        return None
    return (
        f"note: validation {metric} was still rising when the schedule ended (+{found['last_quarter_gain']:.3f} over "
        f"the last quarter, best at step {found['best_step']:,}, evaluation {found['best_evaluation']} of "
        f"{found['evaluations']}); a longer run may score higher: try --epochs {max(epochs * 2, epochs + 1):g} and "
        f"compare on validation"
    )
