"""Optimizer: parameter groups over real models of every layer type, per-group learning rate and
weight decay checked on Adam's first step, schedules against their closed forms, clipping, and
gradient accumulation."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssm.config import ModelConfig, OptimConfig
from ssm.data.base import DatasetInfo
from ssm.model import available_layers, make_model
from ssm.train.optimizer import make_optimizer, param_labels, schedule

INFO = DatasetInfo(task="classification", d_input=2, d_output=3, seq_len=8)
LAYERS = sorted(available_layers())


def _model(layer: str, norm: str = "layer"):
    cfg = ModelConfig(layer=layer, d_model=4, n_layers=2, d_state=4, norm=norm, output="glu")
    return make_model(cfg, INFO, key=jax.random.PRNGKey(0))[0]


def _expected_label(path, model) -> str:
    """From the attribute path alone: a field of a block's SSM layer listed in its class's
    ``ssm_param_names`` -> ssm; a bias or anything under a norm -> no_decay; else decay."""
    names = [getattr(k, "name", None) for k in path]
    if "layer" in names:
        i = names.index("layer")
        # blocks -> (index) -> layer -> field
        block = model.blocks[path[names.index("blocks") + 1].idx]
        if names[i + 1] in type(block.layer).ssm_param_names:
            return "ssm"
    if names[-1] == "bias" or "norm" in names or "final_norm" in names:
        return "no_decay"
    return "decay"


def test_every_layer_type_is_registered():
    assert {"s4", "s4d", "dss"} <= set(LAYERS), LAYERS


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_labels_over_a_real_model(layer, norm):
    model = _model(layer, norm)
    labels = param_labels(model, OptimConfig())
    flat_model = jax.tree_util.tree_flatten_with_path(eqx.filter(model, eqx.is_array))[0]
    flat_labels = jax.tree_util.tree_leaves(labels)
    assert len(flat_model) == len(flat_labels)
    seen = set()
    for (path, _), label in zip(flat_model, flat_labels, strict=True):
        assert label == _expected_label(path, model), jax.tree_util.keystr(path)
        seen.add(label)
    assert seen == {"ssm", "decay", "no_decay"}
    # every name a layer declares as an SSM parameter exists on it
    for block in model.blocks:
        for n in type(block.layer).ssm_param_names:
            assert hasattr(block.layer, n), n


def _first_step(model, cfg: OptimConfig):
    """Parameters and Adam's first update for a gradient of 1 on every parameter."""
    params = eqx.filter(model, eqx.is_array)
    tx, _ = make_optimizer(model, cfg, total_steps=10)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return params, updates, param_labels(model, cfg)


@pytest.mark.parametrize("layer", LAYERS)
def test_ssm_params_get_their_own_lr_and_no_weight_decay(layer):
    # Adam's first step with gradient g = 1: m̂ = 1, v̂ = 1, so the update is exactly
    # -lr (1/(1 + eps) + wd p) (decoupled weight decay wd, AdamW).
    lr, ssm_lr, wd, eps = 1e-2, 1e-4, 0.5, 1e-8
    cfg = OptimConfig(lr=lr, ssm_lr=ssm_lr, weight_decay=wd, eps=eps, schedule="constant")
    params, updates, labels = _first_step(_model(layer), cfg)
    counts = {"ssm": 0, "decay": 0, "no_decay": 0}
    for p, u, label in zip(*(jax.tree_util.tree_leaves(t) for t in (params, updates, labels)), strict=True):
        p, u = np.asarray(p), np.asarray(u)
        if label == "ssm":
            want = np.full_like(p, -ssm_lr / (1 + eps))
        elif label == "decay":
            want = -lr * (1 / (1 + eps) + wd * p)
        else:
            want = np.full_like(p, -lr / (1 + eps))
        np.testing.assert_allclose(u, want, rtol=1e-12, atol=1e-18)
        counts[label] += 1
    assert min(counts.values()) > 0


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("dt_lr", [2e-2, 0.0])
def test_dt_lr_gives_log_dt_its_own_group(layer, dt_lr):
    # With optim.dt_lr set, exactly the fields in dt_param_names (the log step sizes) move at dt_lr
    # (frozen at 0), without weight decay; the other SSM parameters keep ssm_lr.
    lr, ssm_lr, wd, eps = 1e-2, 1e-4, 0.5, 1e-8
    model = _model(layer)
    cfg = OptimConfig(lr=lr, ssm_lr=ssm_lr, dt_lr=dt_lr, weight_decay=wd, eps=eps, schedule="constant")
    params, updates, labels = _first_step(model, cfg)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    n_dt = 0
    for (path, p), u, label in zip(flat, jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(labels),
                                   strict=True):  # fmt: skip
        names = [getattr(k, "name", None) for k in path]
        is_dt = "layer" in names and names[names.index("layer") + 1] in type(model.blocks[0].layer).dt_param_names
        assert (label == "dt") == is_dt, jax.tree_util.keystr(path)
        if is_dt:
            n_dt += 1
            np.testing.assert_allclose(np.asarray(u), np.full_like(p, -dt_lr / (1 + eps)), rtol=1e-12, atol=0)
        elif label == "ssm":
            np.testing.assert_allclose(np.asarray(u), np.full_like(p, -ssm_lr / (1 + eps)), rtol=1e-12, atol=0)
    assert n_dt == model.n_layers  # one log-step field per block
    assert set(type(model.blocks[0].layer).dt_param_names) <= set(type(model.blocks[0].layer).ssm_param_names)
    tx, schedules = make_optimizer(model, cfg, total_steps=10)
    assert float(schedules["dt_lr"](5)) == pytest.approx(dt_lr)
    assert "dt_lr" not in make_optimizer(model, OptimConfig(), total_steps=10)[1]


def test_frozen_ssm_params_and_decayed_bias_norm():
    lr, wd, eps = 1e-2, 0.5, 1e-8
    cfg = OptimConfig(lr=lr, ssm_lr=0.0, weight_decay=wd, eps=eps, schedule="constant", wd_bias_norm=True)
    params, updates, labels = _first_step(_model("s4d"), cfg)
    for p, u, label in zip(*(jax.tree_util.tree_leaves(t) for t in (params, updates, labels)), strict=True):
        p, u = np.asarray(p), np.asarray(u)
        if label == "ssm":
            np.testing.assert_array_equal(u, 0.0)
        else:  # biases and norms now decay too
            np.testing.assert_allclose(u, -lr * (1 / (1 + eps) + wd * p), rtol=1e-12, atol=1e-18)


def test_ssm_lr_none_means_global_lr():
    lr, eps = 3e-3, 1e-8
    params, updates, labels = _first_step(_model("s4d"), OptimConfig(lr=lr, ssm_lr=None, eps=eps, schedule="constant"))
    for u, label in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(labels), strict=True):
        if label == "ssm":
            np.testing.assert_allclose(np.asarray(u), -lr / (1 + eps), rtol=1e-12)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_schedules_against_closed_forms(kind):
    peak, W, D, r = 1e-3, 10, 100, 0.1
    cfg = OptimConfig(schedule=kind, warmup_steps=W, decay_steps=D, min_lr_ratio=r)
    f = schedule(peak, cfg, total_steps=500)
    end = r * peak
    for t in [0, 1, 5, 9, 10, 11, 37, 55, 99, 100, 150, 499]:
        if t < W:
            want = peak * t / W
        else:
            p = min((t - W) / (D - W), 1.0)
            want = {
                "cosine": end + (peak - end) * 0.5 * (1 + math.cos(math.pi * p)),
                "linear": peak + (end - peak) * p,
                "constant": peak,
            }[kind]
        assert float(f(t)) == pytest.approx(want, rel=1e-12, abs=1e-18), t
    # decay_steps defaults to the run's total steps
    g = schedule(peak, OptimConfig(schedule="cosine", warmup_steps=0), total_steps=40)
    assert float(g(0)) == pytest.approx(peak) and float(g(40)) == pytest.approx(0.0, abs=1e-18)
    assert float(g(20)) == pytest.approx(peak / 2, rel=1e-12)


def test_multistep_schedule_against_hand_values():
    # warmup 10 steps to 1e-3, then x0.5 at steps 30 and 60 (PyTorch MultiStepLR per step)
    cfg = OptimConfig(schedule="multistep", warmup_steps=10, milestones=(30, 60), gamma=0.5)
    f = schedule(1e-3, cfg, total_steps=100)
    want = {0: 0.0, 5: 5e-4, 10: 1e-3, 29: 1e-3, 30: 5e-4, 59: 5e-4, 60: 2.5e-4, 99: 2.5e-4}
    for t, lr in want.items():
        assert float(f(t)) == pytest.approx(lr, rel=1e-12, abs=1e-18), t


@pytest.mark.parametrize(
    "kw, field",
    [(dict(schedule="multistep"), "optim.milestones"), (dict(schedule="multistep", milestones=(50, 20)), "optim.milestones"),
     (dict(schedule="multistep", milestones=(10,), gamma=0.0), "optim.gamma"), (dict(dt_lr=-1.0), "optim.dt_lr"),
     (dict(schedule="plateau", patience=-1), "optim.patience")],
)  # fmt: skip
def test_bad_schedule_values_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        OptimConfig(**kw)


def _adam_mu(opt_state, label):
    """The first-moment estimates of one parameter group."""
    states = [opt_state] if isinstance(opt_state, optax.transforms.PartitionState) else opt_state
    part = next(s for s in states if isinstance(s, optax.transforms.PartitionState))
    inner = part.inner_states[label].inner_state.inner_state
    return next(s for s in inner if isinstance(s, optax.ScaleByAdamState)).mu


def test_gradient_clipping_by_global_norm():
    model = _model("s4d")
    params = eqx.filter(model, eqx.is_array)
    n = sum(x.size for x in jax.tree_util.tree_leaves(params))
    tx, _ = make_optimizer(model, OptimConfig(clip_norm=1.0, b1=0.9), total_steps=10)
    grads = jax.tree_util.tree_map(lambda p: 10.0 * jnp.ones_like(p), params)  # global norm 10 sqrt(n)
    _, state = tx.update(grads, tx.init(params), params)
    for label in ("ssm", "decay", "no_decay"):
        for m in jax.tree_util.tree_leaves(_adam_mu(state, label)):
            # clipped gradient 1/sqrt(n) everywhere; mu = (1 - b1) g
            np.testing.assert_allclose(np.asarray(m)[np.asarray(m) != 0], 0.1 / math.sqrt(n), rtol=1e-12)


def test_gradient_accumulation_matches_the_full_batch():
    from ssm.train.state import init_state
    from ssm.train.step import make_train_step

    mcfg = ModelConfig(layer="s4d", d_model=4, n_layers=2, d_state=4, norm="layer", dropout=0.0)
    info = INFO
    rng = np.random.default_rng(0)
    batch = {"inputs": jnp.asarray(rng.normal(size=(8, 8, 2))), "targets": jnp.asarray(rng.integers(0, 3, 8), jnp.int32)}
    results = []
    for accum in (1, 2, 4):
        abstract = eqx.filter_eval_shape(make_model, mcfg, info, key=jax.random.PRNGKey(0))[0]
        tx, _ = make_optimizer(abstract, OptimConfig(lr=1e-2, schedule="constant"), 10)
        state = init_state(mcfg, info, tx, jax.random.PRNGKey(1))
        step = make_train_step(tx, info.task, accum)
        new, m = step(state, dict(batch))
        results.append((float(m["loss"]), float(m["grad_norm"]), _adam_mu(new.opt_state, "decay")))
    for loss, gnorm, mu in results[1:]:
        assert loss == pytest.approx(results[0][0], rel=1e-13)
        assert gnorm == pytest.approx(results[0][1], rel=1e-12)
        for a, b in zip(jax.tree_util.tree_leaves(mu), jax.tree_util.tree_leaves(results[0][2]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-16)


def _plateau_scales(values, cfg, maximize):
    from ssm.train.optimizer import plateau_scale, plateau_update, scale_by_plateau

    st = scale_by_plateau().init(None)
    out = []
    for v in values:
        st = plateau_update(st, v, cfg, maximize=maximize)
        out.append(plateau_scale(st))
    return out


def test_plateau_follows_reduce_lr_on_plateau_by_hand():
    # PyTorch ReduceLROnPlateau(mode, factor=γ, patience=2, threshold=1e-4 'rel'), one step per value,
    # worked by hand: a reduction after the 3rd validation without a relative improvement above 1e-4.
    cfg = OptimConfig(schedule="plateau", gamma=0.5, patience=2)
    acc = [0.5, 0.6, 0.60005, 0.6, 0.6, 0.7, 0.65, 0.65, 0.65, 0.66, 0.7, 0.7, 0.7]
    want = [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125]
    assert _plateau_scales(acc, cfg, maximize=True) == pytest.approx(want, rel=0, abs=0)
    # min mode on a loss, floored at min_lr_ratio
    cfg = OptimConfig(schedule="plateau", gamma=0.1, patience=0, min_lr_ratio=0.005)
    loss = [2.0, 1.9, 1.9, 1.8999, 1.95, 1.0, 1.0]
    assert _plateau_scales(loss, cfg, maximize=False) == pytest.approx([1, 1, 0.1, 0.01, 0.005, 0.005, 0.005])


def test_plateau_scale_multiplies_every_groups_update():
    from ssm.train.optimizer import plateau_update

    lr, ssm_lr, eps = 1e-2, 1e-3, 1e-8
    model = _model("s4d")
    cfg = OptimConfig(lr=lr, ssm_lr=ssm_lr, eps=eps, schedule="plateau", gamma=0.25, patience=0)
    params = eqx.filter(model, eqx.is_array)
    tx, _ = make_optimizer(model, cfg, total_steps=10)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    st = tx.init(params)
    st = plateau_update(plateau_update(st, 0.9, cfg, maximize=True), 0.8, cfg, maximize=True)  # one reduction
    updates, _ = tx.update(grads, st, params)
    for u, label in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(param_labels(model, cfg)),
                        strict=True):  # fmt: skip
        peak = ssm_lr if label == "ssm" else lr
        np.testing.assert_allclose(np.asarray(u), -0.25 * peak / (1 + eps), rtol=1e-6)
