"""What every task's rows and reports share: ranked probabilities and the per-class table."""

from __future__ import annotations

from typing import Any

import numpy as np

from qlora_helpers.tasks.labels import LabelSpace


def class_table(m: dict[str, Any]) -> str:
    width = max(14, *(len(n) for n in m["labels"]))
    rows = [f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    for name in m["labels"]:
        r = m["report"][name]
        rows.append(
            f"{name:>{width}} {r['precision']:9.4f} {r['recall']:9.4f} {r['f1-score']:9.4f} {int(r['support']):9d}"
        )
    return "\n".join(rows)


def ranked(space: LabelSpace, probs: np.ndarray, top_k: int | None) -> dict[str, Any]:
    """Every label's probability (in label order), or the `top_k` most probable, highest first."""
    if not top_k:
        return {"probabilities": {n: round(float(x), 6) for n, x in zip(space.names, probs)}}
    best = np.argsort(-probs, kind="stable")[:top_k]
    return {"probabilities": {space.names[j]: round(float(probs[j]), 6) for j in best}}
