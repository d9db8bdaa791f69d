"""``ssm.nn`` dropout masks: Threefry-2x32 bytes against the rounded rate (the bytes themselves are checked against
JAX's Threefry in tests/test_dropout_masks.py), exact scaling, one mask per key (a resumed run draws the same), and
independent masks for the examples of a vmapped block."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

import ssm.nn as nn
from ssm.nn.dropout import dropout


def test_mask_is_threefry_bytes_below_the_rounded_rate():
    # rate 0.3 -> threshold round(76.8) = 77: a position drops where its Threefry byte is < 77; kept values scale by
    # 256/179. The bytes restated here from JAX's own threefry_2x32 (first output words, then the second).
    n, key = 1000, jax.random.PRNGKey(11)
    m = -(-n // 8)
    words = threefry_2x32((key[0], key[1]), jnp.arange(2 * m, dtype=jnp.uint32))
    octets = np.asarray(jax.lax.bitcast_convert_type(words, jnp.uint8)).reshape(-1)[:n]
    x = np.linspace(1.0, 2.0, n)
    y = np.asarray(dropout(jnp.asarray(x), 0.3, key))
    np.testing.assert_array_equal(y == 0, octets < 77)
    np.testing.assert_allclose(y[octets >= 77], x[octets >= 77] * 256 / 179, rtol=1e-15)


@pytest.mark.parametrize("rate, threshold", [(0.25, 64), (0.2, 51), (0.5, 128)])
def test_rate_and_scale(rate, threshold):
    x = jnp.ones((512, 1024), jnp.float32)
    y = np.asarray(dropout(x, rate, jax.random.key(3)))
    assert set(np.unique(y)) == {0.0, np.float32(256 / (256 - threshold))}
    # 0.5 M elements: standard error <= 7.1e-4; the neighbouring thresholds are 3.9e-3 away.
    assert abs((y == 0).mean() - threshold / 256) < 2e-3
    yb = dropout(x.astype(jnp.bfloat16), rate, jax.random.key(3))
    assert yb.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(yb) == 0, y == 0)


def test_same_key_same_mask_and_bad_rate():
    x = jnp.ones((300, 7))
    a, b = dropout(x, 0.4, jax.random.key(5)), jax.jit(dropout, static_argnums=1)(x, 0.4, jax.random.key(5))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # resume: the mask is a function of the key only
    assert not np.array_equal(np.asarray(a), np.asarray(dropout(x, 0.4, jax.random.key(6))))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout(x, 1.0, jax.random.key(5))


def test_examples_draw_independent_masks():
    # An FFN residual block (dropout 1/2 on the branch) vmapped over per-example keys, as the train step calls it.
    # With zero inputs the block's output is the dropped branch FFN(0) (nonzero everywhere): independent masks
    # of rate 1/2 drop a given position together a quarter of the time (standard error 6e-3 over 6000 positions);
    # a shared mask gives 1/2, complementary masks 0.
    B, L, H = 3, 1500, 4
    block = nn.Residual(nn.FFN(H, expand=1, dropout=0.0, key=jax.random.key(0)), H, "none", dropout=0.5)
    x = jnp.zeros((B, L, H))
    keys = jax.random.split(jax.random.key(1), B)
    out = jax.jit(jax.vmap(lambda xi, k: block(xi, key=k)))(x, keys)
    branch = np.asarray(block.sublayer(x[0]))  # the undropped branch, the same for every example
    assert np.all(branch != 0)
    masks = (np.asarray(out) == 0).reshape(B, -1)
    assert np.all(np.abs(masks.mean(axis=1) - 0.5) < 0.03)
    for i in range(B):
        for j in range(i + 1, B):
            assert abs((masks[i] & masks[j]).mean() - 0.25) < 0.03, (i, j)
    # an example's mask depends only on its key, not on the batch
    alone = np.asarray(block(x[1], key=keys[1])) == 0
    np.testing.assert_array_equal(alone.reshape(-1), masks[1])
