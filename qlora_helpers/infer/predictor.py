"""What every trained model does at prediction, whichever backend runs it: the saved settings turn its logits into
calibrated probabilities, decisions and rows, and score a labelled table.

A backend (PyTorch in inference.py, onnxruntime in onnx_model.py) subclasses `Predictor` and supplies
`backend_logits`; everything around the logits is here once. No torch: the ONNX serving box imports this too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import pandas as pd

from qlora_helpers.data.text_input import check_pair_texts
from qlora_helpers.modeling.classifier_config import ClassifierConfig


class Predictor(ABC):
    classifier_config: ClassifierConfig
    batch_size: int = 64  # the backend's default batch
    progress: bool = True  # a progress bar by default (PyTorch on a GPU); ONNX on a CPU is quiet

    @abstractmethod
    def backend_logits(
        self, texts: list[str], batch_size: int, progress: bool, pairs: list[str] | None, long_text: str, stride
    ) -> np.ndarray:
        """The backend's own logits for checked texts, in their order."""

    def raw_logits(
        self,
        texts: list[str],
        batch_size: int | None = None,
        progress: bool | None = None,
        pairs: list[str] | None = None,
        long_text: str = "truncate",
        stride: int | None = None,
    ) -> np.ndarray:
        """The model's own logits (before the saved temperature), in the texts' order; the backend's batch and
        progress bar unless given."""
        self.check_pairs(texts, pairs)
        batch_size, progress = batch_size or self.batch_size, self.progress if progress is None else progress
        return self.backend_logits(texts, batch_size, progress, pairs, long_text, stride)

    @property
    def names(self) -> list[str]:
        return list(self.classifier_config.labels.names)

    def decision_thresholds(self, mode: str | None = None):
        """The decision thresholds of label sets (`mode`: one of the saved ones), None for the other tasks."""
        return self.classifier_config.decision_thresholds(mode)

    def check_pairs(self, texts: list[str], pairs: list[str] | None) -> None:
        """A pair model needs a second text for every text; a single-text model takes none."""
        check_pair_texts(self.classifier_config.text_input.pair_column, texts, pairs)

    def logits(self, texts, batch_size=None, progress=None, pairs=None, long_text="truncate", stride=None):
        """Calibrated logits (divided by the saved temperature): what probabilities and decisions come from, and
        what the thresholds were tuned on."""
        return self.classifier_config.calibrated(
            self.raw_logits(texts, batch_size, progress, pairs, long_text, stride)
        )

    def predict(
        self,
        texts: list[str],
        batch_size: int | None = None,
        progress: bool | None = None,
        top_k: int | None = None,
        threshold_mode: str | None = None,
        pairs: list[str] | None = None,
        long_text: str = "truncate",
        stride: int | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per text: the decision (a label and its probability, the labels above their thresholds, or
        a score), then every label's probability (only the `top_k` highest if given)."""
        thresholds = self.decision_thresholds(threshold_mode)
        logits = self.logits(texts, batch_size, progress, pairs, long_text, stride)
        decided = self.classifier_config.task.rows(logits, self.classifier_config.labels, thresholds, top_k)
        return [
            {"text": t, **({"text_pair": pairs[i]} if pairs else {}), **row}
            for i, (t, row) in enumerate(zip(texts, decided))
        ]

    def scores(
        self, frame: pd.DataFrame, batch_size: int | None = None, thresholds=None, long_text="truncate", stride=None
    ) -> tuple[dict[str, Any], np.ndarray]:
        """The task's scores of a labelled table (label sets at `thresholds`) and the calibrated logits behind them."""
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        logits = self.logits(frame["text"].tolist(), batch_size, None, pairs, long_text, stride)
        return self.classifier_config.task.scores(
            frame["label"], logits, self.classifier_config.labels, thresholds
        ), logits
