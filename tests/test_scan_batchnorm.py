"""``model.scan_layers`` with BatchNorm: the blocks' running statistics are stacked along the layer axis in the
``eqx.nn.State`` and scanned with the parameters. In float64, the scanned model equals the unrolled one built from
the same key (outputs, parameter gradients, running statistics and inference outputs after two SGD steps, the
recurrent prefill/step), post-norm and pre-norm; the statistics match a per-layer batch mean/variance written out
here; the stacked state round-trips through a checkpoint."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.model import make_model

KEY = jax.random.PRNGKey(0)
B, L, C, H, N, LAYERS, CLASSES = 3, 8, 2, 4, 4, 2, 3
MOMENTUM = 0.9
INFO = DatasetInfo(task="classification", d_input=C, d_output=CLASSES, seq_len=L)


def _pair(info=INFO, **over):
    """The unrolled and the scanned model (and their states) built from the same key."""
    m = dict(layer="s4d", d_model=H, d_state=N, n_layers=LAYERS, norm="batch", bn_momentum=MOMENTUM, dropout=0.0)
    m.update(over)
    loop = make_model(ModelConfig(**m), info, key=KEY)
    scan = make_model(ModelConfig(**m, scan_layers=True), info, key=KEY)
    return loop, scan


def _stack(blocks):
    """The unrolled model's tuple of blocks (or their gradients) as one stacked block, to compare with a scan."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[_arrays(b) for b in blocks])


def _arrays(tree):
    """The arrays of ``tree``; its state indices dropped (their markers name the layer, ``blocks[i]``)."""
    is_index = lambda x: isinstance(x, eqx.nn.StateIndex)  # noqa: E731
    return jax.tree_util.tree_map(lambda x: None if is_index(x) else x, eqx.filter(tree, eqx.is_array),
                                  is_leaf=is_index)  # fmt: skip


def _stacked_view(model):
    """``model`` with its blocks stacked (the scanned layout; a scanned model is returned as it is)."""
    if isinstance(model.blocks, tuple):
        return eqx.tree_at(lambda m: m.blocks, eqx.filter(model, eqx.is_array), _stack(model.blocks))
    return eqx.tree_at(lambda m: m.blocks, eqx.filter(model, eqx.is_array), _arrays(model.blocks))


def _close(a, b, rtol=1e-11, atol=1e-12):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape, (x.shape, y.shape)
        if x.dtype.kind == "f":
            assert x.dtype == np.float64
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _stats(model, state):
    """``(counter, mean, var)`` of every block's BatchNorm, as ``(n_layers,)``, ``(n_layers, H)`` arrays
    (and the final norm's, if any, last)."""
    if isinstance(model.blocks, tuple):
        per = [(state.get(b.norm.bn.batch_counter), *state.get(b.norm.bn.batch_state_index)) for b in model.blocks]
        out = [tuple(jnp.stack(a) for a in zip(*per))]
    else:
        bn = model.blocks.norm.bn
        out = [(state.get(bn.batch_counter), *state.get(bn.batch_state_index))]
    if model.final_norm is not None:
        bn = model.final_norm.bn
        out.append((state.get(bn.batch_counter), *state.get(bn.batch_state_index)))
    return out


@eqx.filter_jit
def _forward(model, state, xs):
    """Training mode on a batch: the per-example call vmapped over the named axis BatchNorm reduces over."""
    return eqx.filter_vmap(lambda x, s: model(x, s), in_axes=(0, None), out_axes=(0, None), axis_name="batch")(
        xs, state
    )


@eqx.filter_jit
def _infer(model, state, xs):
    """Inference-mode outputs of a batch (running statistics; no named axis needed)."""
    model = eqx.nn.inference_mode(model)
    return jax.vmap(lambda x: model(x, state)[0])(xs)


def _loss(model, state, xs, ys):
    """Mean cross-entropy of a batch (training mode)."""
    logits, state = _forward(model, state, xs)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, ys[:, None], axis=1)), state


_grad = eqx.filter_jit(eqx.filter_value_and_grad(_loss, has_aux=True))


def _sgd(model, grads, lr=0.1):
    return eqx.apply_updates(model, jax.tree_util.tree_map(lambda g: -lr * g, grads))


def _batch(seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(k1, (B, L, C), jnp.float64), jax.random.randint(k2, (B,), 0, CLASSES)


@pytest.mark.parametrize("prenorm", [False, True], ids=["postnorm", "prenorm"])
def test_scanned_training_and_inference_equal_the_unrolled_model(prenorm):
    (loop, s_loop), (scan, s_scan) = _pair(prenorm=prenorm)
    assert jax.tree_util.tree_leaves(_stats(scan, s_scan))[1].shape == (LAYERS, H)
    for seed in (1, 2):  # two SGD steps; the running statistics move in both
        xs, ys = _batch(seed)
        (l1, s_loop), g_loop = _grad(loop, s_loop, xs, ys)
        (l2, s_scan), g_scan = _grad(scan, s_scan, xs, ys)
        np.testing.assert_allclose(l2, l1, rtol=1e-12)
        _close(_stacked_view(g_scan), _stacked_view(g_loop))
        assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(g_scan.blocks)) > 1e-6
        loop, scan = _sgd(loop, g_loop), _sgd(scan, g_scan)
    st_loop, st_scan = _stats(loop, s_loop), _stats(scan, s_scan)
    _close(st_scan, st_loop)
    assert (np.asarray(st_scan[0][0]) == 2).all()  # every layer counted both steps
    # inference mode: the running statistics (distinct per layer) replace the batch statistics
    xs, _ = _batch(3)
    want = _infer(loop, s_loop, xs)
    _close(_infer(scan, s_scan, xs), want)
    training = _forward(loop, s_loop, xs)[0]
    assert not np.allclose(want, training)  # the running statistics are not this batch's


def test_scanned_running_statistics_are_each_layers_batch_statistics():
    """Post-norm blocks written out here (the block's SSM layer and output map as the primitives, BatchNorm by hand
    over batch and time): after two training-mode passes, layer i's running mean/variance are the momentum average
    of layer i's own batch statistics."""
    _, (scan, state) = _pair(prenorm=False)
    params, static = eqx.partition(scan.blocks, eqx.is_array)
    blocks = [eqx.combine(jax.tree_util.tree_map(lambda a, i=i: a[i], params), static) for i in range(LAYERS)]
    hidden = [np.zeros((2, H)) for _ in range(LAYERS)]
    for seed in (4, 5):
        xs, _ = _batch(seed)
        _, state = _forward(scan, state, xs)
        x = np.asarray(jax.vmap(jax.vmap(scan.encoder))(xs))
        for i, blk in enumerate(blocks):
            z = jax.vmap(lambda u: jax.nn.gelu(blk.layer(u), approximate=False))(x)
            z = np.asarray(jax.nn.glu(jax.vmap(jax.vmap(blk.out))(z), axis=-1)) + x
            mean, var = z.mean(axis=(0, 1)), z.var(axis=(0, 1))
            hidden[i] = MOMENTUM * hidden[i] + (1 - MOMENTUM) * np.stack([mean, var])
            bn = blk.norm.bn
            x = (z - mean) / np.sqrt(var + bn.eps) * np.asarray(bn.weight) + np.asarray(bn.bias)
    (counter, mean, var), = _stats(scan, state)
    np.testing.assert_array_equal(np.asarray(counter), [2] * LAYERS)
    np.testing.assert_allclose(np.asarray(mean), np.stack([h[0] for h in hidden]), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(np.asarray(var), np.stack([h[1] for h in hidden]), rtol=1e-11, atol=1e-13)
    assert np.ptp(np.asarray(var), axis=0).max() > 1e-3  # the layers' statistics differ: no slice mix-up passes


@pytest.mark.parametrize("prenorm", [False, True], ids=["postnorm", "prenorm"])
def test_scanned_recurrent_mode_with_running_statistics(prenorm):
    """Inference mode after training-mode passes: the scanned model's prefill and step equal its convolutional
    forward and the unrolled model's (outputs and caches)."""
    V = 5
    info = DatasetInfo(task="generation", d_input=V, d_output=V, seq_len=16, tokens=True)
    (loop, s_loop), (scan, s_scan) = _pair(info, pool="none", prenorm=prenorm)
    for seed in (6, 7):
        toks = jax.random.randint(jax.random.PRNGKey(seed), (B, L), 0, V)
        s_loop, s_scan = _forward(loop, s_loop, toks)[1], _forward(scan, s_scan, toks)[1]
    _close(_stats(scan, s_scan), _stats(loop, s_loop))
    loop, scan = eqx.nn.inference_mode(loop), eqx.nn.inference_mode(scan)
    u = jax.random.randint(jax.random.PRNGKey(8), (L,), 0, V)
    prefill = eqx.filter_jit(lambda m, s, u: m.prefill(u, s))
    # the unrolled model's prefill equals its own forward (tests/test_recurrent_api.py)
    want, cache_loop = prefill(loop, s_loop, u)
    _close(scan(u, s_scan)[0], want)  # an eager call leaves the caller's state usable (read again below)
    logits, cache = prefill(scan, s_scan, u)
    _close(logits, want)
    _close(cache, _stack(cache_loop))
    jstep = eqx.filter_jit(lambda m, t, c: m.step(t, s_scan, c))
    c, ys = scan.init_state(), []
    for t in range(L):
        y, c = jstep(scan, u[t], c)
        ys.append(y)
    _close(jnp.stack(ys), want)
    _close(c, cache)


def test_stacked_statistics_round_trip_through_a_checkpoint(tmp_path):
    import optax

    from ssm.train.checkpoint import Checkpoints
    from ssm.train.state import TrainState, abstract_model

    cfg = ModelConfig(layer="s4d", d_model=H, d_state=N, n_layers=LAYERS, norm="batch", prenorm=False,
                      scan_layers=True)  # fmt: skip
    model, state = make_model(cfg, INFO, key=KEY)
    xs, _ = _batch(9)
    _, state = _forward(model, state, xs)
    tx = optax.sgd(0.1)
    ts = TrainState(jnp.zeros((), jnp.int32), model, state, tx.init(eqx.filter(model, eqx.is_array)), KEY)
    ck = Checkpoints(str(tmp_path), async_save=False)
    try:
        ck.save(ts, None, {"step": 1})
        (model2, state2), _, _ = ck.restore_model(abstract_model(cfg, INFO), checkpoint="latest")
    finally:
        ck.close()
    got, want = _stats(model2, state2), _stats(model, state)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.max(jnp.abs(want[0][1]))) > 0  # statistics were written before the save
