"""Adaptive input embeddings (Baevski & Auli 2019) and the projected adaptive log-softmax (Grave et al. 2017), as
state-spaces/s4 ``src/models/nn/adaptive_softmax.py`` (``AdaptiveEmbedding``, ``ProjectedAdaptiveLogSoftmax``) and
``src/tasks/tasks.py`` ``AdaptiveLMTask`` wire them for WikiText-103 (``configs/pipeline/wt103.yaml``,
``configs/experiment/lm/s4-wt103.yaml``: cutoffs 19997/39997/199997, ``div_val`` 4, ``dropemb`` = ``dropsoft`` =
0.25, ``init_scale`` 0.5, ``bias_scale`` 1, tied weights and tail projections).

The vocabulary is split at ``cutoffs`` into a shortlist (cluster 0) and tail clusters ``i = 1…n``; cluster ``i``
embeds in ``d_i = d_embed / div_val^i`` dimensions and projects to ``d_proj`` with ``P_i (d_proj, d_i)``::

    embed(w) = √d_proj · P_i E_i[w - l_i]                                         (w in cluster i)
    head(h)  = log_softmax([W_0 ; W_c] (P_0ᵀ h) + [b_0 ; b_c])                   (shortlist + n cluster logits)
    log p(w | h) = head(h)[w]                                                      (w in the shortlist)
                 = head(h)[n_short + n - i] + log_softmax(W_i (P_iᵀ h) + b_i)[w - l_i]   (w in tail cluster i)

(cluster ``i`` takes head column ``-i``, as the official code). With ``tie_weights`` the output ``W_i`` are the
embedding tables ``E_i``; with ``tie_projs[i]`` the output ``P_i`` is the embedding's, except the head's
projection, which the official code never ties. Tied arrays live only in the embedding and are passed to the
softmax at call time, so they are one set of parameters.

The loss needs only ``log p(target_t | h_t)``: :meth:`AdaptiveLogSoftmax.scores` computes it (and the largest
log-probability of the vocabulary, for accuracy) without the ``(L, V)`` log-probabilities (8.8 GB per example at
WikiText-103's L = 8192, V = 267,735). The official code gathers the positions of each tail cluster (a
data-dependent shape, not traceable); here every cluster's normaliser ``logsumexp_w z_w`` is accumulated over blocks
of ``chunk`` vocabulary rows, the streaming ("online") log-sum-exp of Milakov & Gimelshein 2018, "Online normalizer
calculation for softmax" (arXiv:1805.02867), with its gradient written out (:mod:`ssm.nn.logsumexp`), so that no
``(L, n_cluster)`` array is stored either: the largest intermediate is ``(L, chunk)``. Exact, not an approximation.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ssm.nn.dropout import dropout as apply_dropout
from ssm.nn.logsumexp import blocked_stats as _blocked_stats


def _normal(key: PRNGKeyArray, shape: tuple[int, ...], std: float, dtype) -> Array:
    return std * jax.random.normal(key, shape, dtype)


class AdaptiveEmbedding(eqx.Module):
    """``tokens (L,) -> (L, d_proj)``. ``weights``: one table ``(n_token, d_embed)`` if ``div_val == 1`` else one
    ``(n_i, d_i)`` per cluster; ``projs``: the matching ``(d_proj, d_i)`` (none if ``div_val == 1`` and
    ``d_proj == d_embed``). Init (``init_scale`` s): ``E_i ~ N(0, s²/d_i)``, ``P_i ~ N(0, s²/d_proj)``."""

    weights: tuple[Float[Array, "n d"], ...]
    projs: tuple[Float[Array, "P d"], ...]
    n_token: int = eqx.field(static=True)
    d_embed: int = eqx.field(static=True)
    d_proj: int = eqx.field(static=True)
    cutoffs: tuple[int, ...] = eqx.field(static=True)  # ends of the clusters, the last is n_token
    div_val: int = eqx.field(static=True)
    dropout: float = eqx.field(static=True)

    def __init__(self, n_token: int, d_embed: int, d_proj: int, cutoffs: Sequence[int] = (), div_val: int = 1,
                 init_scale: float | None = 1.0, dropout: float = 0.0, dtype=None, *, key: PRNGKeyArray):  # fmt: skip
        ends = _check_cutoffs(cutoffs, n_token)
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        self.n_token, self.d_embed, self.d_proj, self.cutoffs = n_token, d_embed, d_proj, ends
        self.div_val, self.dropout = div_val, dropout
        emb_std = lambda d: 0.02 if init_scale is None else init_scale * d**-0.5  # noqa: E731
        proj_std = 0.01 if init_scale is None else init_scale * d_proj**-0.5
        keys = jax.random.split(key, 2 * len(ends))
        if div_val == 1:
            self.weights = (_normal(keys[0], (n_token, d_embed), emb_std(d_embed), dtype),)
            self.projs = () if d_proj == d_embed else (_normal(keys[1], (d_proj, d_embed), proj_std, dtype),)
        else:
            starts = (0,) + ends[:-1]
            dims = [d_embed // div_val**i for i in range(len(ends))]
            self.weights = tuple(
                _normal(keys[2 * i], (r - l, d), emb_std(d), dtype)
                for i, (l, r, d) in enumerate(zip(starts, ends, dims))
            )
            self.projs = tuple(_normal(keys[2 * i + 1], (d_proj, d), proj_std, dtype) for i, d in enumerate(dims))

    def cluster_weight(self, i: int) -> Float[Array, "n d"]:
        """The table of cluster ``i``, ``(n_i, d_i)``."""
        if self.div_val == 1:
            starts = (0,) + self.cutoffs[:-1]
            return self.weights[0][starts[i] : self.cutoffs[i]]
        return self.weights[i]

    def cluster_proj(self, i: int) -> Float[Array, "P d"] | None:
        """The projection of cluster ``i``, ``(d_proj, d_i)``, or None (identity)."""
        if not self.projs:
            return None
        return self.projs[0] if self.div_val == 1 else self.projs[i]

    def __call__(self, tokens: Int[Array, " L"], *, key: PRNGKeyArray | None = None) -> Float[Array, "L P"]:
        if self.div_val == 1:
            e = apply_dropout(self.weights[0][tokens], self.dropout, key)
            if self.projs:
                e = e @ self.projs[0].T
            return e * self.d_proj**0.5
        keys = [None] * len(self.cutoffs) if key is None else list(jax.random.split(key, len(self.cutoffs)))
        starts = (0,) + self.cutoffs[:-1]
        out = jnp.zeros(tokens.shape + (self.d_proj,), self.weights[0].dtype)
        for i, (l, r) in enumerate(zip(starts, self.cutoffs)):
            # Every cluster looks up a clipped index; the cluster that owns the token is selected.
            e = self.weights[i][jnp.clip(tokens - l, 0, r - l - 1)]
            e = apply_dropout(e, self.dropout, keys[i]) @ self.projs[i].T
            out = jnp.where(((tokens >= l) & (tokens < r))[..., None], e, out)
        return out * self.d_proj**0.5


def _check_cutoffs(cutoffs: Sequence[int], n_token: int) -> tuple[int, ...]:
    cuts = tuple(int(c) for c in cutoffs)
    if any(b <= a for a, b in zip((0,) + cuts, cuts + (n_token,))):
        raise ValueError(
            f"adaptive softmax: cutoffs {list(cuts)} must increase strictly within (0, n_token={n_token}); "
            "pass e.g. --cutoffs 19997 39997 199997 for WikiText-103 or () for one cluster."
        )
    return cuts + (n_token,)


class AdaptiveLogSoftmax(eqx.Module):
    """``ProjectedAdaptiveLogSoftmax``: log-probabilities from hidden states ``(L, d_proj)``.

    Own parameters: ``cluster_weight (n, d_embed)``, ``cluster_bias (n,)`` (zeros), per-cluster ``biases``
    (``U(±bias_scale/√d_proj)``), the untied per-cluster ``weights`` (zeros; None when ``tie_weights``) and the
    untied ``projs`` (zeros ``(d_proj, d_i)``; None where tied, or where no projection exists). Tied arrays come
    from the ``embedding`` argument of the calls.
    """

    cluster_weight: Float[Array, "c d"] | None
    cluster_bias: Float[Array, " c"] | None
    biases: tuple[Float[Array, " n"], ...]
    weights: tuple[Float[Array, "n d"], ...] | None
    projs: tuple[Float[Array, "P d"] | None, ...]
    n_token: int = eqx.field(static=True)
    d_embed: int = eqx.field(static=True)
    d_proj: int = eqx.field(static=True)
    cutoffs: tuple[int, ...] = eqx.field(static=True)
    div_val: int = eqx.field(static=True)
    tie_projs: tuple[bool, ...] = eqx.field(static=True)  # per cluster, the head's always False
    dropout: float = eqx.field(static=True)
    chunk: int = eqx.field(static=True)  # vocabulary rows per block of the target scores (memory: L x chunk)

    def __init__(self, n_token: int, d_embed: int, d_proj: int, cutoffs: Sequence[int] = (), div_val: int = 1,
                 tie_weights: bool = False, tie_projs: bool | Sequence[bool] = False, bias_scale: float = 0.0,
                 dropout: float = 0.0, chunk: int = 2048, dtype=None, *, key: PRNGKeyArray):  # fmt: skip
        ends = _check_cutoffs(cutoffs, n_token)
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        n_clusters = len(ends) - 1
        tp = [tie_projs] * n_clusters if isinstance(tie_projs, bool) else list(tie_projs)
        if len(tp) != n_clusters:
            raise ValueError(f"tie_projs: one flag per tail cluster ({n_clusters}), got {len(tp)}.")
        self.n_token, self.d_embed, self.d_proj, self.cutoffs = n_token, d_embed, d_proj, ends
        self.div_val, self.tie_projs, self.dropout, self.chunk = div_val, tuple([False] + tp), dropout, chunk
        starts = (0,) + ends[:-1]
        dims = [d_embed if div_val == 1 else d_embed // div_val**i for i in range(len(ends))]
        self.cluster_weight = jnp.zeros((n_clusters, d_embed), dtype) if n_clusters else None
        self.cluster_bias = jnp.zeros((n_clusters,), dtype) if n_clusters else None
        bound = bias_scale * d_proj**-0.5
        keys = jax.random.split(key, len(ends))
        self.biases = tuple(
            jax.random.uniform(k, (r - l,), dtype, -bound, bound) for k, l, r in zip(keys, starts, ends)
        )
        self.weights = (
            None if tie_weights else tuple(jnp.zeros((r - l, d), dtype) for l, r, d in zip(starts, ends, dims))
        )
        has_proj = div_val != 1 or d_proj != d_embed
        self.projs = tuple(
            None if (self.tie_projs[i] or not has_proj) else jnp.zeros((d_proj, d), dtype) for i, d in enumerate(dims)
        )

    def _cluster(self, i: int, embedding: AdaptiveEmbedding | None) -> tuple[Array, Array | None]:
        if self.weights is None or self.tie_projs[i]:
            if embedding is None:
                raise ValueError(
                    "AdaptiveLogSoftmax with tied weights/projections needs embedding=<the AdaptiveEmbedding>."
                )
        W = embedding.cluster_weight(i) if self.weights is None else self.weights[i]
        P = embedding.cluster_proj(i) if self.tie_projs[i] else self.projs[i]
        return W, P

    def _logits(self, h: Array, W: Array, b: Array, P: Array | None, key: PRNGKeyArray | None) -> Array:
        if P is None:
            return h @ W.T + b
        return apply_dropout(h @ P, self.dropout, key) @ W.T + b

    def _head_and_tails(self, h: Float[Array, "L P"], embedding, key) -> tuple[Array, list[Array]]:
        n_clusters = len(self.cutoffs) - 1
        keys = [None] * (n_clusters + 1) if key is None else list(jax.random.split(key, n_clusters + 1))
        W0, P0 = self._cluster(0, embedding)
        if n_clusters:
            W0 = jnp.concatenate([W0, self.cluster_weight])
            b0 = jnp.concatenate([self.biases[0], self.cluster_bias])
        else:
            b0 = self.biases[0]
        head = jax.nn.log_softmax(self._logits(h, W0, b0, P0, keys[0]), axis=-1)
        tails = []
        for i in range(1, n_clusters + 1):
            Wi, Pi = self._cluster(i, embedding)
            tails.append(jax.nn.log_softmax(self._logits(h, Wi, self.biases[i], Pi, keys[i]), axis=-1))
        return head, tails

    def log_probs(
        self, h: Float[Array, "L P"], embedding: AdaptiveEmbedding | None = None, *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "L V"]:
        """Log-probabilities of the whole vocabulary ``(L, n_token)`` (the official ``compute_logits``)."""
        head, tails = self._head_and_tails(h, embedding, key)
        out = [head[:, : self.cutoffs[0]]]
        for i, tail in enumerate(tails, start=1):
            out.append(head[:, -i][:, None] + tail)
        return jnp.concatenate(out, axis=-1)

    def scores(
        self,
        h: Float[Array, "L P"],
        target: Int[Array, " L"],
        embedding: AdaptiveEmbedding | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, " L"], Float[Array, " L"]]:
        """``(log p(target_t | h_t), max_w log p(w | h_t))`` per position, without the ``(L, V)`` log-probabilities::

            log p(w) = z0_w - lse_head                                        (w in the shortlist)
                     = zc_i - lse_head + z_i,w - lse_i                        (w in tail cluster i)
            lse_head = logaddexp(logsumexp_w z0_w, logsumexp_i zc_i)

        (``z0`` the shortlist logits, ``zc`` the head's cluster logits, ``z_i`` tail ``i``'s). Dropout (``key``) is
        drawn as in :meth:`log_probs`, so both give the same values for the same key."""
        n_clusters = len(self.cutoffs) - 1
        keys = [None] * (n_clusters + 1) if key is None else list(jax.random.split(key, n_clusters + 1))
        starts = (0,) + self.cutoffs[:-1]
        stats, xs = [], []
        for i, (l, r) in enumerate(zip(starts, self.cutoffs)):
            W, P = self._cluster(i, embedding)
            xs.append(h if P is None else apply_dropout(h @ P, self.dropout, keys[i]))
            local = jnp.where((target >= l) & (target < r), target - l, -1)  # -1: not in this cluster
            stats.append(_blocked_stats(xs[i], W, self.biases[i], local, self.chunk))
        lse0, max0, zt0 = stats[0]
        if not n_clusters:
            return zt0 - lse0, max0 - lse0
        zc = xs[0] @ self.cluster_weight.T + self.cluster_bias  # (L, n_clusters): head column -i is cluster i
        lse_head = jnp.logaddexp(lse0, jax.nn.logsumexp(zc, axis=-1))
        logp, best = zt0 - lse_head, max0 - lse_head
        for i in range(1, n_clusters + 1):
            lse_i, max_i, zt_i = stats[i]
            head_i = zc[:, n_clusters - i] - lse_head
            logp = jnp.where((target >= starts[i]) & (target < self.cutoffs[i]), head_i + (zt_i - lse_i), logp)
            best = jnp.maximum(best, head_i + (max_i - lse_i))
        return logp, best

    def __call__(
        self,
        h: Float[Array, "L P"],
        target: Int[Array, " L"],
        embedding: AdaptiveEmbedding | None = None,
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, " L"]:
        """``log p(target_t | h_t)`` for every position (negate and average for the official loss)."""
        return self.scores(h, target, embedding, key=key)[0]

