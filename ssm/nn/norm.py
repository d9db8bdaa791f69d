"""Per-time-step normalisations used by the residual blocks.

``LayerNorm``: ``torch.nn.LayerNorm(d)`` (``eps = 1e-5``, per-channel scale and shift, ``2d`` parameters).
``ScalarLayerNorm``: state-spaces/s4 ``src/models/nn/normalization.py`` ``TransposedLN(d, scalar=True)``, the norm
that ``Normalization(..., transposed=True, _name_='layer')`` builds, hence the one in every residual block of the
configured SaShiMi (``configs/model/sashimi.yaml``: ``transposed: True``, ``norm: layer``)::

    y = (s / σ(x)) (x - μ(x) + m),     μ, σ: mean and (biased) standard deviation over the channels

with two scalar parameters ``m`` (init 0) and ``s`` (init 1) and, as there, no ε.

Both compute their statistics in at least float32 and return the input's dtype (mixed precision, :mod:`ssm.precision`).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ssm.precision import widen


class LayerNorm(eqx.Module):
    weight: Float[Array, " H"]
    bias: Float[Array, " H"]
    eps: float = eqx.field(static=True)

    def __init__(self, d: int, eps: float = 1e-5, dtype=None):
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        self.weight = jnp.ones((d,), dtype)
        self.bias = jnp.zeros((d,), dtype)
        self.eps = eps

    def __call__(self, x: Float[Array, "*L H"]) -> Float[Array, "*L H"]:
        z = widen(x)
        mu = jnp.mean(z, axis=-1, keepdims=True)
        var = jnp.mean((z - mu) ** 2, axis=-1, keepdims=True)
        return ((z - mu) / jnp.sqrt(var + self.eps) * self.weight + self.bias).astype(x.dtype)


class ScalarLayerNorm(eqx.Module):
    m: Float[Array, " 1"]
    s: Float[Array, " 1"]

    def __init__(self, d: int, dtype=None):
        del d  # two scalars whatever the width, as TransposedLN(scalar=True)
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        self.m = jnp.zeros((1,), dtype)
        self.s = jnp.ones((1,), dtype)

    def __call__(self, x: Float[Array, "*L H"]) -> Float[Array, "*L H"]:
        z = widen(x)
        mu = jnp.mean(z, axis=-1, keepdims=True)
        sd = jnp.sqrt(jnp.mean((z - mu) ** 2, axis=-1, keepdims=True))
        return ((self.s / sd) * (z - mu + self.m)).astype(x.dtype)


class Identity(eqx.Module):
    def __call__(self, x: Float[Array, "*L H"]) -> Float[Array, "*L H"]:
        return x


def make_norm(kind: str, d: int, dtype=None) -> LayerNorm | ScalarLayerNorm | Identity:
    """``"layer"`` (LayerNorm), ``"scalar"`` (ScalarLayerNorm) or ``"none"``."""
    if kind == "layer":
        return LayerNorm(d, dtype=dtype)
    if kind == "scalar":
        return ScalarLayerNorm(d, dtype=dtype)
    if kind == "none":
        return Identity()
    raise ValueError(f"norm must be 'layer', 'scalar' or 'none', got {kind!r}.")
