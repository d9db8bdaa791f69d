"""Per-time-step normalisations used by the residual blocks.

``LayerNorm``: ``torch.nn.LayerNorm(d)`` (``eps = 1e-5``, per-channel scale and shift, ``2d`` parameters).
``ScalarLayerNorm``: state-spaces/s4 ``src/models/nn/normalization.py`` ``TransposedLN(d, scalar=True)``, the norm
that ``Normalization(..., transposed=True, _name_='layer')`` builds, hence the one in every residual block of the
configured SaShiMi (``configs/model/sashimi.yaml``: ``transposed: True``, ``norm: layer``)::

    y = (s / σ(x)) (x - μ(x) + m),     μ, σ: mean and (biased) standard deviation over the channels

with two scalar parameters ``m`` (init 0) and ``s`` (init 1) and, as there, no ε.

Both have their gradient written out (``jax.custom_vjp``), one fused pass over ``(L, H)`` instead of the transpose of
the forward's reductions: ``LayerNorm`` shares the residual model's (:mod:`ssm.layer_norm`); for ``ScalarLayerNorm``,
with ``r = 1/σ``, ``x̂ = (x - μ) r`` and ``ŷ = y / s = x̂ + m r``, the cotangent ``g`` of ``y`` gives::

    ∂x = s r (g - mean(g) - x̂ mean(g ŷ)),    ∂s = Σ g ŷ,    ∂m = s Σ g r

(``∂r/∂x = -r² x̂ / H`` carries the ``m r`` term into ``mean(g ŷ)``).

Both compute their statistics in at least float32 and return the input's dtype (mixed precision, :mod:`ssm.precision`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ssm.layer_norm import layer_norm
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
        z = widen(x).reshape(-1, x.shape[-1])  # the shared VJP reduces the parameters' gradients over axis 0
        return layer_norm(z, self.weight, self.bias, self.eps).reshape(x.shape).astype(x.dtype)


class ScalarLayerNorm(eqx.Module):
    m: Float[Array, " 1"]
    s: Float[Array, " 1"]

    def __init__(self, d: int, dtype=None):
        del d  # two scalars whatever the width, as TransposedLN(scalar=True)
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        self.m = jnp.zeros((1,), dtype)
        self.s = jnp.ones((1,), dtype)

    def __call__(self, x: Float[Array, "*L H"]) -> Float[Array, "*L H"]:
        return _scalar_layer_norm(widen(x), self.m, self.s).astype(x.dtype)


def _scalar_layer_norm_fwd(z, m, s):
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    r = jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True))
    xhat = centred * r
    return s * (xhat + m * r), (xhat, r, m, s)


def _scalar_layer_norm_bwd(residuals, g):
    xhat, r, m, s = residuals
    yhat = xhat + m * r
    dz = (s * r) * (g - jnp.mean(g, axis=-1, keepdims=True) - xhat * jnp.mean(g * yhat, axis=-1, keepdims=True))
    return dz, (s * jnp.sum(g * r)).reshape(m.shape), jnp.sum(g * yhat).reshape(s.shape)


def _scalar_layer_norm_value(z: Float[Array, "*L H"], m: Float[Array, " 1"], s: Float[Array, " 1"]
                             ) -> Float[Array, "*L H"]:
    """``s (z - μ + m) / σ`` over the last axis (the module docstring has its gradient)."""
    return _scalar_layer_norm_fwd(z, m, s)[0]


_scalar_layer_norm = jax.custom_vjp(_scalar_layer_norm_value)
_scalar_layer_norm.defvjp(_scalar_layer_norm_fwd, _scalar_layer_norm_bwd)


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
