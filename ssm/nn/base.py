"""The streaming contract of the composable blocks in :mod:`ssm.nn`, and a parameter counter.

A block maps ONE example ``(L, H) -> (L, H)`` (batch with ``jax.vmap``) and owns its recurrent mode:
``init_state()`` (the state before the first step), ``step(x_t, state) -> (y_t, state)`` and
``prefill(x, state) -> (y, state)`` (equal to ``step`` run over ``x``). Dropout acts only in ``__call__``
with a ``key``; the recurrent modes are inference modes.

Every method takes ``rate`` (keyword, default 1), passed to every SSM layer inside (``Δ' = rate·Δ``, a change of
sampling rate, :class:`ssm.AbstractSSMLayer`); blocks without an SSM ignore it. ``init_state``, ``step`` and
``prefill`` of one run must be given the same ``rate``. Backbones with pooling (SaShiMi, the pooled classifier)
refuse ``rate != 1`` (:func:`check_unit_rate`): a pooling layer is a discrete-time map of ``stride`` consecutive
samples (a learned linear map for SaShiMi's ``DownPool``/``UpPool``) with no step size to rescale.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ssm.layers.base import Rate


class AbstractBlock(eqx.Module):
    """A sequence-to-sequence block with a convolutional/parallel mode and an exact recurrent mode."""

    @abc.abstractmethod
    def __call__(
        self, x: Float[Array, "L H"], *, key: PRNGKeyArray | None = None, rate: Rate = 1.0
    ) -> Float[Array, "L H"]:
        """Whole-sequence mode; ``key`` enables dropout (training)."""

    @abc.abstractmethod
    def init_state(self, *, rate: Rate = 1.0) -> PyTree[Array]:
        """The state before the first step."""

    @abc.abstractmethod
    def step(
        self, x_t: Float[Array, " H"], state: PyTree[Array], *, rate: Rate = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        """One step: ``(y_t, new_state)``, exact to ``__call__`` without dropout."""

    @abc.abstractmethod
    def prefill(
        self, x: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: Rate = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        """Outputs over a prefix and the state after it (``init_state()`` if ``state`` is None), equal to
        ``step`` run over ``x``."""


def check_unit_rate(name: str, rate: Any) -> None:
    """A clear error unless ``rate`` is the training rate 1 (backbones with pooling layers, see the module doc)."""
    if not (isinstance(rate, (int, float)) and rate == 1.0):
        raise ValueError(f"{name} runs at its training rate only (got rate={rate}): its pooling layers map a fixed "
                         "number of consecutive samples and have no step size to rescale; run it without --rate")  # fmt: skip


def count_params(model: Any) -> int:
    """Number of scalars in the arrays of ``model``, which may also be the abstract model of
    ``eqx.filter_eval_shape`` (count a full-size model without building it). An array held by two fields counts
    twice, so tied weights are passed from their owner at call time instead (as :mod:`ssm.nn.adaptive` does)."""

    def is_param(x: Any) -> bool:
        return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)

    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(model) if is_param(x))
