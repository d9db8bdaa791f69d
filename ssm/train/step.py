"""The pure training and evaluation steps.

``train_step(state, batch) -> (state, metrics)`` is one optimizer step over a global batch (a dict of
arrays with a leading batch axis, sharded over the ``"data"`` mesh axis); with gradient accumulation
the batch is split into ``grad_accum`` equal micro-batches and the step follows the gradient of the
whole batch's loss, ``∇(Σ loss sums / Σ counts)``: the micro-batches' gradients of their loss SUMS are
added and divided by the total count; each SSM kernel is computed once per step, not once per micro-batch
(:mod:`ssm.train.shared_kernels`). (Averaging per-micro-batch means would weight a token of a short
micro-batch more than one of a long micro-batch, a different objective for token-weighted losses.)
The per-example model call is vmapped with ``axis_name="batch"`` so that BatchNorm statistics are
taken over the whole global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from ssm.train.ema import ema_update
from ssm.train.metrics import example_metrics, lm_score_metrics, reduce_sums
from ssm.train.shared_kernels import gradients_through_kernels, kernel_plan, with_given_kernels
from ssm.train.state import TrainState

Batch = dict[str, Array]

_MODEL_KEYS = ("lengths", "inputs2", "lengths2")


def _forward(model, model_state, batch: Batch, keys: Array | None):
    """Per-example outputs ``(B, ...)`` and the new model state."""
    extras = {k: batch[k] for k in _MODEL_KEYS if k in batch}

    def one(inputs, extra, state, key):
        return model(inputs, state, key=key, **extra)

    if keys is None:
        return eqx.filter_vmap(
            lambda x, e, s: one(x, e, s, None), in_axes=(0, 0, None), out_axes=(0, None), axis_name="batch"
        )(batch["inputs"], extras, model_state)
    return eqx.filter_vmap(one, in_axes=(0, 0, None, 0), out_axes=(0, None), axis_name="batch")(
        batch["inputs"], extras, model_state, keys
    )


def _lm_scores(model, model_state, batch: Batch, keys: Array | None):
    """Per-example ``(log p(targets), max log p)`` ``(B, L)`` from a model that scores targets itself
    (``Backbone.lm_scores``): the LM loss without ``(B, L, V)`` outputs. The models are causal, so the padding
    after ``lengths`` does not change the real positions."""

    def one(inputs, targets, state, key):
        return model.lm_scores(inputs, targets, state, key=key)

    if keys is None:
        return eqx.filter_vmap(
            lambda x, t, s: one(x, t, s, None), in_axes=(0, 0, None), out_axes=(0, None), axis_name="batch"
        )(batch["inputs"], batch["targets"], model_state)
    return eqx.filter_vmap(one, in_axes=(0, 0, None, 0), out_axes=(0, None), axis_name="batch")(
        batch["inputs"], batch["targets"], model_state, keys
    )


def batch_sums(model, model_state, batch: Batch, task: str, keys: Array | None):
    if task == "lm" and getattr(model, "scores_targets", False):
        (logp, best), model_state = _lm_scores(model, model_state, batch, keys)
        per_example = eqx.filter_vmap(lm_score_metrics)(logp, best, batch)
        return reduce_sums(per_example, batch.get("weights")), model_state
    outputs, model_state = _forward(model, model_state, batch, keys)
    per_example = eqx.filter_vmap(lambda o, ex: example_metrics(o, ex, task))(outputs, batch)
    return reduce_sums(per_example, batch.get("weights")), model_state


def make_train_step(
    tx: optax.GradientTransformation,
    task: str,
    grad_accum: int = 1,
    state_sharding: Any = None,
    ema_decay: float | None = None,
    share_kernels: bool = True,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, Array]]]:
    """The jitted step; the state (and batch) buffers are donated. ``state_sharding`` (e.g. a
    replicated ``NamedSharding``) is imposed on the new state. With ``ema_decay`` the state's EMA of the
    weights is updated after the optimizer step (:func:`~ssm.train.ema.ema_update`). ``share_kernels=False``
    recomputes the SSM kernels in every micro-batch (the step before :mod:`ssm.train.shared_kernels`, for A/B)."""

    def loss_fn(model, model_state, batch, key):
        n = batch["inputs"].shape[0]
        sums, model_state = batch_sums(model, model_state, batch, task, jax.random.split(key, n))
        loss = sums["loss"][0] / sums["loss"][1]
        return loss, (sums, model_state)

    def sum_fn(model, model_state, batch, key):
        # The loss SUM of a micro-batch: its gradients add up to the whole batch's (the count does not
        # depend on the parameters).
        n = batch["inputs"].shape[0]
        sums, model_state = batch_sums(model, model_state, batch, task, jax.random.split(key, n))
        return sums["loss"][0], (sums, model_state)

    grad_fn = eqx.filter_value_and_grad(loss_fn, has_aux=True)
    sum_grad_fn = eqx.filter_value_and_grad(sum_fn, has_aux=True)

    @eqx.filter_jit(donate="all")
    def train_step(state: TrainState, batch: Batch):
        key, step_key = jax.random.split(state.key)
        if grad_accum == 1:
            (loss, (sums, model_state)), grads = grad_fn(state.model, state.model_state, batch, step_key)
        else:
            micro = jax.tree_util.tree_map(
                lambda a: a.reshape((grad_accum, a.shape[0] // grad_accum) + a.shape[1:]), batch
            )
            keys = jax.random.split(step_key, grad_accum)
            head = jax.tree_util.tree_map(lambda a: a[0], micro)
            # Each SSM kernel once per step, not once per micro-batch (ssm.train.shared_kernels).
            model, pullback = state.model, None
            plan = kernel_plan(sum_fn, model, state.model_state, head, keys[0]) if share_kernels else None
            if plan is not None:
                model, pullback = with_given_kernels(model, plan)
            params, static = eqx.partition(model, eqx.is_array)
            (_, (sums, model_state)), grads = sum_grad_fn(model, state.model_state, head, keys[0])

            def body(carry, xs):
                g_acc, s_acc, mstate = carry
                mb, k = xs
                (_, (s, mstate)), g = sum_grad_fn(eqx.combine(params, static), mstate, mb, k)
                return (jax.tree_util.tree_map(jnp.add, g_acc, g), jax.tree_util.tree_map(jnp.add, s_acc, s), mstate), None

            rest = jax.tree_util.tree_map(lambda a: a[1:], (micro, keys))
            (grads, sums, model_state), _ = jax.lax.scan(body, (grads, sums, model_state), rest)
            if pullback is not None:
                grads = gradients_through_kernels(grads, pullback)
            total = sums["loss"][1]
            grads = jax.tree_util.tree_map(lambda g: g / total.astype(g.dtype), grads)
            loss = sums["loss"][0] / total
        params = eqx.filter(state.model, eqx.is_array)
        updates, opt_state = tx.update(grads, state.opt_state, params)
        model = eqx.apply_updates(state.model, updates)
        ema = None if ema_decay is None else ema_update(state.ema, model, ema_decay, state.step)
        new = TrainState(state.step + 1, model, model_state, opt_state, key, ema)
        if state_sharding is not None:
            new = eqx.filter_shard(new, state_sharding)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "sums": sums}
        return new, metrics

    return train_step


def make_eval_step(task: str) -> Callable[[Any, Any, Batch], dict[str, tuple[Array, Array]]]:
    """``eval_step(model, model_state, batch) -> sums``: inference mode (running BatchNorm
    statistics, no dropout); padded examples carry ``batch["weights"] == 0``."""

    @eqx.filter_jit
    def eval_step(model, model_state, batch: Batch):
        model = eqx.nn.inference_mode(model)
        sums, _ = batch_sums(model, model_state, batch, task, None)
        return sums

    return eval_step


@eqx.filter_jit
def all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
