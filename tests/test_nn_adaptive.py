"""Adaptive embedding / adaptive log-softmax against naive numpy computations (one cluster == the full softmax;
clustered probabilities == head x tail probabilities, summing to one), the WikiText-103 parameter count from the
official modules, and the AdaptiveLM: step == prefill == forward in float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm
import ssm.nn as nn

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def randomise(module, key=1):
    """Replace every array by random values (the official init has zero projections/weights)."""
    leaves, tree = jax.tree_util.tree_flatten(module)
    keys = jax.random.split(jax.random.key(key), len(leaves))
    new = [0.5 * jax.random.normal(k, x.shape, x.dtype) if eqx.is_array(x) else x for k, x in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(tree, new)


def test_single_cluster_equals_full_softmax():
    V, d, P, L = 30, 6, 5, 7
    soft = randomise(nn.AdaptiveLogSoftmax(V, d, P, (), div_val=1, key=KEY))
    h = RNG.standard_normal((L, P))
    W, b, proj = np.asarray(soft.weights[0]), np.asarray(soft.biases[0]), np.asarray(soft.projs[0])
    ref = log_softmax(h @ proj @ W.T + b)
    np.testing.assert_allclose(soft.log_probs(jnp.asarray(h)), ref, rtol=1e-12)
    target = RNG.integers(0, V, L)
    np.testing.assert_allclose(soft(jnp.asarray(h), jnp.asarray(target)), ref[np.arange(L), target], rtol=1e-12)


@pytest.mark.parametrize("div_val,tie", [(2, True), (1, False), (2, False)])
def test_clusters_head_times_tail_and_normalised(div_val, tie):
    V, d, P, L, cut = 40, 8, 6, 9, (10, 25)
    emb = randomise(nn.AdaptiveEmbedding(V, d, P, cut, div_val, key=KEY), 2)
    soft = randomise(
        nn.AdaptiveLogSoftmax(V, d, P, cut, div_val, tie_weights=tie, tie_projs=[tie, False], key=KEY), 3
    )
    h = RNG.standard_normal((L, P))
    # Naive: resolve every cluster's (W, b, P) by hand, then p(w) = p_head(w) or p_head(cluster) p_tail(w).
    starts, ends = (0, 10, 25), (10, 25, 40)

    def cluster(i):
        if div_val == 1:
            W = np.asarray(emb.weights[0])[starts[i] : ends[i]] if tie else np.asarray(soft.weights[i])
            Pm = np.asarray(emb.projs[0]) if (tie and i == 1) else np.asarray(soft.projs[i])
        else:
            W = np.asarray(emb.weights[i]) if tie else np.asarray(soft.weights[i])
            Pm = np.asarray(emb.projs[i]) if (tie and i == 1) else np.asarray(soft.projs[i])
        return W, np.asarray(soft.biases[i]), Pm

    W0, b0, P0 = cluster(0)
    head = log_softmax(h @ P0 @ np.concatenate([W0, soft.cluster_weight]).T + np.concatenate([b0, soft.cluster_bias]))
    ref = np.zeros((L, V))
    ref[:, :10] = head[:, :10]
    for i in (1, 2):
        Wi, bi, Pi = cluster(i)
        col = 10 + 2 - i  # the official code's head column -i for cluster i
        ref[:, starts[i] : ends[i]] = head[:, col : col + 1] + log_softmax(h @ Pi @ Wi.T + bi)
    lp = soft.log_probs(jnp.asarray(h), emb)
    np.testing.assert_allclose(lp, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.exp(np.asarray(lp)).sum(-1), 1.0, rtol=1e-13)
    target = RNG.integers(0, V, L)
    np.testing.assert_allclose(soft(jnp.asarray(h), jnp.asarray(target), emb), ref[np.arange(L), target], rtol=1e-12)
    # Blocked evaluation (vocabulary rows in blocks of 4, the last block of a cluster padded) gives the same.
    chunked = randomise(
        nn.AdaptiveLogSoftmax(V, d, P, cut, div_val, tie_weights=tie, tie_projs=[tie, False], chunk=4, key=KEY), 3
    )
    np.testing.assert_allclose(chunked(jnp.asarray(h), jnp.asarray(target), emb), ref[np.arange(L), target], rtol=1e-12)


@pytest.mark.parametrize("div_val", [1, 2])
def test_embedding_definition(div_val):
    V, d, P, cut = 40, 8, 6, (10, 25)
    emb = nn.AdaptiveEmbedding(V, d, P, cut, div_val, key=KEY)
    tokens = np.array([0, 9, 10, 24, 25, 39, 3])
    out = np.asarray(emb(jnp.asarray(tokens)))
    for t, row in zip(tokens, out):
        i = int(np.searchsorted(np.array(cut), t, side="right"))
        if div_val == 1:
            e, Pm = np.asarray(emb.weights[0])[t], np.asarray(emb.projs[0])
        else:
            e, Pm = np.asarray(emb.weights[i])[t - (0, 10, 25)[i]], np.asarray(emb.projs[i])
        np.testing.assert_allclose(row, np.sqrt(P) * Pm @ e, rtol=1e-13)
    if div_val == 2:
        assert [w.shape for w in emb.weights] == [(10, 8), (15, 4), (15, 2)]


def test_bad_cutoffs():
    with pytest.raises(ValueError, match="cutoffs"):
        nn.AdaptiveEmbedding(10, 4, 4, (5, 3), key=KEY)


WT103_VOCAB = 267735  # WikiText-103 word vocabulary (with <eos>), n_tokens of the official dataset


def official_wt103_count(n_token=WT103_VOCAB, d=1024, n_layers=16, d_state=64, cutoffs=(19997, 39997, 199997),
                         div_val=4):  # fmt: skip
    """Parameters of state-spaces/s4 configs/experiment/lm/s4-wt103.yaml, module by module:

    - AdaptiveEmbedding(n_token, d, d, cutoffs, div_val) (src/models/nn/adaptive_softmax.py): emb_layers[i]
      (n_i, d/div_val^i) and emb_projs[i] (d, d/div_val^i).
    - ProjectedAdaptiveLogSoftmax (same file), wired by AdaptiveLMTask (src/tasks/tasks.py) with tie_weights (its
      out_layers_weights ARE the embedding tables) and tie_projs [True]*3 (the tails' projections are the
      embedding's; the head's, out_projs[0] (d, d), is its own): cluster_weight (3, d), cluster_bias (3),
      out_layers_biases (n_i) summing to n_token.
    - SequenceModel (backbones/model.py), layer s4s4ff × 16: per sub-layer a SequenceResidualBlock with
      nn.LayerNorm(d) (transposed: false): 2d; S4Block = FFTConv.D (d) + kernel inv_dt (d), C (d, N/2, 2),
      B (1, N/2, 2), A_real, A_imag (1, N/2), P (1, 1, N/2, 2) + output Linear(d, 2d); FFN(expand 4) =
      Linear(d, 4d) + Linear(4d, d). Final nn.LayerNorm(d).
    """
    M = d_state // 2
    ends = list(cutoffs) + [n_token]
    sizes = [b - a for a, b in zip([0] + list(cutoffs), ends)]
    dims = [d // div_val**i for i in range(len(ends))]
    emb = sum(n * di for n, di in zip(sizes, dims)) + sum(d * di for di in dims)
    soft = len(cutoffs) * d + len(cutoffs) + n_token + d * d
    s4block = d + (d + 2 * d * M + 2 * M + 2 * M + 2 * M) + (2 * d * d + 2 * d)
    ffn = (4 * d * d + 4 * d) + (4 * d * d + d)
    backbone = n_layers * (2 * (s4block + 2 * d) + (ffn + 2 * d)) + 2 * d
    return emb + soft + backbone


def test_wt103_param_count_equals_official():
    abstract = eqx.filter_eval_shape(nn.AdaptiveLM, WT103_VOCAB, key=KEY)
    assert nn.count_params(abstract) == official_wt103_count()
    assert abstract.softmax.weights is None and abstract.softmax.projs[1:] == (None, None, None)
    small = eqx.filter_eval_shape(nn.AdaptiveLM, 50, 8, 2, l_max=16, d_state=4, cutoffs=(10, 30), div_val=2, key=KEY)
    assert nn.count_params(small) == official_wt103_count(50, 8, 2, 4, (10, 30), 2)


def test_lm_step_prefill_forward_float64():
    L = 16
    # [S4D, S4D, FFN] keeps compilation short; the [S4, S4, FFN] stack itself is tested in test_nn_blocks.py.
    s4d = nn.ssm_sublayer(ssm.S4D, d_state=4, dropout=0.25)
    pattern = [s4d, s4d, nn.ffn_sublayer(4, dropout=0.25)]
    m = nn.AdaptiveLM(50, 8, 1, pattern=pattern, cutoffs=(10, 30), div_val=2, key=KEY)
    m = eqx.tree_at(lambda m: m.softmax, m, randomise(m.softmax, 4))  # non-zero head projection
    tokens = jax.random.randint(jax.random.key(1), (L,), 0, 50)

    @eqx.filter_jit
    def whole(m, t):  # one compilation for the parallel paths
        lp = m.log_probs(t)
        loss = lambda k: -m(t[:-1], t[1:], key=k).mean()  # noqa: E731
        return lp, m(t[:-1], t[1:]), m.prefill(t)[0], loss(KEY), loss(jax.random.key(5))

    lp, tl, yp, loss1, loss2 = whole(m, tokens)
    np.testing.assert_allclose(np.exp(np.asarray(lp)).sum(-1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(tl, np.asarray(lp)[np.arange(L - 1), np.asarray(tokens[1:])], rtol=1e-12)
    np.testing.assert_allclose(yp, lp, rtol=1e-10, atol=1e-10)
    assert np.isfinite(loss1) and loss1 != loss2  # dropout (0.25 everywhere) acts with a key
    step = eqx.filter_jit(lambda m, t, s: m.step(t, s))
    state, out = m.init_state(), []
    for t in tokens:
        o, state = step(m, t, state)
        out.append(o)
    np.testing.assert_allclose(np.stack(out), lp, rtol=1e-10, atol=1e-10)
