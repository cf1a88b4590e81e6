"""Class weights in the loss: a rare class or a rare label otherwise contributes so little that the model
learns never to predict it. The weights come from the training split only; the task says how (tasks.py)."""

from __future__ import annotations

import torch

from qlora_helpers.config import parse_class_weights
from qlora_helpers.errors import require


def check_class_weights(setting: str, task, space) -> str | list[float] | None:
    """The parsed setting; explicit weights must number one per class (or label): checked before any output."""
    parsed = parse_class_weights(setting)
    require(
        parsed is None or task.weighable,
        f"--class-weights weighs classes or labels; a {task.name} task has none: leave it out",
    )
    if isinstance(parsed, list):
        require(
            len(parsed) == space.num_labels,
            f"class_weights gives {len(parsed)} weights for {space.num_labels} {task.noun}; give one per "
            f"{task.noun[:-1] if task.noun != 'classes' else 'class'}, in label-id order",
        )
    return parsed


def class_weight_vector(setting: str, task, targets, space) -> torch.Tensor | None:
    """The weights `setting` asks for (none / auto / w1,w2,...), computed from the training targets."""
    return task.class_weights(check_class_weights(setting, task, space), targets, space)
