"""EMA of the weights (``--optim.ema-decay``): the recursion, the training step, checkpoints and resume,
evaluation with the averaged weights, loading, and the default (off)."""

from __future__ import annotations

import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _train_helpers import _script, leaves, load_state, register, tiny_config, train_losses
from ssm.config import OptimConfig
from ssm.train import train
from ssm.train.ema import ema_update

DECAY = 0.8


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    register(monkeypatch)


def _reference(thetas: list[np.ndarray], d: float) -> np.ndarray:
    """The official rule written out (state-spaces/s4 src/utils/optim/ema.py): the average is a copy of
    the parameters after the first step, then ema -= (1 - d)(ema - θ) after each later step."""
    e = thetas[0].copy()
    for t in thetas[1:]:
        e -= (1 - d) * (e - t)
    return e


class _Toy(eqx.Module):
    w: jax.Array  # float64
    v: jax.Array  # float32
    n: jax.Array  # int32: not averaged
    name: str = eqx.field(static=True)


def test_ema_update_is_the_official_recursion_float64():
    rng = np.random.default_rng(0)
    k, d = 5, 0.9
    ws = [rng.normal(size=(3, 2)) for _ in range(k + 1)]  # θ_0 (init) .. θ_k
    vs = [rng.normal(size=(4,)).astype(np.float32) for _ in range(k + 1)]
    toys = [_Toy(jnp.asarray(w), jnp.asarray(v), jnp.asarray(i, jnp.int32), "toy")
            for i, (w, v) in enumerate(zip(ws, vs, strict=True))]
    ema = toys[0]
    step = jax.jit(ema_update, static_argnums=2)
    for s in range(k):  # the step from count s to s + 1 made toys[s + 1]
        ema = step(ema, toys[s + 1], d, jnp.asarray(s, jnp.int32))
    assert ema.w.dtype == jnp.float64 and ema.v.dtype == jnp.float32 and ema.n.dtype == jnp.int32
    # closed form: d^(k-1) θ_1 + Σ_{j=2..k} (1-d) d^(k-j) θ_j (θ_0 has no weight)
    closed = d ** (k - 1) * ws[1] + sum((1 - d) * d ** (k - j) * ws[j] for j in range(2, k + 1))
    np.testing.assert_allclose(np.asarray(ema.w), closed, rtol=1e-13, atol=0)
    np.testing.assert_allclose(np.asarray(ema.w), _reference(ws[1:], d), rtol=1e-13, atol=0)
    np.testing.assert_allclose(np.asarray(ema.v), _reference([v.astype(np.float64) for v in vs[1:]], d), rtol=1e-5)
    assert int(ema.n) == k  # non-floating arrays follow the model


def test_train_step_keeps_the_average_of_the_parameters(tmp_path):
    from ssm.train.loop import build
    from ssm.train.pipeline import train_dataset, train_iterator

    cfg = tiny_config(tmp_path / "run", optim=dict(ema_decay=DECAY))
    run = build(cfg)
    state = run.init()
    for a, b in zip(leaves(state.model), leaves(state.ema), strict=True):
        np.testing.assert_array_equal(a, b)  # θ_0 before any step
    ds = train_dataset(run.dataset.load(cfg.data, "train"), seed=0, global_batch=16, n_batches=4)
    it = train_iterator(ds)
    thetas = []
    for _ in range(4):
        state, _ = run.train_step(state, run.to_global(next(it)))
        thetas.append(leaves(state.model))  # copies: the next step donates the buffers
    ema = leaves(state.ema)
    assert ema[0].dtype == np.float64
    for i, e in enumerate(ema):
        ref = _reference([t[i] for t in thetas], DECAY)
        np.testing.assert_allclose(e, ref, rtol=1e-12, atol=1e-14)
    assert any(not np.allclose(e, t) for e, t in zip(ema, thetas[-1]))  # the average is not the last weights


def test_ema_resumes_bit_identically_evaluates_and_loads_the_average(tmp_path):
    from test_train import _InterruptAt

    import ssm
    from ssm.train.loop import build

    straight = tiny_config(tmp_path / "straight", optim=dict(ema_decay=DECAY))
    res = train(straight, verbose=False)
    cfg = tiny_config(tmp_path / "resumed", optim=dict(ema_decay=DECAY))
    tracker = _InterruptAt(os.path.join(cfg.train.run_dir, "metrics.jsonl"), at=6)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tracker=tracker, verbose=False)
    tracker.close()
    assert os.path.isdir(os.path.join(cfg.train.run_dir, "checkpoints", "6", "ema"))
    train(cfg, verbose=False)  # resumes from step 6
    a, _ = load_state(straight)
    b, _ = load_state(cfg)
    assert int(a.step) == int(b.step) == 24 and a.ema is not None
    for x, y in zip(leaves(a.ema), leaves(b.ema), strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert train_losses(straight.train.run_dir) == train_losses(cfg.train.run_dir)

    # the final test metrics are those of the averaged weights, not of the trained ones
    run = build(straight)
    src = run.dataset.load(straight.data, "test")
    from ssm.train.evaluation import evaluate

    kw = dict(task=run.info.task, batch_size=16, to_global=run.to_global)
    m_ema = evaluate(a.ema, a.model_state, src, **kw)
    m_raw = evaluate(a.model, a.model_state, src, **kw)
    assert res["test"] == m_ema and m_raw["loss"] != m_ema["loss"]
    # the best checkpoint was chosen on the validation metric of its averaged weights
    best, meta = load_state(straight, which="best")
    m_best = evaluate(best.ema, best.model_state, run.dataset.load(straight.data, "val"), **kw)
    assert meta["best"]["step"] == int(best.step) and meta["best"]["value"] == m_best[meta["best"]["metric"]]
    from ssm.train.tracker import read_metrics

    logged = [e for e in read_metrics(straight.train.run_dir) if e["split"] == "val" and e["step"] == int(best.step)]
    m_best_raw = evaluate(best.model, best.model_state, run.dataset.load(straight.data, "val"), **kw)
    assert logged[-1]["loss"] == pytest.approx(m_best["loss"], rel=1e-12) and m_best_raw["loss"] != m_best["loss"]

    # ssm.load and scripts/evaluate.py: the average by default, the trained weights on request
    model, _ = ssm.load(straight.train.run_dir, checkpoint="latest")
    for x, y in zip(leaves(model.net), leaves(a.ema), strict=True):
        np.testing.assert_array_equal(x, y)
    raw, _ = ssm.load(straight.train.run_dir, checkpoint="latest", weights="raw")
    for x, y in zip(leaves(raw.net), leaves(a.model), strict=True):
        np.testing.assert_array_equal(x, y)
    ev = _script("evaluate")
    out = ev.evaluate_run(straight.train.run_dir, "test", "latest", weights="raw")
    assert out["weights"] == "raw" and out["metrics"]["loss"] == pytest.approx(m_raw["loss"], rel=1e-12)
    out = ev.evaluate_run(straight.train.run_dir, "test", "latest")
    assert out["weights"] == "ema" and out["metrics"]["loss"] == pytest.approx(m_ema["loss"], rel=1e-12)


def test_off_by_default_and_a_run_recorded_without_the_field_resumes(tmp_path):
    from test_train import _InterruptAt

    import ssm

    assert OptimConfig().ema_decay is None
    cfg = tiny_config(tmp_path / "run", train=dict(steps=8, eval_every=0))
    tracker = _InterruptAt(os.path.join(cfg.train.run_dir, "metrics.jsonl"), at=4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tracker=tracker, verbose=False)
    tracker.close()
    state, _ = load_state(cfg)
    assert int(state.step) == 4 and state.ema is None
    assert not os.path.exists(os.path.join(cfg.train.run_dir, "checkpoints", "4", "ema"))
    # a run directory written before optim.ema_decay existed: its config.json lacks the field
    path = os.path.join(cfg.train.run_dir, "config.json")
    with open(path) as f:
        d = json.load(f)
    del d["optim"]["ema_decay"]
    with open(path, "w") as f:
        json.dump(d, f)
    train(cfg, verbose=False)  # resumes
    assert sorted(train_losses(cfg.train.run_dir)) == list(range(1, 9))
    model, _ = ssm.load(cfg.train.run_dir, checkpoint="latest")  # the trained weights
    state, _ = load_state(cfg)
    assert int(state.step) == 8
    for x, y in zip(leaves(model.net), leaves(state.model), strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="no EMA of the weights"):
        ssm.load(cfg.train.run_dir, weights="ema")
    with pytest.raises(ValueError, match="weights must be"):
        ssm.load(cfg.train.run_dir, weights="average")


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5])
def test_ema_decay_validation(bad):
    with pytest.raises(ValueError, match=r"optim.ema_decay must be in \(0, 1\).*--optim.ema-decay"):
        OptimConfig(ema_decay=bad)


def test_ema_decay_on_the_command_line():
    _, cfg = _script("train").parse(["--cfg", "demo.digits", "--optim.ema-decay", "0.999"])
    assert cfg.optim.ema_decay == 0.999
