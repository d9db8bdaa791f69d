"""Exponential moving average (EMA) of the weights, ``--optim.ema-decay d``.

After every optimizer step ``k = 1, 2, ...`` (parameters ``θ_k`` after the step):

    ema_1 = θ_1,        ema_k = d·ema_{k-1} + (1 - d)·θ_k   (k ≥ 2),

with no debiasing. This is the rule of the official S4 training loop (state-spaces/s4 ``train.py`` with
``train.ema > 0`` wraps its optimizer by ``src/utils/optim/ema.py``, which starts the average from a copy
of the parameters after the first step and then applies ``ema -= (1 - polyak)·(ema - θ)``). The
average is held in the :class:`~ssm.train.state.TrainState` (``state.ema``, a model of the same
structure) from initialisation, where it equals ``θ_0``, so a validation before the first step sees
the initial weights, as the official loop (which swaps in the EMA only once the optimizer has
stepped) does. Only floating (and complex) arrays are averaged; other arrays follow the model. The
BatchNorm statistics (``model_state``) are not parameters and are not averaged, as in the official
code, which averages only the optimizer's parameters.

The update is Optax's Polyak averaging, :func:`optax.incremental_update`, with step size
``1 - d`` (``1`` at the first step).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import optax
from jaxtyping import Array


def ema_update(ema: Any, model: Any, decay: float, step: Array) -> Any:
    """The average after the optimizer step that took the model from step count ``step`` to
    ``step + 1`` (``model`` holds the new weights θ_{step+1}); ``ema`` has ``model``'s structure."""
    # Python-float branches keep the step size weakly typed: float32 weights stay float32 under x64.
    step_size = jnp.where(step == 0, 1.0, 1.0 - decay)
    new, rest = eqx.partition(model, eqx.is_inexact_array)
    old = eqx.filter(ema, eqx.is_inexact_array)
    return eqx.combine(optax.incremental_update(new, old, step_size), rest)
