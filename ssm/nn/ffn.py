"""Position-wise feed-forward sub-layer, as state-spaces/s4 ``src/models/sequence/modules/ffn.py`` ``FFN``::

    FFN(x) = W₂ drop(act(W₁ x + b₁)) + b₂,    W₁: H -> expand·H,  W₂: expand·H -> H

Its recurrent mode is the same pointwise map (no state); it has no sampling rate (``rate`` is ignored).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ssm.layers.base import Rate
from ssm.nn.activations import activation as get_activation
from ssm.nn.base import AbstractBlock
from ssm.nn.dropout import dropout as apply_dropout
from ssm.nn.linear import Linear


class FFN(AbstractBlock):
    linear1: Linear
    linear2: Linear
    d_model: int = eqx.field(static=True)
    expand: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    dropout: float = eqx.field(static=True)

    def __init__(
        self, d_model: int, expand: int = 2, activation: str = "gelu", dropout: float = 0.0, dtype=None, *,
        key: PRNGKeyArray,
    ):
        get_activation(activation)  # fail at construction on an unknown name
        k1, k2 = jax.random.split(key)
        d_inner = int(expand * d_model)
        self.linear1 = Linear(d_model, d_inner, dtype, key=k1)
        self.linear2 = Linear(d_inner, d_model, dtype, key=k2)
        self.d_model, self.expand, self.activation, self.dropout = d_model, expand, activation, dropout

    def __call__(
        self, x: Float[Array, "L H"], *, key: PRNGKeyArray | None = None, rate: Rate = 1.0
    ) -> Float[Array, "L H"]:
        z = get_activation(self.activation)(self.linear1(x))
        return self.linear2(apply_dropout(z, self.dropout, key))

    def init_state(self, *, rate: Rate = 1.0) -> PyTree[Array]:
        return jnp.zeros((0,))

    def step(
        self, x_t: Float[Array, " H"], state: PyTree[Array], *, rate: Rate = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        return self.linear2(get_activation(self.activation)(self.linear1(x_t))), state

    def prefill(
        self, x: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: Rate = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        return self(x), self.init_state() if state is None else state


def ffn_sublayer(expand: int = 2, activation: str = "gelu", dropout: float = 0.0, dtype=None):
    """A maker ``make(d_model, *, key) -> FFN`` for :func:`ssm.nn.residual_stack` patterns."""

    def make(d_model: int, *, key: PRNGKeyArray) -> FFN:
        return FFN(d_model, expand, activation, dropout, dtype, key=key)

    return make
