"""LayerNorm over the channels of every time step with its gradient written out, shared by the residual model
(:mod:`ssm.model`) and :class:`ssm.nn.LayerNorm`.

``layer_norm(x (L, H), weight, bias, eps)`` is ``jax.vmap(eqx.nn.LayerNorm)``'s arithmetic in the same order; its
``jax.custom_vjp`` gives the input's gradient in one pass (``dx = r (g w - mean(g w) - x̂ mean(g w x̂))``,
``x̂ = (x - mean) r``, ``r = 1/sqrt(var + eps)``) and the parameters' gradients summed over axis 0, instead of the
transpose of the forward's several reductions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def _value(
    x: Float[Array, "L H"], weight: Float[Array, " H"], bias: Float[Array, " H"], eps: float
) -> Float[Array, "L H"]:
    """``w * (x - mean) / sqrt(var + eps) + b`` over the last axis."""
    return _fwd(x, weight, bias, eps)[0]


def _fwd(x, weight, bias, eps):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    rstd = jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)
    xhat = centred * rstd
    return weight * xhat + bias, (xhat, rstd, weight)


def _bwd(eps, residuals, g):
    xhat, rstd, weight = residuals
    gw = g * weight
    dx = rstd * (gw - jnp.mean(gw, axis=-1, keepdims=True) - xhat * jnp.mean(gw * xhat, axis=-1, keepdims=True))
    return dx, jnp.sum(g * xhat, axis=0), jnp.sum(g, axis=0)


layer_norm = jax.custom_vjp(_value, nondiff_argnums=(3,))
layer_norm.defvjp(_fwd, _bwd)
