"""The blocked log-sum-exp of the adaptive softmax (``ssm.nn.logsumexp``, a hand-written gradient) against the whole
logits matrix and ``jax.grad`` of the plain formula written here, in float64: values and gradients w.r.t. ``x``,
``W`` and ``b``, for a cluster that does not divide into the blocks, targets inside and outside the cluster."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm.nn.logsumexp import blocked_stats


def plain(x, W, b, local):
    z = x @ W.T + b
    lse = jnp.log(jnp.sum(jnp.exp(z - jnp.max(z, axis=-1, keepdims=True)), axis=-1)) + jnp.max(z, axis=-1)
    zt = jnp.where(local >= 0, z[jnp.arange(x.shape[0]), jnp.clip(local, 0)], 0.0)
    return lse, jnp.max(z, axis=-1), zt


@pytest.mark.parametrize("n, chunk", [(23, 5), (23, 23), (24, 8), (7, 2)])  # 5 blocks of 5 (2 padding rows), ...
def test_blocked_stats_and_gradients_equal_the_whole_logits_float64(n, chunk):
    L, d = 9, 4
    ks = jax.random.split(jax.random.PRNGKey(n + chunk), 6)
    x = 3.0 * jax.random.normal(ks[0], (L, d))
    W = jax.random.normal(ks[1], (n, d))
    b = jax.random.normal(ks[2], (n,))
    local = jax.random.randint(ks[3], (L,), -1, n).at[0].set(-1).at[1].set(n - 1).at[2].set(0)
    u, v = jax.random.normal(ks[4], (2, L))

    def loss(f):
        def fn(x, W, b):
            lse, _, zt = f(x, W, b, local)
            return jnp.sum(u * lse + v * zt)
        return fn

    got_stats = jax.jit(blocked_stats, static_argnums=4)(x, W, b, local, chunk)
    for g, w in zip(got_stats, plain(x, W, b, local)):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)
    got = jax.jit(jax.grad(loss(lambda *a: blocked_stats(*a, chunk)), argnums=(0, 1, 2)))(x, W, b)
    want = jax.grad(loss(plain), argnums=(0, 1, 2))(x, W, b)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == jnp.float64
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)
    # the maximum is for accuracy only: no gradient when blocked
    if n > chunk:
        gmax = jax.grad(lambda x: jnp.sum(blocked_stats(x, W, b, local, chunk)[1]))(x)
        np.testing.assert_array_equal(gmax, 0.0)
