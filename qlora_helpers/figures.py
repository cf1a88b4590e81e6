"""Saving a figure and captioning it: shared by the task figures (tasks/figures.py) and the run's plots
(report/plots.py).

Figures are built with matplotlib's object API, so they render the same in a notebook, a terminal or CI
(no display needed), and each plot function returns the path of the PNG it wrote.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from matplotlib.figure import Figure

COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


def model_display_name(model: str) -> str:
    """A model as a reader knows it: the Hub id, or a local directory's own name (never its absolute path)."""
    path = Path(model)
    if "minilm" in model.lower():
        return "all-MiniLM-L6-v2"
    return path.name if path.is_absolute() or model.startswith((".", "~")) or path.exists() else model


def run_caption(model: str, profile: str, device: str, when: datetime | None = None) -> str:
    """What a run plot shows, in one line: model, profile, device and date."""
    day = (when or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    return f"{model_display_name(model)} - profile {profile} - {device} - {day}"


def save_figure(fig: Figure, directory: str | Path, name: str) -> Path:
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
