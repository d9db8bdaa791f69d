"""The residual blocks' LayerNorm (``ssm.model._layer_norm``, a hand-written gradient) against Equinox's LayerNorm
differentiated by JAX, in float64: outputs and gradients w.r.t. the input, weight and bias, vmapped over a batch as in
the train step."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ssm.model import Norm


def test_layer_norm_and_its_gradients_equal_equinox_layer_norm_float64():
    B, L, H = 3, 5, 7
    norm, state = eqx.nn.make_with_state(Norm)("layer", H, 0.9)
    ln = eqx.tree_at(lambda n: (n.weight, n.bias), norm.ln,
                     (jax.random.normal(jax.random.PRNGKey(5), (H,)), jax.random.normal(jax.random.PRNGKey(6), (H,))))
    norm = eqx.tree_at(lambda n: n.ln, norm, ln)
    # channels on different scales and offsets, as a residual stream has
    x = jax.random.normal(jax.random.PRNGKey(0), (B, L, H)) * jnp.linspace(0.1, 10.0, H) + jnp.linspace(-3.0, 3.0, H)
    w = jax.random.normal(jax.random.PRNGKey(1), (B, L, H))

    def ours(x, ln):
        n = eqx.tree_at(lambda m: m.ln, norm, ln)
        return jnp.sum(jax.vmap(lambda xi: n(xi, state)[0])(x) * w)

    def reference(x, ln):  # Equinox's LayerNorm per time step, differentiated by JAX
        return jnp.sum(jax.vmap(jax.vmap(ln))(x) * w)

    params, static = eqx.partition(ln, eqx.is_array)
    got = jax.value_and_grad(lambda x, p: ours(x, eqx.combine(p, static)), argnums=(0, 1))(x, params)
    want = jax.value_and_grad(lambda x, p: reference(x, eqx.combine(p, static)), argnums=(0, 1))(x, params)
    assert got[0].dtype == jnp.float64
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-11, atol=1e-12)  # d/dx
    np.testing.assert_allclose(got[1][1].weight, want[1][1].weight, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(got[1][1].bias, want[1][1].bias, rtol=1e-11, atol=1e-12)
    out = jax.vmap(lambda xi: norm(xi, state)[0])(x)
    np.testing.assert_allclose(out, jax.vmap(jax.vmap(norm.ln))(x), rtol=1e-13, atol=1e-13)
