"""The adaptive LM's memory-lean loss: ``log p(target)`` from the blocked (online log-sum-exp) adaptive softmax equals
the whole-vocabulary log-probabilities (a naive numpy softmax of every cluster, and the ``(L, V)`` path) in value
and gradient (float64); the trainer's LM loss and accuracy use it; and its jaxpr, gradient included, holds no array
of a position axis by a vocabulary / cluster axis."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm.nn as nn
from ssm.backbones import Backbone
from ssm.train.metrics import example_metrics, reduce_sums
from ssm.train.step import batch_sums

KEY = jax.random.key(0)
V, CUT = 70, (10, 25, 45)  # shortlist 10, three tail clusters of 15, 20 and 25 words
STARTS, ENDS = (0, 10, 25, 45), (10, 25, 45, 70)
# Sizes of every vocabulary axis of the adaptive softmax: V, the head (shortlist + 3 cluster logits), the tails.
VOCAB_DIMS = {V, 10 + 3, 15, 20, 25}


def randomise(module, key):
    leaves, tree = jax.tree_util.tree_flatten(module)
    keys = jax.random.split(jax.random.key(key), len(leaves))
    new = [0.5 * jax.random.normal(k, x.shape, x.dtype) if eqx.is_array(x) else x for k, x in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(tree, new)


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def naive_log_probs(soft, emb, h):
    """Every word's log-probability, written out per cluster (tied tables, tie_projs [True, False, True])."""
    W = [np.asarray(w) for w in emb.weights]
    Pm = [np.asarray(soft.projs[0]), np.asarray(emb.projs[1]), np.asarray(soft.projs[2]), np.asarray(emb.projs[3])]
    b = [np.asarray(x) for x in soft.biases]
    head = np_log_softmax(
        h @ Pm[0] @ np.concatenate([W[0], np.asarray(soft.cluster_weight)]).T
        + np.concatenate([b[0], np.asarray(soft.cluster_bias)])
    )
    out = np.zeros((h.shape[0], V))
    out[:, :10] = head[:, :10]
    for i in (1, 2, 3):
        col = 10 + 3 - i  # cluster i is the head's column -i
        out[:, STARTS[i] : ENDS[i]] = head[:, col : col + 1] + np_log_softmax(h @ Pm[i] @ W[i].T + b[i])
    return out


def modules(chunk, dropout=0.0):
    emb = randomise(nn.AdaptiveEmbedding(V, 8, 6, CUT, 2, key=KEY), 2)
    soft = nn.AdaptiveLogSoftmax(V, 8, 6, CUT, 2, tie_weights=True, tie_projs=[True, False, True], dropout=dropout,
                                 chunk=chunk, key=KEY)  # fmt: skip
    return emb, randomise(soft, 3)


# Every cluster's first and last word, then random ones.
TARGETS = np.concatenate([[0, 9, 10, 24, 25, 44, 45, 69], np.random.default_rng(0).integers(0, V, 5)])


@pytest.mark.parametrize("chunk", [4, 64])  # blocks with a padded last block; one block per cluster
def test_scores_equal_naive_softmax_float64(chunk):
    emb, soft = modules(chunk)
    h = np.random.default_rng(1).standard_normal((len(TARGETS), 6))
    ref = naive_log_probs(soft, emb, h)
    logp, best = jax.jit(lambda h, t: soft.scores(h, t, emb))(jnp.asarray(h), jnp.asarray(TARGETS))
    np.testing.assert_allclose(logp, ref[np.arange(len(TARGETS)), TARGETS], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(best, ref.max(-1), rtol=1e-12, atol=1e-13)


def test_scores_and_gradient_equal_full_path_with_dropout_float64():
    emb, soft = modules(4, dropout=0.3)
    L = len(TARGETS)
    h = jnp.asarray(np.random.default_rng(2).standard_normal((L, 6)))
    t = jnp.asarray(TARGETS)
    w = jnp.asarray(np.random.default_rng(3).uniform(0.5, 1.5, L))  # distinct weights: per-position gradients
    key = jax.random.key(7)

    def lean(soft, emb, h):
        return jnp.sum(w * soft(h, t, emb, key=key))

    def full(soft, emb, h):
        return jnp.sum(w * jnp.take_along_axis(soft.log_probs(h, emb, key=key), t[:, None], axis=1)[:, 0])

    (v1, g1), (v2, g2) = (eqx.filter_jit(eqx.filter_value_and_grad(f))((soft, emb, h)) for f in (
        lambda a: lean(*a), lambda a: full(*a)))  # fmt: skip
    np.testing.assert_allclose(v1, v2, rtol=1e-12)
    leaves1, leaves2 = jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)
    assert len(leaves1) == len(leaves2) > 0
    for a, b in zip(leaves1, leaves2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    # Every array takes part except the embedding's untied projections of clusters 0 and 2 (input side only).
    assert sum(bool(np.abs(np.asarray(b)).max() > 0) for b in leaves2) == len(leaves2) - 2
    # Dropout acts: another key gives another value.
    assert not np.isclose(lean(soft, emb, h), jnp.sum(w * soft(h, t, emb, key=jax.random.key(8))))


def small_lm():
    # One FFN sub-layer as the backbone keeps compilation short: the loss path is what is tested here (the
    # [SSM, SSM, FFN] stack's own tests are in test_nn_adaptive.py and test_nn_blocks.py).
    pattern = [nn.ffn_sublayer(2, dropout=0.2)]
    m = nn.AdaptiveLM(V, 8, 1, pattern=pattern, cutoffs=CUT, div_val=2, dropemb=0.2, dropsoft=0.2, softmax_chunk=4,
                      key=KEY)  # fmt: skip
    return Backbone(eqx.tree_at(lambda m: m.softmax, m, randomise(m.softmax, 4)), "log_probs")


ST = eqx.nn.State(eqx.nn.Identity())  # the trainer's (empty) model state


def lm_batch(B=3, L=12):
    rng = np.random.default_rng(4)
    return {
        "inputs": jnp.asarray(rng.integers(0, V, (B, L))),
        "targets": jnp.asarray(rng.integers(0, V, (B, L))),
        "lengths": jnp.asarray([L, 7, L]),
        "weights": jnp.asarray([1.0, 1.0, 0.0]),  # the last example is padding
    }


def full_path_sums(model, batch, keys):
    """The trainer's loss before the lean path: whole-vocabulary log-probabilities, then the generic LM metrics."""
    lp = jax.vmap(lambda x, k: model(x, ST, key=k)[0])(batch["inputs"], keys)
    return reduce_sums(jax.vmap(lambda o, ex: example_metrics(o, ex, "lm"))(lp, batch), batch["weights"])


def test_trainer_lm_loss_uses_scores_and_equals_full_path_float64():
    """Training (dropout, keys) and evaluation (inference mode) sums; the gradients of the two paths agree by the
    module test above (its gradient with respect to the features ``h`` carries the backbone's)."""
    model, batch = small_lm(), lm_batch()
    keys = jax.random.split(jax.random.key(9), 3)

    @eqx.filter_jit
    def both(model):
        ev = eqx.nn.inference_mode(model)  # as ssm.train.step.make_eval_step: no dropout, no keys
        no_keys = jax.vmap(lambda x: ev(x, ST)[0])(batch["inputs"])
        ev_full = reduce_sums(jax.vmap(lambda o, e: example_metrics(o, e, "lm"))(no_keys, batch), batch["weights"])
        return (batch_sums(model, ST, batch, "lm", keys)[0], full_path_sums(model, batch, keys),
                batch_sums(ev, ST, batch, "lm", None)[0], ev_full)  # fmt: skip

    s1, s2, e1, e2 = both(model)
    assert model.scores_targets
    for a, b in ((s1, s2), (e1, e2)):
        for k in ("loss", "accuracy"):
            np.testing.assert_allclose(a[k][0], b[k][0], rtol=1e-12)
            np.testing.assert_allclose(a[k][1], b[k][1], rtol=0)
    assert s1["loss"][1] == 12 + 7  # the padded example and the positions after its length do not count
    assert not np.isclose(s1["loss"][0], e1["loss"][0])  # dropout acts in training only


def array_shapes(jaxpr):
    """Shapes of every intermediate of a jaxpr, sub-jaxprs (scan bodies, checkpoints, jit calls) included."""
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield tuple(getattr(v.aval, "shape", ()))
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else (p,):
                if hasattr(sub, "jaxpr") and hasattr(sub, "consts"):
                    yield from array_shapes(sub.jaxpr)
                elif hasattr(sub, "eqns"):
                    yield from array_shapes(sub)


def test_training_gradient_has_no_position_by_vocabulary_array():
    model, batch = small_lm(), lm_batch()
    L = batch["inputs"].shape[1]
    assert L not in VOCAB_DIMS
    keys = jax.random.split(jax.random.key(9), 3)

    def position_by_vocab(f):
        jaxpr = jax.make_jaxpr(eqx.filter_grad(f))(model).jaxpr
        return [s for s in array_shapes(jaxpr) if L in s and VOCAB_DIMS & set(s)]

    found = position_by_vocab(lambda m: batch_sums(m, ST, batch, "lm", keys)[0]["loss"][0])
    assert found == [], f"(L, vocabulary) intermediates in the lean loss: {sorted(set(found))}"
    # The detector does see them in the whole-vocabulary path.
    assert (3, L, V) in position_by_vocab(lambda m: full_path_sums(m, batch, keys)["loss"][0])
