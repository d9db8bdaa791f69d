"""Where metrics go: ``metrics.jsonl`` in the run directory, optionally wandb, or nowhere.

Every event is ``tracker.log(step, split, metrics)``; the JSONL tracker writes one object per line:
``{"step": 100, "split": "train", "loss": 0.31, "lr": 0.001, ...}``.
"""

from __future__ import annotations

import json
import os
from typing import Any


class Tracker:
    """The no-op tracker (also the interface)."""

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlTracker(Tracker):
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._f = open(path, "a", buffering=1)

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        self._f.write(json.dumps({"step": int(step), "split": split, **metrics}) + "\n")

    def close(self) -> None:
        self._f.close()


class WandbTracker(Tracker):
    """wandb in ``mode`` "offline" (files under the run dir; ``wandb sync`` later) or "online"."""

    def __init__(self, run_dir: str, mode: str, project: str, config: dict[str, Any]):
        import wandb  # imported lazily: slow, and never needed otherwise

        self._run = wandb.init(project=project, mode=mode, dir=run_dir, config=config,
                               name=os.path.basename(os.path.abspath(run_dir)))  # fmt: skip

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        self._run.log({f"{split}/{k}": v for k, v in metrics.items()}, step=int(step))

    def close(self) -> None:
        self._run.finish()


class MultiTracker(Tracker):
    def __init__(self, *trackers: Tracker):
        self.trackers = trackers

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        for t in self.trackers:
            t.log(step, split, metrics)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


def read_metrics(run_dir: "str | os.PathLike[str]") -> list[dict[str, Any]]:
    """The events of ``RUN_DIR/metrics.jsonl``."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
