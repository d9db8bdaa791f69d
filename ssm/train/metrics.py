"""Losses and metrics per task, as ``(sum, count)`` pairs so that batches, micro-batches, hosts and
padded evaluation batches combine exactly: the metric is ``Σ sum / Σ count``.

- classification / retrieval: cross-entropy and accuracy per example;
- regression: mean squared error per example (sequence targets ``(T, d)`` are compared with the
  last ``T`` outputs, e.g. a forecast horizon appended to the lookback);
- lm / generation: cross-entropy and accuracy per token, over the first ``lengths`` tokens (targets
  shorter than the outputs are compared with the last ``T`` outputs, e.g. the copying task).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array

Sums = dict[str, tuple[Array, Array]]


def example_metrics(outputs: Array, example: dict[str, Array], task: str) -> Sums:
    """``(sum, count)`` of every metric for ONE example (``outputs`` from the model)."""
    t = example["targets"]
    if task in ("classification", "retrieval"):
        logp = jax.nn.log_softmax(outputs)
        ce = -jnp.take(logp, t)
        correct = (jnp.argmax(outputs) == t).astype(outputs.dtype)
        one = jnp.ones((), outputs.dtype)
        return {"loss": (ce, one), "accuracy": (correct, one)}
    if task == "regression":
        y = outputs
        if y.ndim == 2:  # per-step outputs (L, d): the last T steps are the prediction
            y = y[y.shape[0] - t.shape[0] :] if t.ndim >= 1 else y[-1]
            if t.ndim == 1:
                y = y[:, 0]
        y = y.reshape(t.shape)
        se = jnp.mean((y - t) ** 2)
        one = jnp.ones((), outputs.dtype)
        return {"loss": (se, one), "mse": (se, one)}
    if task in ("lm", "generation"):
        if t.shape[0] < outputs.shape[0]:  # targets for the last T steps only (e.g. copying)
            outputs = outputs[outputs.shape[0] - t.shape[0] :]
        logp = jax.nn.log_softmax(outputs, axis=-1)
        ce = -jnp.take_along_axis(logp, t[:, None], axis=-1)[:, 0]
        correct = (jnp.argmax(outputs, axis=-1) == t).astype(outputs.dtype)
        n = t.shape[0]
        length = example.get("lengths")
        mask = jnp.ones((n,), outputs.dtype) if length is None else (jnp.arange(n) < length).astype(outputs.dtype)
        count = jnp.sum(mask)
        return {"loss": (jnp.sum(ce * mask), count), "accuracy": (jnp.sum(correct * mask), count)}
    raise ValueError(f"unknown task {task!r}")


def lm_score_metrics(logp: Array, best: Array, example: dict[str, Array]) -> Sums:
    """The ``lm`` metrics of ONE example from per-position scores instead of logits (models that never form the
    ``(L, V)`` log-probabilities, e.g. ``ssm.nn.AdaptiveLM``): ``logp = log p(target_t)``, ``best = max_w log
    p(w)``; a position is correct when its target has the largest log-probability."""
    n = logp.shape[0]
    length = example.get("lengths")
    mask = jnp.ones((n,), logp.dtype) if length is None else (jnp.arange(n) < length).astype(logp.dtype)
    count = jnp.sum(mask)
    correct = (logp >= best).astype(logp.dtype)
    return {"loss": (-jnp.sum(logp * mask), count), "accuracy": (jnp.sum(correct * mask), count)}


def reduce_sums(sums: Sums, weights: Array | None = None) -> Sums:
    """Batched per-example sums ``(B,)`` -> totals, each example weighted (0 = padding)."""
    out = {}
    for k, (s, c) in sums.items():
        if weights is not None:
            s, c = s * weights, c * weights
        out[k] = (jnp.sum(s), jnp.sum(c))
    return out


def add_sums(a: dict[str, tuple[Any, Any]], b: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    if not a:
        return dict(b)
    return {k: (a[k][0] + b[k][0], a[k][1] + b[k][1]) for k in a}


def finalize(sums: dict[str, tuple[Any, Any]], task: str) -> dict[str, float]:
    """Host-side: totals -> metric values (plus derived ones: perplexity, bits, RMSE)."""
    out = {k: float(s) / max(float(c), 1e-30) for k, (s, c) in sums.items()}
    if task == "lm" and "loss" in out:
        out["perplexity"] = math.exp(min(out["loss"], 700.0))
    if task == "generation" and "loss" in out:
        out["bits_per_dim"] = out["loss"] / math.log(2.0)
    if task == "regression" and "mse" in out:
        out["rmse"] = math.sqrt(max(out["mse"], 0.0))
    return out


def default_best_metric(task: str) -> str:
    return "accuracy" if task in ("classification", "retrieval") else "loss"


def higher_is_better(metric: str) -> bool:
    return metric in ("accuracy",)
