"""FFN, SSM mixer, norms and residual blocks against formulas written out in numpy; [S4, S4, FFN] stacks: step ==
prefill == forward in float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

import ssm
import ssm.nn as nn

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)


def gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def layernorm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def test_ffn_formula_and_step():
    ffn = nn.FFN(4, expand=3, key=KEY)
    x = RNG.standard_normal((5, 4))
    W1, b1 = np.asarray(ffn.linear1.weight), np.asarray(ffn.linear1.bias)
    W2, b2 = np.asarray(ffn.linear2.weight), np.asarray(ffn.linear2.bias)
    assert W1.shape == (12, 4) and W2.shape == (4, 12)
    ref = gelu(x @ W1.T + b1) @ W2.T + b2
    np.testing.assert_allclose(ffn(jnp.asarray(x)), ref, rtol=1e-13)
    y, s = ffn.step(jnp.asarray(x[2]), ffn.init_state())
    np.testing.assert_allclose(y, ref[2], rtol=1e-13)


def test_dropout_statistics():
    x = jnp.ones((20000,))
    y = np.asarray(nn.dropout.dropout(x, 0.25, KEY))
    assert set(np.unique(y)) <= {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.02
    assert np.array_equal(np.asarray(nn.dropout.dropout(x, 0.25, None)), np.ones(20000))
    ffn = nn.FFN(4, dropout=0.5, key=KEY)
    u = jnp.asarray(RNG.standard_normal((6, 4)))
    assert not np.allclose(ffn(u, key=KEY), ffn(u))


@pytest.mark.parametrize("final_act", ["glu", "id", None])
def test_mixer_head(final_act):
    layer = ssm.S4D(4, 4, key=KEY)
    mixer = nn.SSMMixer(layer, final_act=final_act, key=jax.random.key(1))
    x = jnp.asarray(RNG.standard_normal((8, 4)))
    z = gelu(np.asarray(layer(x)))
    if final_act is None:
        ref = z
    else:
        z = z @ np.asarray(mixer.out.weight).T + np.asarray(mixer.out.bias)
        ref = z[:, :4] / (1 + np.exp(-z[:, 4:])) if final_act == "glu" else z
    np.testing.assert_allclose(mixer(x), ref, rtol=1e-12, atol=1e-14)


def test_norms():
    x = RNG.standard_normal((3, 5))
    ln = nn.LayerNorm(5)
    ln = eqx.tree_at(lambda m: (m.weight, m.bias), ln, (jnp.arange(5.0), jnp.ones(5)))
    np.testing.assert_allclose(ln(jnp.asarray(x)), layernorm(x, np.arange(5.0), 1.0), rtol=1e-13)
    sn = eqx.tree_at(lambda m: (m.m, m.s), nn.ScalarLayerNorm(5), (jnp.array([0.3]), jnp.array([2.0])))
    mu, sd = x.mean(-1, keepdims=True), x.std(-1, keepdims=True)
    np.testing.assert_allclose(sn(jnp.asarray(x)), 2.0 / sd * (x - mu + 0.3), rtol=1e-13)


@pytest.mark.parametrize("prenorm", [True, False])
def test_residual_formula(prenorm):
    ffn = nn.FFN(4, key=KEY)
    block = nn.Residual(ffn, 4, "layer", prenorm=prenorm)
    x = RNG.standard_normal((6, 4))
    f = lambda v: np.asarray(ffn(jnp.asarray(v)))  # noqa: E731
    ref = x + f(layernorm(x, 1.0, 0.0)) if prenorm else layernorm(x + f(x), 1.0, 0.0)
    np.testing.assert_allclose(block(jnp.asarray(x)), ref, rtol=1e-12)


def test_s4_s4_ffn_stack_step_prefill_forward():
    L, H = 24, 4
    s4 = nn.ssm_sublayer(ssm.S4, d_state=4, l_max=L, n_ssm=1)
    stack = nn.residual_stack(H, [s4, s4, nn.ffn_sublayer(expand=4)], 2, dropout=0.25, key=KEY)
    assert stack.blocks[0].dropout == 0.25
    assert len(stack.blocks) == 6
    assert [type(b.sublayer).__name__ for b in stack.blocks] == ["SSMMixer", "SSMMixer", "FFN"] * 2
    assert stack.blocks[2].sublayer.linear1.weight.shape == (16, 4)
    x = jnp.asarray(RNG.standard_normal((L, H)))
    y = eqx.filter_jit(lambda m, x: m(x))(stack, x)
    step = eqx.filter_jit(lambda m, x, s: m.step(x, s))
    state, ys = stack.init_state(), []
    for t in range(L):
        y_t, state = step(stack, x[t], state)
        ys.append(y_t)
    np.testing.assert_allclose(np.stack(ys), y, rtol=1e-10, atol=1e-12)
    prefill = eqx.filter_jit(lambda m, x, s=None: m.prefill(x, s))
    yp, sp = prefill(stack, x[:12])
    np.testing.assert_allclose(yp, y[:12], rtol=1e-10, atol=1e-12)
    yq, _ = prefill(stack, x[12:], sp)
    np.testing.assert_allclose(yq, y[12:], rtol=1e-10, atol=1e-12)
