"""The training metrics between log points: kept on the device until a flush, then checked and logged."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax

from ssm.train.metrics import add_sums, finalize
from ssm.train.optimizer import plateau_scale


class StepLog:
    """``add(step, metrics)`` after each (asynchronously dispatched) step; ``flush(step, opt_state)`` fetches
    them, raises ``on_nonfinite(message, step)`` for a non-finite loss, and logs one ``train`` event with
    the metrics over the pending steps, the gradient norm of the last one and every learning rate."""

    def __init__(self, task: str, schedules: dict[str, Any], tracker: Any, progress: Any,
                 on_nonfinite: Callable[[str, int], Exception], kick: Callable[..., None]):  # fmt: skip
        self.task, self.schedules, self.tracker, self.progress = task, schedules, tracker, progress
        self.on_nonfinite, self.kick = on_nonfinite, kick
        self.pending: list[tuple[int, dict]] = []

    def add(self, step: int, metrics: dict) -> None:
        self.pending.append((step, metrics))

    def flush(self, step: int, opt_state: Any) -> None:
        if not self.pending:
            return
        got = jax.device_get([m for _, m in self.pending])
        self.kick("training")
        steps = [s for s, _ in self.pending]
        self.pending.clear()
        for s, m in zip(steps, got):
            if not math.isfinite(float(m["loss"])):
                raise self.on_nonfinite(f"non-finite loss ({float(m['loss'])}) at step {s}", s)
        sums: dict = {}
        for m in got:
            sums = add_sums(sums, m["sums"])
        metrics = finalize(sums, self.task)
        metrics["grad_norm"] = float(got[-1]["grad_norm"])
        scale = plateau_scale(opt_state) or 1.0  # the plateau schedule's reductions so far
        for name, lr_at in self.schedules.items():  # lr, ssm_lr (and dt_lr when set)
            metrics[name] = scale * float(lr_at(step - 1))
        metrics.update(self.progress.update(step, loss=metrics["loss"], lr=metrics["lr"]))
        self.tracker.log(step, "train", metrics)
