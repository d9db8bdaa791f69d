"""Linear maps of the blocks: PyTorch's ``nn.Linear`` initialisation (``U(±1/√d_in)`` for weight and bias, which
``eqx.nn.Linear`` shares) and the weight-normalised variant the SaShiMi pooling layers use.

``WeightNormLinear``: ``torch.nn.utils.weight_norm`` (``dim=0``) of such a linear map, as state-spaces/s4
``src/models/nn/linear.py`` ``LinearActivation(..., weight_norm=True)`` builds it for ``DownPool``/``UpPool``::

    W = g ⊙ v / ‖v‖_row,   y = W x + b,    g (d_out,), v (d_out, d_in), b (d_out,)

with ``g`` initialised to the row norms of ``v`` so that ``W`` starts as the plain initialisation.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray


class WeightNormLinear(eqx.Module):
    v: Float[Array, "O I"]
    g: Float[Array, " O"]
    bias: Float[Array, " O"]

    def __init__(self, d_in: int, d_out: int, dtype=None, *, key: PRNGKeyArray):
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        kw, kb = jax.random.split(key)
        bound = 1.0 / np.sqrt(d_in)
        self.v = jax.random.uniform(kw, (d_out, d_in), dtype, -bound, bound)
        self.bias = jax.random.uniform(kb, (d_out,), dtype, -bound, bound)
        self.g = jnp.linalg.norm(self.v, axis=1)

    @property
    def weight(self) -> Float[Array, "O I"]:
        return self.g[:, None] * self.v / jnp.linalg.norm(self.v, axis=1, keepdims=True)

    def __call__(self, x: Float[Array, "*L I"]) -> Float[Array, "*L O"]:
        return x @ self.weight.T + self.bias


class Linear(eqx.Module):
    """``nn.Linear`` acting on the last axis of any shape (``eqx.nn.Linear`` takes one vector)."""

    weight: Float[Array, "O I"]
    bias: Float[Array, " O"]

    def __init__(self, d_in: int, d_out: int, dtype=None, *, key: PRNGKeyArray):
        lin = eqx.nn.Linear(d_in, d_out, key=key, dtype=dtype)
        self.weight, self.bias = lin.weight, lin.bias

    def __call__(self, x: Float[Array, "*L I"]) -> Float[Array, "*L O"]:
        return x @ self.weight.T + self.bias


def make_linear(
    d_in: int, d_out: int, *, weight_norm: bool, dtype=None, key: PRNGKeyArray
) -> Linear | WeightNormLinear:
    return (WeightNormLinear if weight_norm else Linear)(d_in, d_out, dtype, key=key)
