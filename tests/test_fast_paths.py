"""Fast paths tested equal, in float64, to the computation they replace (outputs, gradients, state)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ssm.model import Norm


def _vmapped(fn):
    return eqx.filter_vmap(fn, in_axes=(0, None), out_axes=(0, None), axis_name="batch")


def test_batchnorm_in_time_major_layout_equals_equinox_batchnorm_on_the_transpose():
    # Norm("batch") normalises (L, H) directly; the reference is Equinox's BatchNorm on (H, L), as the model did
    # before. Same outputs, input and parameter gradients, running statistics and inference outputs.
    B, L, H, m = 4, 6, 3, 0.8
    norm, state = eqx.nn.make_with_state(Norm)("batch", H, m)
    norm = eqx.tree_at(lambda n: (n.bn.weight, n.bn.bias), norm,
                       (jnp.array([1.5, -0.5, 2.0]), jnp.array([0.1, 0.2, -0.3])))
    bn = norm.bn
    x1 = jax.random.normal(jax.random.PRNGKey(0), (B, L, H)) * jnp.array([1.0, 4.0, 0.2]) + jnp.array([0.0, 3.0, -1.0])
    x2 = 2.0 * jax.random.normal(jax.random.PRNGKey(1), (B, L, H)) + 0.5
    w = jax.random.normal(jax.random.PRNGKey(2), (B, L, H))

    def new(n, x, s):
        return n(x, s)

    def ref(n, x, s):
        y, s = n.bn(x.T, s)
        return y.T, s

    def loss(nx, f, s):
        n, x = nx
        y, s = _vmapped(lambda x, s: f(n, x, s))(x, s)
        return jnp.sum(y * w), (y, s)

    grad = eqx.filter_value_and_grad(loss, has_aux=True)

    s_new = s_ref = state
    for x in (x1, x2):
        (_, (y_new, s_new2)), g_new = grad((norm, x), new, s_new)
        (_, (y_ref, s_ref2)), g_ref = grad((norm, x), ref, s_ref)
        assert y_new.dtype == jnp.float64
        np.testing.assert_allclose(y_new, y_ref, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(g_new[1], g_ref[1], rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(g_new[0].bn.weight, g_ref[0].bn.weight, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(g_new[0].bn.bias, g_ref[0].bn.bias, rtol=1e-11, atol=1e-12)
        assert int(s_new2.get(bn.batch_counter)) == int(s_ref2.get(bn.batch_counter))
        for a, b in zip(s_new2.get(bn.batch_state_index), s_ref2.get(bn.batch_state_index)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
        s_new, s_ref = s_new2, s_ref2
    assert int(s_new.get(bn.batch_counter)) == 2
    # Inference: the running statistics, no batch axis needed.
    inf = eqx.nn.inference_mode(norm)
    x3 = jax.random.normal(jax.random.PRNGKey(3), (L, H))
    np.testing.assert_allclose(inf(x3, s_new)[0], ref(inf, x3, s_ref)[0], rtol=1e-13, atol=1e-13)


def test_batchnorm_keeps_a_low_precision_input_dtype():
    norm, state = eqx.nn.make_with_state(Norm)("batch", 3, 0.9)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3)).astype(jnp.bfloat16)
    y, state = _vmapped(norm)(x, state)
    assert y.dtype == jnp.bfloat16
    assert state.get(norm.bn.batch_state_index)[0].dtype == norm.bn.weight.dtype
