"""Class weights in the loss: inverse frequency for classes, or a positive weight per label for label sets.

A rare class or a rare emotion otherwise contributes so little to the loss that the model learns never
to predict it. The weights come from the training split only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import parse_class_weights
from .errors import require


def check_class_weights(setting: str, num_labels: int, multi_label: bool) -> str | list[float] | None:
    """The parsed setting; explicit weights must number one per class (or label): checked before any output."""
    parsed = parse_class_weights(setting)
    if isinstance(parsed, list):
        kind = "labels" if multi_label else "classes"
        require(
            len(parsed) == num_labels,
            f"class_weights gives {len(parsed)} weights for {num_labels} {kind}; give one per "
            f"{kind[:-1] if multi_label else 'class'}, in label-id order",
        )
    return parsed


def class_weight_vector(setting: str, labels, num_labels: int, multi_label: bool) -> torch.Tensor | None:
    """The weights `setting` asks for (none / auto / w1,w2,...), from the training labels.

    auto: single-label classes get N / (K * n_c), so a balanced set gets 1 everywhere (scikit-learn's
    "balanced"); a label of a multi-label task gets sqrt(negatives / positives) as its positive weight,
    which lifts rare labels without letting one with a few dozen examples swamp the rest.
    """
    parsed = check_class_weights(setting, num_labels, multi_label)
    if parsed is None:
        return None
    if parsed != "auto":
        return torch.tensor(parsed, dtype=torch.float32)
    y = np.asarray(labels)
    if multi_label:
        positives = y.sum(axis=0)
        negatives = len(y) - positives
        return torch.tensor(np.sqrt(negatives / np.maximum(positives, 1)), dtype=torch.float32)
    counts = np.bincount(y.astype(int), minlength=num_labels)
    return torch.tensor(len(y) / (num_labels * np.maximum(counts, 1)), dtype=torch.float32)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, multi_label: bool):
    """Mean loss over the batch, in fp32: BCE with a positive weight per label, or weighted cross-entropy."""
    weights = weights.to(logits.device)
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=weights)
    return F.cross_entropy(logits.float(), labels.long(), weight=weights)
