"""Dropout masks of the residual blocks: the random bytes are Threefry-2x32's (checked against JAX's own
implementation of the hash), the drop rate and scaling are exact, and the masks of different examples, blocks and
sites are independent (statistically, with fixed seeds and bounds far from what a shared or complementary mask
would give)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

import ssm.model as model_module
from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.model import _dropout, make_model
from ssm.random_bits import random_octets


@pytest.mark.parametrize("n", [1, 8, 13, 4096 + 5])
@pytest.mark.parametrize("typed", [False, True])
def test_octets_are_threefry_words_of_jax(n, typed):
    # JAX's threefry_2x32(key, count) hashes the counter pairs (count[i], count[i + m]) of an even-length count and
    # returns the first output words, then the second: the same words as random_octets, as bytes.
    seed = 1234 + n
    key = jax.random.key(seed) if typed else jax.random.PRNGKey(seed)
    data = jax.random.key_data(key) if typed else key
    m = max(1, -(-n // 8))
    words = threefry_2x32((data[0], data[1]), jnp.arange(2 * m, dtype=jnp.uint32))
    want = np.asarray(jax.lax.bitcast_convert_type(words, jnp.uint8)).reshape(-1)[:n]
    got = np.asarray(jax.jit(random_octets, static_argnums=1)(key, n))
    assert got.dtype == np.uint8 and got.shape == (n,)
    np.testing.assert_array_equal(got, want)


def test_rate_and_scale_are_exact():
    # rate 0.1 -> threshold round(25.6) = 26: drops 26/256 of the elements, keeps the rest scaled by 256/230.
    x = jnp.ones((4096, 256), jnp.float32)
    y = np.asarray(_dropout(x, 0.1, jax.random.PRNGKey(3), False))
    assert set(np.unique(y)) == {0.0, np.float32(256 / 230)}
    # 1M elements: the standard error of the rate is 3.0e-4; the neighbouring thresholds (25 and 27) are 3.9e-3 away.
    assert abs((y == 0).mean() - 26 / 256) < 1.5e-3
    # bfloat16 in, bfloat16 out, the same mask
    yb = _dropout(x.astype(jnp.bfloat16), 0.1, jax.random.PRNGKey(3), False)
    assert yb.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(yb) == 0, y == 0)


def test_tied_mask_is_one_per_channel():
    x = jnp.ones((32, 8192), jnp.float32)
    t = np.asarray(_dropout(x, 0.25, jax.random.PRNGKey(8), True))
    assert (t == t[:1]).all()  # one mask per channel for all time steps
    # 8192 channels: standard error 4.8e-3 around 64/256
    assert abs((t[0] == 0).mean() - 0.25) < 0.025


def test_masks_of_examples_blocks_and_sites_are_independent(monkeypatch):
    # The masks the model draws in a training call (per-example keys, as ssm.train.step does), captured at every
    # dropout site: B examples x (2 blocks x 2 sites). With rate 1/2, two independent masks both drop a fraction
    # 1/4 of the positions (standard error 6.7e-3 over 4200 positions); equal masks would give 1/2, complementary 0.
    # (The model's shapes are tests/test_model.py's, whose compiled initialisers the suite's cache then shares.)
    B, L, H = 3, 700, 6
    cfg = ModelConfig(layer="s4d", d_model=H, n_layers=2, d_state=4, norm="layer", dropout=0.5, output="glu")
    info = DatasetInfo(task="classification", d_input=2, d_output=3, seq_len=L)
    model, state = make_model(cfg, info, key=jax.random.PRNGKey(0))
    real = model_module._dropout
    sink: list = []

    def spy(x, rate, key, tie):
        if key is not None:
            sink.append(real(jnp.ones_like(x), rate, key, tie) == 0)
        return real(x, rate, key, tie)

    monkeypatch.setattr(model_module, "_dropout", spy)

    def masks_of(x, key):
        sink.clear()
        model(x, state, key=key)
        return jnp.stack(sink)

    xs = jax.random.normal(jax.random.PRNGKey(1), (B, L, 2))
    keys = jax.random.split(jax.random.PRNGKey(2), B)
    both = jax.jit(lambda xs, keys: (jax.vmap(masks_of)(xs, keys), masks_of(xs[1], keys[1])))
    masks, alone = (np.asarray(a) for a in both(xs, keys))
    assert masks.shape == (B, 4, L, H)
    flat = masks.reshape(B * 4, L * H)
    rates = flat.mean(axis=1)
    assert np.all(np.abs(rates - 0.5) < 0.04), rates
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            both = (flat[i] & flat[j]).mean()
            assert abs(both - 0.25) < 0.04, (i, j, both)
    # An example's masks do not depend on the batch it is in: alone, with its own key, it draws the same masks.
    np.testing.assert_array_equal(alone, masks[1])
