"""Evaluation of a model on a split: exact metrics over every example (padded final batch weighted 0)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from ssm.train.metrics import add_sums, finalize
from ssm.train.pipeline import eval_batches
from ssm.train.step import make_eval_step

_EVAL_STEPS: dict[str, Any] = {}


def eval_step(task: str):
    """The jitted evaluation step of ``task`` (one per process and task: compiled once per shape)."""
    if task not in _EVAL_STEPS:
        _EVAL_STEPS[task] = make_eval_step(task)
    return _EVAL_STEPS[task]


def evaluate(
    model: Any,
    model_state: Any,
    source: Any,
    *,
    task: str,
    batch_size: int,
    to_global: Callable[[dict], dict],
    max_batches: int | None = None,
    bucket: int | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` (inference mode is applied by the step) over ``source``; {} if it is empty."""
    step = eval_step(task)
    sums: dict = {}
    for b in eval_batches(source, global_batch=batch_size, process=jax.process_index(), n_procs=jax.process_count(),
                          max_batches=max_batches, bucket=bucket):  # fmt: skip
        sums = add_sums(sums, jax.device_get(step(model, model_state, to_global(b))))
        if heartbeat is not None:
            heartbeat()
    return finalize(sums, task) if sums else {}
