"""Pooling layers against naive loops written from their definitions (S4Torch avg_k = nn.AvgPool1d(k) over time;
state-spaces/s4 DownPool/UpPool with weight normalisation), their streaming steps, and S4Torch's pooled backbone."""

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


def test_s4torch_schedule_and_pooled_backbone():
    # S4Torch smnist: l_max 784, 6 blocks, avg_2: 784 -> 392 -> ... -> 12.
    sched = nn.s4torch_schedule(6, 784, 2)
    assert [l for l, _ in sched] == [784, 392, 196, 98, 49, 24, 12] and all(ok for _, ok in sched[:6])
    assert [ok for _, ok in nn.s4torch_schedule(4, 8, 2)] == [True, False, False, False, False]
    bb = nn.PooledBackbone(4, 2, 8, layer_cls=ssm.S4D, layer_kwargs=dict(d_state=4), key=KEY)
    assert [p is not None for p in bb.pools] == [True, False]  # 8 -> 4, then max(2, 2) is not > 2
    x = RNG.standard_normal((8, 4))
    # Stage by hand: post-norm LayerNorm of x + Linear(GELU(SSM(x))), then the mean of step pairs.
    def stage(block, v):
        mix = block.sublayer
        z = np.asarray(mix.layer(jnp.asarray(v)))
        z = 0.5 * z * (1 + erf(z / np.sqrt(2)))
        y = v + z @ np.asarray(mix.out.weight).T + np.asarray(mix.out.bias)
        mu, var = y.mean(-1, keepdims=True), y.var(-1, keepdims=True)
        return (y - mu) / np.sqrt(var + 1e-5)

    ref = stage(bb.blocks[0], x)
    ref = ref.reshape(4, 2, 4).mean(1)
    ref = stage(bb.blocks[1], ref)
    np.testing.assert_allclose(bb(jnp.asarray(x)), ref, rtol=1e-12, atol=1e-13)
