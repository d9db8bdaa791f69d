"""The best-checkpoint rule, written once: which validation result is better than the best so far."""

from __future__ import annotations

import math
from typing import Any

from ssm.train.metrics import default_best_metric, higher_is_better


class BestTracker:
    """The best value of ``metric`` (maximized for accuracy, minimized otherwise) and its step.

    ``record`` is the ``{"metric", "value", "step"}`` dict kept in every checkpoint's meta ({} before the
    first validation)."""

    def __init__(self, metric: str | None, task: str, record: dict[str, Any] | None = None):
        self.metric = metric or default_best_metric(task)
        self.maximize = higher_is_better(self.metric)
        self.record: dict[str, Any] = dict(record or {})

    def value(self, metrics: dict[str, float]) -> float | None:
        """The tracked metric of a validation result, if it is there and finite."""
        v = metrics.get(self.metric)
        return v if v is not None and math.isfinite(v) else None

    def is_better(self, v: float) -> bool:
        """Strictly better than the best so far (ties keep the earlier step)."""
        if not self.record:
            return True
        return v > self.record["value"] if self.maximize else v < self.record["value"]

    def update(self, metrics: dict[str, float], step: int) -> bool:
        """Take ``metrics`` of ``step`` as the new best if better; True when it is."""
        v = self.value(metrics)
        if v is None or not self.is_better(v):
            return False
        self.record = {"metric": self.metric, "value": v, "step": step}
        return True
