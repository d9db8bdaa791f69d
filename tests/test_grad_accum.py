"""Gradient accumulation optimizes the whole batch's objective: for token-weighted losses (language
models) the step's gradient is ∇(Σ token losses / Σ tokens) of the full batch, whatever the split into
micro-batches (float64)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.model import make_model
from ssm.train.state import TrainState
from ssm.train.step import make_train_step

V, L = 5, 8


def _lm_batch():
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (4, L)).astype(np.int32)
    y = rng.integers(0, V, (4, L)).astype(np.int32)
    return {"inputs": x, "targets": y, "lengths": np.array([8, 8, 1, 1], np.int32)}


def _naive_token_loss(model, model_state, batch, weighting: str):
    """Cross-entropy written out here: ``"tokens"`` = Σ over real tokens / their number (the objective);
    ``"micro-means"`` = the mean over two micro-batches of their per-token means (the wrong one)."""
    per_ex_sum, per_ex_n = [], []
    for b in range(batch["inputs"].shape[0]):
        logits, _ = model(jnp.asarray(batch["inputs"][b]), model_state)
        z = logits - jnp.max(logits, axis=-1, keepdims=True)
        logp = z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))
        n = int(batch["lengths"][b])
        t = batch["targets"][b]
        per_ex_sum.append(-jnp.sum(logp[np.arange(n), t[:n]]))
        per_ex_n.append(n)
    if weighting == "tokens":
        return sum(per_ex_sum) / sum(per_ex_n)
    halves = [(0, 2), (2, 4)]
    return sum(sum(per_ex_sum[a:b]) / sum(per_ex_n[a:b]) for a, b in halves) / len(halves)


def test_lm_grad_accum_equals_full_batch_gradient():
    info = DatasetInfo(task="lm", d_input=V, d_output=V, seq_len=L, tokens=True)
    cfg = ModelConfig(layer="s4d", d_model=8, n_layers=1, d_state=4, norm="layer", dropout=0.0, pool="none")
    model, model_state = make_model(cfg, info, key=jax.random.PRNGKey(1))
    batch = _lm_batch()
    params = eqx.filter(model, eqx.is_array)
    # jitted: the same written-out sums as one program, not op by op (eager dispatch was most of the test's time)
    ref = eqx.filter_jit(eqx.filter_grad(lambda m: _naive_token_loss(m, model_state, batch, "tokens")))(model)
    wrong = eqx.filter_jit(eqx.filter_grad(lambda m: _naive_token_loss(m, model_state, batch, "micro-means")))(model)
    before = [np.array(a) for a in jax.tree_util.tree_leaves(params)]
    ref_leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(ref)]
    wrong_leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(wrong)]
    # the two objectives really differ here (so the comparison below can fail)
    rel = np.linalg.norm(np.concatenate([(w - r).ravel() for w, r in zip(wrong_leaves, ref_leaves)])) / np.linalg.norm(
        np.concatenate([r.ravel() for r in ref_leaves])
    )
    assert rel > 0.5, rel

    tx = optax.sgd(1.0)  # new params = params - gradient
    for accum in (2,):  # the split of the issue: micro-batches of lengths [8, 8] and [1, 1]
        fresh = jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True) if eqx.is_array(a) else a, model)
        state = TrainState(jnp.zeros((), jnp.int32), fresh, model_state, tx.init(params), jax.random.PRNGKey(2))
        step = make_train_step(tx, "lm", accum)
        new, m = step(state, {k: jnp.asarray(v) for k, v in batch.items()})
        after = [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(new.model, eqx.is_array))]
        for b, a, g in zip(before, after, ref_leaves, strict=True):
            np.testing.assert_allclose(b - a, g, rtol=1e-10, atol=1e-13)
        naive = eqx.filter_jit(lambda m: _naive_token_loss(m, model_state, batch, "tokens"))(model)
        np.testing.assert_allclose(float(m["loss"]), float(naive), rtol=1e-12)
