"""The training state: one pytree holding everything a step reads and writes."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PyTree

from ssm.data.base import DatasetInfo
from ssm.model import make_model


class TrainState(eqx.Module):
    """``step`` (optimizer steps done), ``model``, ``model_state`` (BatchNorm statistics),
    ``opt_state``, ``key`` (raw uint32 PRNG key data, split once per step) and ``ema`` (the exponential
    moving average of the weights, a model like ``model``, with ``--optim.ema-decay``; None without)."""

    step: Array
    model: eqx.Module  # SequenceModel, or an ssm.nn backbone behind ssm.backbones.Backbone
    model_state: eqx.nn.State
    opt_state: PyTree[Any]
    key: Array
    ema: eqx.Module | None = None

    @property
    def eval_model(self) -> eqx.Module:
        """The weights that validation, test and the best checkpoint use: the EMA when there is one."""
        return self.model if self.ema is None else self.ema


def init_state(
    model_cfg: Any, info: DatasetInfo, tx: optax.GradientTransformation, key: Array, ema: bool = False
) -> TrainState:
    """A fresh state from the PRNG ``key`` (model init and the dropout stream use distinct keys); with
    ``ema`` the average starts as a copy of the initial weights (see :mod:`ssm.train.ema`)."""
    k_model, k_loop = jax.random.split(key)
    model, model_state = make_model(model_cfg, info, key=k_model)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))
    average = jax.tree_util.tree_map(lambda x: jnp.copy(x) if eqx.is_array(x) else x, model) if ema else None
    return TrainState(jnp.zeros((), jnp.int32), model, model_state, opt_state, k_loop, average)


def abstract_state(
    model_cfg: Any, info: DatasetInfo, tx: optax.GradientTransformation, ema: bool = False
) -> TrainState:
    """The state's shapes and dtypes (``jax.ShapeDtypeStruct`` leaves) without computing anything."""
    return eqx.filter_eval_shape(init_state, model_cfg, info, tx, jax.random.PRNGKey(0), ema)


def abstract_model(model_cfg: Any, info: DatasetInfo) -> tuple[Any, Any]:
    """``(model, model_state)`` with ``jax.ShapeDtypeStruct`` leaves (what a checkpoint's ``model`` item
    is restored into). A layer that cannot be constructed under tracing is built once for real."""
    return abstract_model_traced(model_cfg, info)[0]


def abstract_model_traced(model_cfg: Any, info: DatasetInfo) -> tuple[tuple[Any, Any], bool]:
    """:func:`abstract_model` and whether the model could be built under tracing (else it was built eagerly, with
    a ``RuntimeWarning``, and the caller must initialise eagerly too)."""
    import warnings

    try:
        return eqx.filter_eval_shape(make_model, model_cfg, info, key=jax.random.PRNGKey(0)), True
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as e:
        warnings.warn(f"the {str(model_cfg.layer)!r} layer cannot be constructed under tracing ({type(e).__name__}); "
                      "initialising eagerly", RuntimeWarning, stacklevel=3)  # fmt: skip
        real = make_model(model_cfg, info, key=jax.random.PRNGKey(0))
        shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if eqx.is_array(a) else a, real)
        return shapes, False
