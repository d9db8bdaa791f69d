"""The training state: one pytree holding everything a step reads and writes."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PyTree

from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.model import SequenceModel, make_model


class TrainState(eqx.Module):
    """``step`` (optimizer steps done), ``model``, ``model_state`` (BatchNorm statistics),
    ``opt_state`` and ``key`` (raw uint32 PRNG key data, split once per step)."""

    step: Array
    model: SequenceModel
    model_state: eqx.nn.State
    opt_state: PyTree[Any]
    key: Array


def init_state(
    model_cfg: ModelConfig, info: DatasetInfo, tx: optax.GradientTransformation, key: Array
) -> TrainState:
    """A fresh state from the PRNG ``key`` (model init and the dropout stream use distinct keys)."""
    k_model, k_loop = jax.random.split(key)
    model, model_state = make_model(model_cfg, info, key=k_model)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))
    return TrainState(jnp.zeros((), jnp.int32), model, model_state, opt_state, k_loop)


def abstract_state(model_cfg: ModelConfig, info: DatasetInfo, tx: optax.GradientTransformation) -> TrainState:
    """The state's shapes and dtypes (``jax.ShapeDtypeStruct`` leaves) without computing anything."""
    return eqx.filter_eval_shape(init_state, model_cfg, info, tx, jax.random.PRNGKey(0))


def abstract_model(model_cfg: ModelConfig, info: DatasetInfo) -> tuple[Any, Any]:
    """``(model, model_state)`` with ``jax.ShapeDtypeStruct`` leaves (what a checkpoint's ``model`` item
    is restored into). A layer that cannot be constructed under tracing is built once for real."""
    import warnings

    try:
        return eqx.filter_eval_shape(make_model, model_cfg, info, key=jax.random.PRNGKey(0))
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as e:
        warnings.warn(f"the {str(model_cfg.layer)!r} layer cannot be constructed under tracing ({type(e).__name__}); "
                      "initialising eagerly", RuntimeWarning, stacklevel=2)  # fmt: skip
        real = make_model(model_cfg, info, key=jax.random.PRNGKey(0))
        return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if eqx.is_array(a) else a, real)
