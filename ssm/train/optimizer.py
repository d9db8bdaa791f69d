"""AdamW with parameter groups and learning-rate schedules.

Every array of the model gets one of three labels:

- ``"ssm"``: the SSM parameters (fields in ``ssm_param_names`` of each layer, see
  :func:`ssm.layers.ssm_param_mask`): peak lr ``optim.ssm_lr``, weight decay 0 (frozen if ``ssm_lr == 0``);
- ``"dt"``: only when ``optim.dt_lr`` is set: the step sizes log Δ (``dt_param_names``, a subset of the
  SSM parameters), peak lr ``optim.dt_lr``, weight decay 0 (frozen if 0). The official S4 V4 ListOps,
  IMDB and AAN configs train log Δ at the global lr and A, B at 1e-3;
- ``"no_decay"``: biases and normalisation parameters: peak lr ``optim.lr``, weight decay 0 unless
  ``optim.wd_bias_norm`` (the S4 default excludes them from decay);
- ``"decay"``: everything else: peak lr ``optim.lr``, weight decay ``optim.weight_decay``.

All peak rates follow one schedule shape (:func:`schedule`). The ``plateau`` schedule (PyTorch's
ReduceLROnPlateau, stepped at each validation) multiplies every update by a scale held in the optimizer
state (:class:`PlateauState`, so checkpoints carry it); the training loop calls :func:`plateau_update`
with each validation metric. (``optax.contrib.reduce_on_plateau`` takes the metric inside every update,
so it cannot be stepped by validations alone.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import PyTree

from ssm.config import OptimConfig
from ssm.layers.base import ssm_param_mask

SSM, DT, DECAY, NO_DECAY = "ssm", "dt", "decay", "no_decay"


def schedule(peak: float, cfg: OptimConfig, total_steps: int) -> Callable[[Any], Any]:
    """lr(t): linear warmup ``peak·t/W`` for ``t < W``, then with ``p = (t-W)/(D-W)`` clipped to
    [0, 1] and ``end = min_lr_ratio·peak``: cosine ``end + (peak-end)(1+cos πp)/2``, linear
    ``peak + (end-peak)p``, constant ``peak`` (also for ``plateau``, whose reductions live in the optimizer
    state), or multistep ``peak·γ^#{m ∈ milestones : m ≤ t}``. ``D = decay_steps`` (default ``total_steps``)."""
    warmup = cfg.warmup_steps
    decay = cfg.decay_steps if cfg.decay_steps is not None else total_steps
    end = cfg.min_lr_ratio * peak
    kind = cfg.schedule

    def lr(t):
        t = jnp.asarray(t, dtype=jnp.float32 if not jax.config.jax_enable_x64 else jnp.float64)
        warm = peak * t / max(warmup, 1)
        p = jnp.clip((t - warmup) / max(decay - warmup, 1), 0.0, 1.0)
        if kind == "cosine":
            after = end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * p))
        elif kind == "linear":
            after = peak + (end - peak) * p
        elif kind == "multistep":
            passed = sum((t >= m).astype(t.dtype) for m in cfg.milestones)
            after = peak * jnp.power(jnp.asarray(cfg.gamma, t.dtype), passed)
        else:
            after = jnp.full_like(t, peak)
        return jnp.where(t < warmup, warm, after)

    return lr


def _is_param(x: Any) -> bool:
    return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)


def param_labels(model: PyTree, cfg: OptimConfig) -> PyTree[str | None]:
    """A label per array leaf of ``model`` (``None`` on non-array leaves), structured like
    ``eqx.filter(model, eqx.is_array)``."""
    from ssm.nn.linear import Linear, WeightNormLinear
    from ssm.nn.norm import LayerNorm, ScalarLayerNorm

    # Equinox's norms and linear maps, and those of the ssm.nn backbones (SaShiMi, adaptive LM, pooled).
    norm_types = (eqx.nn.LayerNorm, eqx.nn.BatchNorm, eqx.nn.GroupNorm, eqx.nn.RMSNorm, LayerNorm, ScalarLayerNorm)
    bias_types = (eqx.nn.Linear, eqx.nn.Conv, Linear, WeightNormLinear)
    other = DECAY if cfg.wd_bias_norm else NO_DECAY

    def base(node):
        if isinstance(node, norm_types):
            return jax.tree_util.tree_map(lambda _: other, node)
        if isinstance(node, bias_types):
            labels = jax.tree_util.tree_map(lambda _: DECAY, node)
            if node.bias is not None:
                labels = eqx.tree_at(lambda m: m.bias, labels, other)
            return labels
        return DECAY

    base_labels = jax.tree_util.tree_map(
        base, model, is_leaf=lambda n: isinstance(n, norm_types + bias_types)
    )
    mask = ssm_param_mask(model)
    dt_mask = ssm_param_mask(model, dt_only=True) if cfg.dt_lr is not None else jax.tree_util.tree_map(
        lambda _: False, mask
    )
    return jax.tree_util.tree_map(
        lambda x, m, d, b: (DT if d else SSM if m else b) if _is_param(x) else None, model, mask, dt_mask, base_labels
    )


def _adamw(lr, wd: float, cfg: OptimConfig) -> optax.GradientTransformation:
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=wd
    )


def make_optimizer(
    model: PyTree, cfg: OptimConfig, total_steps: int
) -> tuple[optax.GradientTransformation, dict[str, Callable]]:
    """The optax transformation for ``eqx.filter(model, eqx.is_array)`` and the schedules
    ``{"lr": ..., "ssm_lr": ...}`` (and ``"dt_lr"`` when set; functions of the optimizer step, for logging)."""
    ssm_peak = cfg.lr if cfg.ssm_lr is None else cfg.ssm_lr
    lr, ssm_lr = schedule(cfg.lr, cfg, total_steps), schedule(ssm_peak, cfg, total_steps)
    labels = param_labels(model, cfg)
    groups = {
        DECAY: _adamw(lr, cfg.weight_decay, cfg),
        NO_DECAY: _adamw(lr, cfg.weight_decay if cfg.wd_bias_norm else 0.0, cfg),
        SSM: _adamw(ssm_lr, 0.0, cfg) if ssm_peak > 0 else optax.set_to_zero(),
    }
    schedules = {"lr": lr, "ssm_lr": ssm_lr}
    if cfg.dt_lr is not None:
        schedules["dt_lr"] = schedule(cfg.dt_lr, cfg, total_steps)
        groups[DT] = _adamw(schedules["dt_lr"], 0.0, cfg) if cfg.dt_lr > 0 else optax.set_to_zero()
    # An eqx.Module label tree is callable: optax would call it, so wrap it in a lambda.
    tx = optax.multi_transform(groups, lambda _: labels)
    if cfg.schedule == "plateau":
        tx = optax.chain(tx, scale_by_plateau())
    if cfg.clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx, schedules


PLATEAU_THRESHOLD = 1e-4  # PyTorch's default: an improvement must beat the best by this relative margin


class PlateauState(NamedTuple):
    """ReduceLROnPlateau's state: the lr multiplier, the best metric so far and the number of
    validations since it last improved."""

    scale: jax.Array
    best: jax.Array
    bad: jax.Array


def scale_by_plateau() -> optax.GradientTransformation:
    """Multiplies the updates by ``state.scale`` (changed only by :func:`plateau_update`)."""

    def init(params):
        del params
        return PlateauState(jnp.ones((), jnp.float32), jnp.full((), jnp.nan, jnp.float32), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u: u * state.scale.astype(u.dtype), updates), state

    return optax.GradientTransformation(init, update)


def _is_plateau(x: Any) -> bool:
    return isinstance(x, PlateauState)


def plateau_update(opt_state: Any, value: float, cfg: OptimConfig, *, maximize: bool) -> Any:
    """``opt_state`` after one ReduceLROnPlateau step on a validation metric ``value``: a value better
    than the best by the relative margin :data:`PLATEAU_THRESHOLD` resets the count; after more than
    ``cfg.patience`` validations without one, the scale is multiplied by ``cfg.gamma`` (not below
    ``cfg.min_lr_ratio``) and the count restarts. Unchanged if the optimizer has no plateau state."""

    def step(st: PlateauState) -> PlateauState:
        best, bad, scale = float(st.best), int(st.bad), float(st.scale)
        if math.isnan(best):
            improved = True
        elif maximize:
            improved = value > best * (1 + PLATEAU_THRESHOLD) if best >= 0 else value > best * (1 - PLATEAU_THRESHOLD)
        else:
            improved = value < best * (1 - PLATEAU_THRESHOLD) if best >= 0 else value < best * (1 + PLATEAU_THRESHOLD)
        if improved:
            best, bad = value, 0
        else:
            bad += 1
        if bad > cfg.patience:
            scale, bad = max(scale * cfg.gamma, cfg.min_lr_ratio), 0
        new = (jnp.asarray(scale, jnp.float32), jnp.asarray(best, jnp.float32), jnp.asarray(bad, jnp.int32))
        # keep each leaf's placement (replicated over the mesh) so the jitted step sees the same shardings
        return PlateauState(*(jax.device_put(n, getattr(o, "sharding", None)) for n, o in zip(new, st)))

    return jax.tree_util.tree_map(lambda x: step(x) if _is_plateau(x) else x, opt_state, is_leaf=_is_plateau)


def plateau_scale(opt_state: Any) -> float | None:
    """The current ReduceLROnPlateau multiplier, or None without a plateau schedule."""
    found = [x for x in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_plateau) if _is_plateau(x)]
    return float(found[0].scale) if found else None


def group_hyperparams(opt_state: Any) -> dict[str, dict[str, Any]]:
    """``{label: {"learning_rate": .., "weight_decay": ..}}`` as held in the optimizer state (the
    values used by the latest update)."""
    found: dict[str, dict[str, Any]] = {}

    def visit(node):
        if isinstance(node, optax.transforms.PartitionState):
            for label, inner in node.inner_states.items():
                hp = getattr(inner.inner_state, "hyperparams", None)
                if hp is not None:
                    found[label] = dict(hp)
            return
        if isinstance(node, tuple):
            for n in node:
                visit(n)

    visit(opt_state)
    return found
