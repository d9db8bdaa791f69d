"""Every block and backbone owns its recurrent mode (``init_state(*, rate)`` / ``step`` / ``prefill``): the residual
``SequenceModel`` and its ``Block`` against their own convolutional forward (float64), greedy stepping against the
arg-max of the forward, and ``rate`` through the :mod:`ssm.nn` blocks as a rescaling of every layer's Δ (checked
against the same blocks with ``log Δ`` shifted by ``log rate``), refused where a backbone pools."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm
import ssm.nn as nn
from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.generate import generate
from ssm.model import make_model

V, H, N, L = 7, 4, 4, 10
KEY = jax.random.PRNGKey(0)


def _residual(**over):
    m = dict(layer="s4d", d_model=H, d_state=N, n_layers=2, pool="none", norm="layer", prenorm=True)
    m.update(over)
    info = DatasetInfo(task="generation", d_input=V, d_output=V, seq_len=32, tokens=True)
    model, state = make_model(ModelConfig(**m), info, key=KEY)
    return eqx.nn.inference_mode(model), state


def _tokens(n, seed=1):
    return jax.random.randint(jax.random.PRNGKey(seed), (n,), 0, V, jnp.int32)


def _close(a, b, tol=1e-12):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and (x.dtype == np.float64 or x.dtype == np.complex128), (x.shape, x.dtype)
        if x.size == 0:  # a stateless block's (FFN) empty state
            continue
        np.testing.assert_allclose(x, y, rtol=0, atol=tol * max(1.0, float(np.max(np.abs(y)))))


def _shift_log_dt(tree, rate):
    """``tree`` with every S4D layer's ``log Δ`` moved by ``log rate``: at rate 1 it is the layer at ``rate``."""
    is_s4d = lambda x: isinstance(x, ssm.S4D)  # noqa: E731
    return jax.tree_util.tree_map(
        lambda x: eqx.tree_at(lambda l: l.log_dt, x, x.log_dt + math.log(rate)) if is_s4d(x) else x, tree,
        is_leaf=is_s4d,
    )  # fmt: skip


def test_block_step_and_prefill_are_its_forward():
    model, mstate = _residual(norm="batch", prenorm=False)  # post-norm BatchNorm, read from the model state
    block = model.blocks[1]
    x = jax.random.normal(jax.random.PRNGKey(2), (L, H), jnp.float64)
    want, _ = block(x, mstate)
    y, s_pre = eqx.filter_jit(lambda b, x: b.prefill(x, mstate))(block, x)
    _close(y, want)
    jstep = eqx.filter_jit(lambda b, x, s: b.step(x, mstate, s))
    s, ys = block.init_state(), []
    for t in range(L):
        y_t, s = jstep(block, x[t], s)
        ys.append(y_t)
    _close(jnp.stack(ys), want)
    _close(s, s_pre)
    # prefill continued from a state: the second half after the first
    _, s4 = block.prefill(x[:4], mstate)
    rest, s_all = block.prefill(x[4:], mstate, s4)
    _close(rest, want[4:])
    _close(s_all, s_pre)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_greedy_stepping_is_the_argmax_of_the_convolutional_forward(scan_layers):
    """Greedy decoding written here with the model's own init_state/prefill/step: the scores of every step equal the
    convolutional forward's at that position (float64), so every new token is the forward's arg-max over the tokens
    before it (the forward is causal); ssm.generate gives the same tokens."""
    model, mstate = _residual(scan_layers=scan_layers)
    jstep = eqx.filter_jit(lambda m, t, c: m.step(t, mstate, c))
    prompt = _tokens(3, seed=4)
    logits, cache = model.prefill(prompt, mstate)
    seq, scores = list(np.asarray(prompt)), [*logits]
    for _ in range(8):
        tok = jnp.argmax(scores[-1]).astype(jnp.int32)
        seq.append(int(tok))
        s, cache = jstep(model, tok, cache)
        scores.append(s)
    conv, _ = model(jnp.asarray(seq, jnp.int32), mstate)
    _close(jnp.stack(scores), conv)
    np.testing.assert_array_equal(np.argmax(np.asarray(conv), axis=-1)[2:-1], np.asarray(seq[3:]))
    out = generate(model, mstate, prompt[None], length=len(seq), key=KEY, temperature=0.0)
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(seq))


def test_sequence_model_recurrent_mode_at_another_rate():
    model, mstate = _residual()
    u = _tokens(L, seed=5)
    at2, _ = model(u, mstate, rate=2.0)
    _close(at2, _shift_log_dt(model, 2.0)(u, mstate)[0])
    logits, cache = model.prefill(u, mstate, rate=2.0)
    _close(logits, at2)
    c, ys = model.init_state(rate=2.0), []
    for t in range(L):
        y, c = model.step(u[t], mstate, c, rate=2.0)
        ys.append(y)
    _close(jnp.stack(ys), at2)
    _close(c, cache)
    assert not np.allclose(np.asarray(at2), np.asarray(model(u, mstate)[0]))


def test_residual_stack_rate_rescales_every_layer_step_size():
    stack = nn.residual_stack(H, [nn.ssm_sublayer(ssm.S4D, d_state=N), nn.ffn_sublayer(2)], 2, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(3), (L, H), jnp.float64)
    at2 = stack(x, rate=2.0)
    _close(at2, _shift_log_dt(stack, 2.0)(x))
    assert not np.allclose(np.asarray(at2), np.asarray(stack(x)))
    y, s_pre = stack.prefill(x, rate=2.0)
    _close(y, at2)
    s, ys = stack.init_state(rate=2.0), []
    for t in range(L):
        y_t, s = stack.step(x[t], s, rate=2.0)
        ys.append(y_t)
    _close(jnp.stack(ys), at2)
    _close(s, s_pre)


def test_backbones_with_pooling_or_text_refuse_a_rate():
    sashimi = nn.SaShiMiModel(V, 4, key=KEY, n_layers=1, pool=(2,), layer_cls=ssm.S4D, layer_kwargs=dict(d_state=4))
    tokens = _tokens(8)
    for call in (lambda: sashimi(tokens, rate=2.0), lambda: sashimi.init_state(rate=2.0),
                 lambda: sashimi.prefill(tokens, rate=2.0)):  # fmt: skip
        with pytest.raises(ValueError, match="SaShiMi runs at its training rate only"):
            call()
    x = jax.random.normal(KEY, (8, H), jnp.float64)
    pooled = nn.PooledBackbone(H, 2, 8, pool_kernel=2, layer_cls=ssm.S4D, layer_kwargs=dict(d_state=N), key=KEY)
    with pytest.raises(ValueError, match="PooledBackbone runs at its training rate only"):
        pooled(x, rate=2.0)
    flat = nn.PooledBackbone(H, 2, 8, pool_kernel=None, layer_cls=ssm.S4D, layer_kwargs=dict(d_state=N), key=KEY)
    _close(flat(x, rate=2.0), _shift_log_dt(flat, 2.0)(x))  # without pooling the rate reaches every layer
    from ssm.backbones import Backbone

    s4d = nn.ssm_sublayer(ssm.S4D, d_state=4)
    lm = Backbone(nn.AdaptiveLM(20, 8, 1, pattern=[s4d], cutoffs=(5, 10), div_val=2, key=KEY), "log_probs")
    with pytest.raises(ValueError, match="no sampling rate"):
        lm(jnp.arange(4), eqx.nn.State(lm), rate=2.0)
    with pytest.raises(ValueError, match="no sampling rate"):
        lm.init_state(rate=0.5)


@pytest.mark.parametrize("model", ["sashimi", "adaptive_lm"])
def test_bench_generation_runs_the_backbones_through_the_one_generation_path(model):
    from ssm.generate import bench_generation

    r = bench_generation("s4d", model=model, length=32, d_model=16, d_state=4, n_layers=1, vocab=16, naive_tokens=2,
                         repeats=1)  # fmt: skip
    assert r["model"] == model and r["length"] == 32 and r["params"] > 0
    assert r["recurrent_tokens_per_s"] > 0 and r["conv_tokens_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["recurrent_tokens_per_s"] / r["conv_tokens_per_s"])
