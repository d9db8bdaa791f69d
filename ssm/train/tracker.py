"""Where metrics go: ``metrics.jsonl`` in the run directory, optionally wandb, or nowhere.

Every event is ``tracker.log(step, split, metrics)``; the JSONL tracker writes one object per line:
``{"step": 100, "split": "train", "loss": 0.31, "lr": 0.001, ...}``.

A resumed run calls ``tracker.resume(step)`` with the step it restarts from: the JSONL tracker drops
the events after that step (they are recomputed), a torn last line (a process killed while writing)
and damaged lines (each named in a :class:`MetricsWarning`), and never writes an event whose
``(step, split)`` is already recorded, so ``metrics.jsonl`` holds every event once.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any


class MetricsWarning(UserWarning):
    """A line of ``metrics.jsonl`` is damaged and was skipped."""


class Tracker:
    """The no-op tracker (also the interface)."""

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        pass

    def resume(self, step: int) -> None:
        """The run (re)starts after ``step``: events after it will be logged again."""

    def close(self) -> None:
        pass


class JsonlTracker(Tracker):
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._f = None
        self._seen: set[tuple[int, str]] = set()

    def resume(self, step: int) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        events, clean = _read(self.path)
        keep = [e for e in events if e["step"] <= step]
        if len(keep) != len(events) or not clean:
            tmp = f"{self.path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                f.writelines(json.dumps(e) + "\n" for e in keep)
            os.replace(tmp, self.path)
        self._seen = {(e["step"], e["split"]) for e in keep}

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        if self._f is None:
            if not self._seen and os.path.exists(self.path):  # used without resume(): keep it, minus a torn end
                self.resume(2**62)
            self._f = open(self.path, "a", buffering=1)
        if (int(step), split) in self._seen:
            return
        self._seen.add((int(step), split))
        self._f.write(json.dumps({"step": int(step), "split": split, **metrics}) + "\n")

    def close(self) -> None:
        if self._f is not None:
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

    def resume(self, step: int) -> None:
        for t in self.trackers:
            t.resume(step)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


def _read(path: str) -> tuple[list[dict[str, Any]], bool]:
    """``(events, clean)`` of a JSONL file: damaged lines are skipped with a :class:`MetricsWarning`."""
    if not os.path.exists(path):
        return [], True
    with open(path, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    events, clean = [], True
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line.decode("utf-8"))
            if not isinstance(e, dict) or not isinstance(e.get("step"), int) or not isinstance(e.get("split"), str):
                raise ValueError("not an event object with integer 'step' and string 'split'")
            events.append(e)
        except ValueError as err:
            clean = False
            torn = i == len(lines)  # no newline after it: the writer was killed mid-line
            what = "torn last line (a run killed while writing it)" if torn else f"damaged line ({str(err)[:80]})"
            text = line[:60].decode("utf-8", "replace")
            warnings.warn(f"{path} line {i}: {what}, skipped: {text!r}; the other {'events' if torn else 'lines'} "
                          "are read", MetricsWarning, stacklevel=3)  # fmt: skip
    return events, clean


def read_metrics(run_dir: "str | os.PathLike[str]") -> list[dict[str, Any]]:
    """The events of ``RUN_DIR/metrics.jsonl`` (damaged lines skipped with a :class:`MetricsWarning`)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {str(run_dir)!r} a run directory written by scripts/train.py?")
    return _read(path)[0]
