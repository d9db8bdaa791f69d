"""Gradient accumulation with each SSM kernel computed once per step (``ssm.train.shared_kernels``): the step's
gradient equals the sum over micro-batches of each micro-batch's gradient (float64), the kernels really are
computed once (fewer FLOPs than the per-micro-batch step, from XLA's cost analysis), and models where a kernel
cannot be shared keep the plain step."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssm.config import ModelConfig, SaShiMiConfig
from ssm.data.base import DatasetInfo
from ssm.layer_configs import DSSConfig, HOPEConfig, S4Config, S4DConfig, S5Config
from ssm.model import make_model
from ssm.train import shared_kernels as sk
from ssm.train.state import TrainState
from ssm.train.step import make_train_step

CLS = DatasetInfo(task="classification", d_input=3, d_output=4, seq_len=16, tokens=False)
GEN = DatasetInfo(task="generation", d_input=16, d_output=16, seq_len=16, tokens=True)
ACCUM, B = 2, 4


def _clone(state):
    """A copy of an ``eqx.nn.State`` (using one spends it)."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _cls_batch():
    rng = np.random.default_rng(0)
    return {"inputs": jnp.asarray(rng.standard_normal((B, CLS.seq_len, CLS.d_input))),
            "targets": jnp.asarray(rng.integers(0, CLS.d_output, (B,)).astype(np.int32))}


def _reference_update(model, model_state, batch):
    """``-Σ_micro ∇ Σ_examples CE / B``, written out here: per micro-batch, the examples vmapped with the
    ``"batch"`` axis (BatchNorm's statistics over the micro-batch), cross-entropy by hand."""

    def micro_loss_sum(m, x, t):
        s = _clone(model_state)
        logits, _ = eqx.filter_vmap(lambda xi: m(xi, s), axis_name="batch", out_axes=(0, None))(x)
        z = logits - jnp.max(logits, -1, keepdims=True)
        logp = z - jnp.log(jnp.sum(jnp.exp(z), -1, keepdims=True))
        return -jnp.sum(logp[jnp.arange(t.shape[0]), t])

    grad = eqx.filter_jit(eqx.filter_grad(micro_loss_sum))
    n = B // ACCUM
    gs = [grad(model, batch["inputs"][i * n:(i + 1) * n], batch["targets"][i * n:(i + 1) * n]) for i in range(ACCUM)]
    return [-sum(np.asarray(g[j]) for g in map(jax.tree_util.tree_leaves, gs)) / B
            for j in range(len(jax.tree_util.tree_leaves(gs[0])))]


def _step(model, model_state, batch, task, share_kernels=True):
    """One SGD(1) step: the parameters' change is minus the step's gradient."""
    tx = optax.sgd(1.0)
    params = eqx.filter(model, eqx.is_array)
    fresh = jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True) if eqx.is_array(a) else a, model)
    state = TrainState(jnp.zeros((), jnp.int32), fresh, _clone(model_state), tx.init(params), jax.random.PRNGKey(2))
    step = make_train_step(tx, task, ACCUM, share_kernels=share_kernels)
    new, metrics = step(state, batch)
    after = jax.tree_util.tree_leaves(eqx.filter(new.model, eqx.is_array))
    return [np.asarray(a) - np.asarray(b) for a, b in zip(after, jax.tree_util.tree_leaves(params), strict=True)], metrics


def _generation_batch(seed):
    x = np.random.default_rng(seed).integers(0, 16, (B, 16)).astype(np.int32)
    return {"inputs": jnp.asarray(x), "targets": jnp.asarray(np.roll(x, -1, 1))}


def _assert_shared_equals_plain(model, model_state, batch, task, rtol, atol, loss_rtol):
    """The shared-kernel step's update equals the per-micro-batch step's (and the loss), the update not small."""
    plain, m_plain = _step(model, model_state, dict(batch), task, share_kernels=False)
    shared, m_shared = _step(model, model_state, dict(batch), task)
    assert max(np.abs(p).max() for p in plain) > 1e-3
    for a, b in zip(shared, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    np.testing.assert_allclose(float(m_shared["loss"]), float(m_plain["loss"]), rtol=loss_rtol)


@pytest.mark.parametrize("layer, scan", [(S4Config(d_state=4, bidirectional=True), True),
                                         (S4DConfig(d_state=4), False),
                                         (DSSConfig(d_state=4, bidirectional=True), False),
                                         (HOPEConfig(d_state=8), True)])
def test_shared_kernel_step_is_the_sum_of_micro_batch_gradients(layer, scan):
    cfg = ModelConfig(layer=layer, d_model=6, n_layers=2, norm="batch", dropout=0.0, pool="mean", scan_layers=scan)
    model, model_state = make_model(cfg, CLS, key=jax.random.PRNGKey(1))
    batch = _cls_batch()
    plan = sk.kernel_plan(lambda m, s, b: eqx.filter_vmap(lambda x: m(x, _clone(s)), axis_name="batch",
                                                          out_axes=(0, None))(b), model, model_state, batch["inputs"])
    assert plan == [(CLS.seq_len, 1.0)] * (1 if scan else 2)  # a stacked layer counts once
    ref = _reference_update(model, model_state, batch)
    got, _ = _step(model, model_state, batch, "classification")
    # the gradient is not small anywhere that matters (the comparison can fail)
    assert max(np.abs(r).max() for r in ref) > 1e-3
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-13)


def test_sashimi_shares_the_kernels_of_every_level():
    """SaShiMi's S4 layers at each level's length: the shared-kernel step equals the per-micro-batch one."""
    cfg = SaShiMiConfig(layer=S4Config(d_state=4, n_ssm=1), d_model=4, n_layers=1, pool=(2, 2))
    model, model_state = make_model(cfg, GEN, key=jax.random.PRNGKey(3))
    batch = _generation_batch(1)
    assert len(sk.conv_layers(model)) > 2
    lengths = {L for L, _ in sk.kernel_plan(
        lambda m, b: eqx.filter_vmap(lambda xi: m(xi, _clone(model_state)), out_axes=(0, None))(b), model,
        batch["inputs"])}
    assert lengths == {16, 8, 4}
    _assert_shared_equals_plain(model, model_state, batch, "generation", rtol=1e-9, atol=1e-13, loss_rtol=1e-12)


def test_mixed_precision_keeps_the_given_kernels_wide():
    """Under ``precision="mixed"`` the ssm.nn backbones cast every module's parameters to bfloat16 except the SSM
    layers' (``ssm.precision.wide_modules``); the stand-ins holding the layers' given kernels must stay float32 too
    (a skip ``D`` cast to bfloat16 changes the outputs at 1e-3): the shared-kernel step equals the per-micro-batch
    step."""
    cfg = SaShiMiConfig(layer=S4DConfig(d_state=4), d_model=4, n_layers=1, pool=(2, 2), precision="mixed")
    model, model_state = make_model(cfg, GEN, key=jax.random.PRNGKey(5))
    layers = sk.conv_layers(model)
    model = eqx.tree_at(lambda m: [l.D for l in sk.conv_layers(m)], model,
                        [jnp.linspace(0.3, 1.7, l.D.shape[-1]) + 1e-3 for l in layers])  # not bfloat16 numbers
    # bfloat16 matmuls: the two steps' sums in a different order may round a bfloat16 product differently
    _assert_shared_equals_plain(model, model_state, _generation_batch(2), "generation", rtol=1e-6, atol=1e-9,
                                loss_rtol=1e-9)


def test_the_kernels_are_computed_once_per_step():
    """XLA's FLOP count of the compiled step: with the kernels shared, about one kernel forward and backward less
    than the per-micro-batch step (S4's Cauchy kernel is a large part of this tiny model's step)."""
    info = DatasetInfo(task="classification", d_input=1, d_output=2, seq_len=256, tokens=False)
    cfg = ModelConfig(layer=S4Config(d_state=64), d_model=8, n_layers=1, norm="layer", output="none", pool="mean")
    model, model_state = make_model(cfg, info, key=jax.random.PRNGKey(0))
    tx = optax.sgd(1.0)
    state = TrainState(jnp.zeros((), jnp.int32), model, model_state, tx.init(eqx.filter(model, eqx.is_array)),
                       jax.random.PRNGKey(2))
    batch = {"inputs": jnp.zeros((B, 256, 1)), "targets": jnp.zeros((B,), jnp.int32)}
    flops = {}
    for share in (False, True):
        step = make_train_step(tx, "classification", ACCUM, share_kernels=share)
        flops[share] = step.lower(state, batch).compile().compiled.cost_analysis()["flops"]  # eqx wraps jax's Compiled
    layer = sk.conv_layers(model)[0]
    params, static = eqx.partition(layer, eqx.is_array)
    kernel_grad = jax.jit(jax.grad(lambda p: jnp.sum(eqx.combine(p, static).kernel(256))))
    kernel_flops = kernel_grad.lower(params).compile().cost_analysis()["flops"]
    assert kernel_flops > 0.3 * flops[True]  # a large part of the step, so the saving below is not noise
    # One micro-batch's kernel forward and backward saved, as XLA counts it: 0.66 of the standalone program's count
    # here (XLA counts the loop over the micro-batches once, and the fusions differ between the programs).
    assert flops[False] - flops[True] > 0.5 * kernel_flops


def test_models_without_a_shareable_kernel_keep_the_plain_step():
    """S5 (a scan, no kernel) has no convolutional layer; a layer called at two rates has no single kernel."""
    model, _ = make_model(ModelConfig(layer=S5Config(d_state=4), d_model=6, n_layers=1), CLS, key=jax.random.PRNGKey(0))
    assert sk.kernel_plan(lambda m: None, model) is None
    model, state = make_model(ModelConfig(layer=S4DConfig(d_state=4), d_model=6, n_layers=1), CLS,
                              key=jax.random.PRNGKey(0))
    x = jnp.zeros((CLS.seq_len, CLS.d_input))
    assert sk.kernel_plan(lambda m: m(x, _clone(state)), model) == [(CLS.seq_len, 1.0)]
    assert sk.kernel_plan(lambda m: (m(x, _clone(state), rate=1.0), m(x, _clone(state), rate=0.5)), model) is None
    assert sk.kernel_plan(lambda m: (m(x, _clone(state)), m(x[:8], _clone(state))), model) is None
    assert sk.kernel_plan(lambda m: None, model) is None  # the layer is never called
