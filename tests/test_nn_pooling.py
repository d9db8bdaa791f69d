"""Pooling layers against naive loops written from their definitions (S4Torch avg_k = nn.AvgPool1d(k) over time;
state-spaces/s4 DownPool/UpPool with weight normalisation), and their streaming steps."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm.nn as nn

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)


def effective_weight(lin):
    v, g = np.asarray(lin.v), np.asarray(lin.g)
    return g[:, None] * v / np.sqrt((v**2).sum(axis=1, keepdims=True))


def test_avgpool_matches_avgpool1d_and_steps():
    x = RNG.standard_normal((7, 3))
    pool = nn.AvgPool(3, 2)
    y = np.asarray(pool(jnp.asarray(x)))
    ref = np.array([[(x[2 * j, h] + x[2 * j + 1, h]) / 2 for h in range(3)] for j in range(3)])  # last step dropped
    np.testing.assert_allclose(y, ref, rtol=1e-14)
    state, out = pool.init_state(), []
    for t in range(7):
        y_t, state = pool.step(jnp.asarray(x[t]), state)
        if int(state["count"]) == 0:
            out.append(y_t)
    np.testing.assert_allclose(np.stack(out), ref, rtol=1e-14)


@pytest.mark.parametrize("weight_norm", [True, False])
def test_downpool_definition(weight_norm):
    H, e, p, L = 3, 2, 4, 12
    pool = nn.DownPool(H, e, p, weight_norm, key=KEY)
    x = RNG.standard_normal((L, H))
    W = effective_weight(pool.linear) if weight_norm else np.asarray(pool.linear.weight)
    b = np.asarray(pool.linear.bias)
    ref = np.zeros((L // p, e * H))
    for j in range(L // p):
        v = np.array([x[j * p + s, h] for h in range(H) for s in range(p)])  # feature h·p + s
        ref[j] = W @ v + b
    np.testing.assert_allclose(pool(jnp.asarray(x)), ref, rtol=1e-13)
    state = pool.init_state()
    for t in range(L):
        y_t, state = pool.step(jnp.asarray(x[t]), state)
        if t % p == p - 1:
            np.testing.assert_allclose(y_t, ref[t // p], rtol=1e-13)
            assert int(state["count"]) == 0
    with pytest.raises(ValueError, match="multiple of the pooling stride"):
        pool(jnp.zeros((10, H)))


def test_weight_norm_starts_at_plain_init():
    lin = nn.DownPool(3, 2, 4, True, key=KEY).linear
    np.testing.assert_allclose(effective_weight(lin), np.asarray(lin.v), rtol=1e-14)


@pytest.mark.parametrize("weight_norm", [True, False])
def test_uppool_definition_shift_and_step(weight_norm):
    Hin, e, p, Lc = 6, 2, 4, 3
    Hout = Hin // e
    pool = nn.UpPool(Hin, e, p, weight_norm, key=KEY)
    z = RNG.standard_normal((Lc, Hin))
    W = effective_weight(pool.linear) if weight_norm else np.asarray(pool.linear.weight)
    b = np.asarray(pool.linear.bias)
    ref = np.zeros((Lc * p, Hout))
    for t in range(Lc * p):
        j = t // p
        if j == 0:
            continue  # causal shift: the first window sees nothing
        full = W @ z[j - 1] + b
        ref[t] = [full[h * p + t % p] for h in range(Hout)]
    np.testing.assert_allclose(pool(jnp.asarray(z)), ref, rtol=1e-13, atol=1e-15)
    state = pool.init_state()
    for t in range(Lc * p):
        # The coarse input of window j is available at that window's last step (read only then).
        zin = jnp.asarray(z[t // p]) if t % p == p - 1 else jnp.full((Hin,), jnp.nan)
        y_t, state = pool.step(zin, state)
        np.testing.assert_allclose(y_t, ref[t], rtol=1e-13, atol=1e-15)


def test_down_up_is_causal():
    down, up = nn.DownPool(2, 2, 4, key=KEY), nn.UpPool(4, 2, 4, key=jax.random.key(1))
    f = eqx.filter_jit(lambda x: up(down(x)))
    x = jnp.asarray(RNG.standard_normal((16, 2)))
    y = f(x)
    for t in range(16):
        y2 = f(x.at[t].add(1.0))
        changed = np.abs(np.asarray(y2 - y)).max(axis=1) > 0
        w = t // 4 + 1  # only the next window sees window t // 4 (one coarse step of delay, no later ones here)
        expected = (np.arange(16) // 4) == w
        np.testing.assert_array_equal(changed, expected)
