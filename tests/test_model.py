"""SequenceModel: heads and shapes, masked pooling, BatchNorm statistics, block wiring, scan over
layers, dropout, and configuration errors."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.model import SequenceModel, _dropout, make_model

KEY = jax.random.PRNGKey(0)


def _cfg(**kw):
    base = dict(layer="s4d", d_model=6, n_layers=2, d_state=4, norm="layer", dropout=0.0)
    base.update(kw)
    return ModelConfig(**base)


def _batched(model, state, xs, **extra):
    return eqx.filter_vmap(
        lambda x, e: model(x, state, **e)[0], in_axes=(0, 0)
    )(xs, extra)


@pytest.mark.parametrize(
    "task,tokens,pool,tie,out_shape",
    [
        ("classification", False, "mean", False, (5,)),
        ("classification", False, "last", False, (5,)),
        ("regression", False, "none", False, (12, 5)),
        ("lm", True, "none", True, (12, 5)),
        ("lm", True, "none", False, (12, 5)),
    ],
)
def test_heads_and_shapes(task, tokens, pool, tie, out_shape):
    info = DatasetInfo(task=task, d_input=5 if tokens else 3, d_output=5, seq_len=12, tokens=tokens)
    model, state = make_model(_cfg(pool=pool, tie_embeddings=tie), info, key=KEY)
    x = jnp.arange(12) % 5 if tokens else jnp.ones((12, 3))
    y, _ = model(x, state)
    assert y.shape == out_shape
    if tie:  # the decoder is the embedding matrix: logits = h @ E^T
        assert model.decoder is None


def test_retrieval_head_combines_both_documents():
    info = DatasetInfo(task="retrieval", d_input=7, d_output=2, seq_len=10, tokens=True)
    model, state = make_model(_cfg(pool="mean"), info, key=KEY)
    a, b = jnp.arange(10) % 7, (jnp.arange(10) * 3) % 7
    y, _ = model(a, state, inputs2=b, lengths=jnp.array(10), lengths2=jnp.array(8))
    assert y.shape == (2,)
    # [a, b, a*b, a-b] is not symmetric in (a, b): swapping the documents changes the logits
    y2, _ = model(b, state, inputs2=a, lengths=jnp.array(8), lengths2=jnp.array(10))
    assert not np.allclose(y, y2)
    # by hand: pooled features of each document through the MLP
    fa = jnp.mean(model.features(a, state)[0], axis=0)
    fb = jnp.mean(model.features(b, state)[0][:8], axis=0)
    np.testing.assert_allclose(y, model.decoder(jnp.concatenate([fa, fb, fa * fb, fa - fb])), rtol=1e-12)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_masked_pooling_ignores_padding(pool):
    # With a causal layer, outputs at t < n do not depend on inputs after n: a padded sequence with
    # its true length must give the same result as the unpadded one, whatever the padding holds.
    info = DatasetInfo(task="classification", d_input=2, d_output=3, seq_len=16)
    model, state = make_model(_cfg(pool=pool), info, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 2))
    n = 9
    garbage = x.at[n:].set(1e3)
    y_pad, _ = model(garbage, state, lengths=jnp.array(n))
    y_ref, _ = model(x[:n], state)
    np.testing.assert_allclose(y_pad, y_ref, rtol=1e-10, atol=1e-12)
    y_full, _ = model(garbage, state)
    assert not np.allclose(y_full, y_ref)


def test_batchnorm_normalises_over_batch_and_time_and_keeps_running_stats():
    B, L, H, m, eps = 5, 7, 3, 0.9, 1e-5
    info = DatasetInfo(task="classification", d_input=H, d_output=2, seq_len=L)
    model, state = make_model(_cfg(d_model=H, n_layers=1, norm="batch", bn_momentum=m), info, key=KEY)
    norm = model.blocks[0].norm
    x = jax.random.normal(jax.random.PRNGKey(2), (B, L, H)) * jnp.array([1.0, 3.0, 0.5]) + jnp.array([0.0, 2.0, -1.0])
    y, state = eqx.filter_vmap(norm, in_axes=(0, None), out_axes=(0, None), axis_name="batch")(x, state)
    xn = np.asarray(x)
    mu, var = xn.mean(axis=(0, 1)), xn.var(axis=(0, 1))
    np.testing.assert_allclose(y, (xn - mu) / np.sqrt(var + eps), rtol=1e-10, atol=1e-12)
    # a second batch, then inference: the debiased EMA of the two batches' statistics,
    # (m (1-m) s1 + (1-m) s2) / (1 - m^2)
    x2 = 2.0 * jax.random.normal(jax.random.PRNGKey(3), (B, L, H)) + 1.0
    _, state = eqx.filter_vmap(norm, in_axes=(0, None), out_axes=(0, None), axis_name="batch")(x2, state)
    x3 = jax.random.normal(jax.random.PRNGKey(9), (B, L, H))
    y3, _ = eqx.filter_vmap(eqx.nn.inference_mode(norm), in_axes=(0, None), out_axes=(0, None))(x3, state)
    x2n = np.asarray(x2)
    mu_r = (m * (1 - m) * mu + (1 - m) * x2n.mean(axis=(0, 1))) / (1 - m**2)
    var_r = (m * (1 - m) * var + (1 - m) * x2n.var(axis=(0, 1))) / (1 - m**2)
    np.testing.assert_allclose(y3, (np.asarray(x3) - mu_r) / np.sqrt(var_r + eps), rtol=1e-10, atol=1e-12)


def test_block_wiring_prenorm_and_postnorm():
    info = DatasetInfo(task="classification", d_input=2, d_output=3, seq_len=8)
    x = jax.random.normal(jax.random.PRNGKey(4), (8, 6))
    for prenorm in (True, False):
        model, state = make_model(_cfg(prenorm=prenorm, output="glu"), info, key=KEY)
        blk = model.blocks[0]
        ln = jax.vmap(blk.norm.ln)
        inner = (lambda z: jax.nn.glu(jax.vmap(blk.out)(jax.nn.gelu(blk.layer(z), approximate=False)), axis=-1))
        want = x + inner(ln(x)) if prenorm else ln(x + inner(x))
        got, _ = blk(x, state)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    assert model.final_norm is None  # post-norm: no final norm


def test_scan_over_layers_equals_the_loop():
    info = DatasetInfo(task="classification", d_input=2, d_output=3, seq_len=8)
    loop, state = make_model(_cfg(n_layers=3), info, key=KEY)
    scan, state2 = make_model(_cfg(n_layers=3, scan_layers=True), info, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(5), (8, 2))
    np.testing.assert_allclose(scan(x, state2)[0], loop(x, state)[0], rtol=1e-12, atol=1e-14)
    # with dropout, the same per-layer keys are used
    loop_d, _ = make_model(_cfg(n_layers=3, dropout=0.3), info, key=KEY)
    scan_d, _ = make_model(_cfg(n_layers=3, dropout=0.3, scan_layers=True), info, key=KEY)
    k = jax.random.PRNGKey(6)
    np.testing.assert_allclose(scan_d(x, state2, key=k)[0], loop_d(x, state, key=k)[0], rtol=1e-12, atol=1e-14)


def test_dropout():
    x = jnp.ones((400, 50))
    assert _dropout(x, 0.3, None, False) is x  # no key: inference
    y = np.asarray(_dropout(x, 0.25, jax.random.PRNGKey(7), False))
    assert set(np.unique(y)) <= {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.01
    t = np.asarray(_dropout(x, 0.25, jax.random.PRNGKey(8), True))
    assert (t == t[:1]).all()  # tied: one mask per channel for all time steps


def test_configuration_errors_name_the_problem():
    info = DatasetInfo(task="classification", d_input=2, d_output=3, seq_len=8)
    with pytest.raises(ValueError, match=r"\['measure'\].*'s4d'"):
        make_model(_cfg(measure="legs"), info, key=KEY)
    lm = DatasetInfo(task="lm", d_input=5, d_output=5, seq_len=8, tokens=True)
    with pytest.raises(ValueError, match="model.pool must be 'none'"):
        make_model(_cfg(pool="mean"), lm, key=KEY)
    with pytest.raises(ValueError, match="tie_embeddings"):
        make_model(_cfg(pool="none", tie_embeddings=True), DatasetInfo(task="regression", d_input=2, d_output=2, seq_len=8), key=KEY)
    # scan_layers with BatchNorm is accepted: the per-layer running statistics are scanned state
    # (tests/test_scan_batchnorm.py)
    assert _cfg(scan_layers=True, norm="batch").scan_layers


def test_s4_gets_the_dataset_length():
    info = DatasetInfo(task="classification", d_input=2, d_output=3, seq_len=24)
    model, _ = make_model(_cfg(layer="s4", d_state=4), info, key=KEY)
    assert model.blocks[0].layer.l_max == 24
    assert isinstance(model, SequenceModel)


def test_layer_configs_build_the_constructor_default_layer():
    """A layer config with its defaults builds the same layer (same arrays) as the layer's constructor called
    with no options (S4: with the dataset's length as l_max); a set option reaches the constructor."""
    from ssm.layer_configs import LAYER_CONFIGS, S4DConfig
    from ssm.model import make_layer

    for c in LAYER_CONFIGS:
        built = make_layer(ModelConfig(layer=c(d_state=4), d_model=6), key=KEY, seq_len=16)
        extra = {"l_max": 16} if "l_max" in c.from_seq_len else {}
        direct = c().cls()(6, 4, key=KEY, **extra)
        a, b = eqx.filter(built, eqx.is_array), eqx.filter(direct, eqx.is_array)
        assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b), c.__name__
        assert all(jnp.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    lin = make_layer(ModelConfig(layer=S4DConfig(d_state=4, init="lin"), d_model=6), key=KEY)
    legs = make_layer(ModelConfig(layer=S4DConfig(d_state=4), d_model=6), key=KEY)
    assert not jnp.array_equal(lin.A_im, legs.A_im)
