"""Initializers shared by the layers: the log-uniform step size, the complex normal, the parameter dtype.

Every reference initializes ``log Δ ~ U[log dt_min, log dt_max]`` (S4, Gu et al. 2022 §3; S4D; DSS; S5; HOPE), and
draws complex output matrices with independent real and imaginary parts of variance 1/2 (so ``E|C|² = 1``).
Draws happen in the default float dtype and are then cast to the layer's ``dtype``, so a float32 layer built under
``jax_enable_x64`` holds exactly the float32 rounding of the float64 layer's parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray


def resolve_dtype(dtype: Any) -> jnp.dtype:
    """The parameter dtype: ``None`` -> JAX's default float (float32, or float64 under ``jax_enable_x64``)."""
    resolved = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(resolved, jnp.floating):
        raise ValueError(f"dtype must be a real floating dtype (parameters are stored as real pairs), got {resolved}.")
    return resolved


def init_log_dt(key: PRNGKeyArray, shape: tuple[int, ...], dt_min: float, dt_max: float) -> Float[Array, "..."]:
    """``log Δ ~ Uniform[log dt_min, log dt_max]`` (every reference's Δ initialization)."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"Need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}.")
    return jax.random.uniform(key, shape, minval=np.log(dt_min), maxval=np.log(dt_max))


def complex_normal(key: PRNGKeyArray, shape: tuple[int, ...], *, parts_axis: int = 0) -> tuple[Array, Array]:
    """Real and imaginary parts of a standard complex normal of ``shape`` (each part has variance 1/2).

    The two parts are one normal draw with an extra axis of size 2 at ``parts_axis`` (0: ``(2, *shape)``, the S4/S4D
    layout; -1: ``(*shape, 2)``, the S5 layout), so a given key gives the same numbers as the reference layouts."""
    full = (2,) + shape if parts_axis == 0 else shape + (2,)
    z = jax.random.normal(key, full) * np.sqrt(0.5)
    z = jnp.moveaxis(z, parts_axis, 0)
    return z[0], z[1]
