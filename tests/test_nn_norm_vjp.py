"""The ``ssm.nn`` norms' hand-written gradients against JAX's gradient of the plain formulas written here, in float64:
outputs and gradients w.r.t. the input and both parameters, vmapped over a batch as in the train step, for a whole
sequence ``(L, H)`` and for one step ``(H,)``."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm.nn as nn


def plain_scalar_layer_norm(x, m, s):  # TransposedLN(scalar=True): s (x - mean + m) / std, no epsilon
    mu = jnp.mean(x, axis=-1, keepdims=True)
    sd = jnp.sqrt(jnp.mean((x - mu) ** 2, axis=-1, keepdims=True))
    return s / sd * (x - mu + m)


def plain_layer_norm(x, w, b, eps):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + eps) * w + b


def _inputs(shape):
    H = shape[-1]
    # channels on different scales and offsets, as a residual stream has
    x = jax.random.normal(jax.random.PRNGKey(0), shape) * jnp.linspace(0.1, 10.0, H) + jnp.linspace(-3.0, 3.0, H)
    return x, jax.random.normal(jax.random.PRNGKey(1), shape)


def _compare(norm, plain, params, shape):
    x, w = _inputs(shape)
    static = eqx.partition(norm, eqx.is_array)[1]

    def ours(x, p):
        return jnp.sum(jax.vmap(eqx.combine(p, static))(x) * w)

    def reference(x, p):
        return jnp.sum(jax.vmap(lambda xi: plain(xi, p))(x) * w)

    p = eqx.filter(norm, eqx.is_array)
    got = jax.jit(jax.value_and_grad(ours, argnums=(0, 1)))(x, p)
    want = jax.value_and_grad(reference, argnums=(0, 1))(x, p)
    assert got[0].dtype == jnp.float64
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-10, atol=1e-12)  # d/dx
    for g, r in zip(jax.tree_util.tree_leaves(got[1][1]), jax.tree_util.tree_leaves(want[1][1])):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
    out = jax.vmap(eqx.combine(p, static))(x)
    np.testing.assert_allclose(out, jax.vmap(lambda xi: plain(xi, p))(x), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("shape", [(3, 6, 7), (4, 5)])  # (batch, L, H) and one step (batch, H)
def test_scalar_layer_norm_gradient_float64(shape):
    norm = eqx.tree_at(lambda n: (n.m, n.s), nn.ScalarLayerNorm(shape[-1]), (jnp.array([0.7]), jnp.array([-1.3])))
    _compare(norm, lambda x, p: plain_scalar_layer_norm(x, p.m, p.s), norm, shape)


@pytest.mark.parametrize("shape", [(3, 6, 7), (4, 5)])
def test_layer_norm_gradient_float64(shape):
    H = shape[-1]
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), nn.LayerNorm(H),
                       (jax.random.normal(jax.random.PRNGKey(5), (H,)), jax.random.normal(jax.random.PRNGKey(6), (H,))))
    _compare(norm, lambda x, p: plain_layer_norm(x, p.weight, p.bias, 1e-5), norm, shape)


def test_norms_keep_a_narrow_input_dtype():
    x = jax.random.normal(jax.random.PRNGKey(2), (6, 8)).astype(jnp.bfloat16)
    for norm in (nn.ScalarLayerNorm(8, jnp.float32), nn.LayerNorm(8, dtype=jnp.float32)):
        y, g = jax.value_and_grad(lambda x: jnp.sum(norm(x).astype(jnp.float32) ** 2))(x)
        assert g.dtype == jnp.bfloat16 and norm(x).dtype == jnp.bfloat16
