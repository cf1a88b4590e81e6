"""The runner's `ranks` kind: the same QLoRA run at several LoRA ranks, each in its own process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.harness import result_payload, run_arms


def rank_sweep(ranks: list[int], settings: dict[str, Any], output: Path, warmup_steps: int = 5) -> dict[str, Any]:
    """QLoRA runs to completion for each LoRA rank: trainable parameters, accuracy and peak memory."""
    records: list[dict[str, Any]] = []
    scratch = output.with_suffix(".part.json")
    for r in ranks:  # alpha = 2r keeps the update's scale alpha/r fixed, so only the rank varies
        records += run_arms(
            ["qlora"], {**settings, "lora_r": r, "lora_alpha": 2 * r}, scratch, warmup_steps, evaluate_test=True
        )["records"]
        output.write_text(json.dumps(result_payload("lora_rank_sensitivity", records), indent=2))
    scratch.unlink(missing_ok=True)
    return result_payload("lora_rank_sensitivity", records)
