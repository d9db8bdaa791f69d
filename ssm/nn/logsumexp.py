"""Per-row log-sum-exp, maximum and one target logit of ``z = x Wᵀ + b`` over a large output vocabulary, without
materialising ``z`` (used by :meth:`ssm.nn.AdaptiveLogSoftmax.scores`).

The forward pass walks blocks of vocabulary rows with the streaming ("online") log-sum-exp of Milakov & Gimelshein
2018, "Online normalizer calculation for softmax" (arXiv:1805.02867)::

    m_k = max(m_{k-1}, max_{w in block k} z_w),   s_k = s_{k-1} exp(m_{k-1} - m_k) + sum_{w in block k} exp(z_w - m_k)
    logsumexp_w z_w = m_K + log s_K

and keeps only ``lse = m_K + log s_K`` per row. The gradient is written out (``jax.custom_vjp``): with the final
``lse`` known, block ``k``'s softmax is ``p = exp(z_k - lse)`` directly, so the backward pass recomputes each block's
logits once and forms ``∂z = ḡ_lse p + ḡ_t e_target`` (``e_target`` the target's one-hot), then ``∂x = Σ_k ∂z_k W_k``,
``∂W_k = ∂z_kᵀ x``, ``∂b_k = Σ_rows ∂z_k``. Differentiating the scan instead (rematerialised with ``jax.checkpoint``)
also replays the running maximum and rescaling of every block. The maximum is returned for accuracy only and has no
gradient when blocked, as before. Blocks are of equal size (``ceil(n / ceil(n / chunk))`` rows), so at most ``n_blocks - 1`` padding
rows are computed; padding rows have bias ``-inf`` (zero probability). The largest intermediate is ``(L, block)``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def blocked_stats(
    x: Float[Array, "L d"], W: Float[Array, "n d"], b: Float[Array, " n"], local: Int[Array, " L"], chunk: int
) -> tuple[Float[Array, " L"], Float[Array, " L"], Float[Array, " L"]]:
    """``(logsumexp_w z_w, max_w z_w, z_local)`` of the logits ``z = x Wᵀ + b`` (``z_local`` 0 where ``local`` is
    -1), over blocks of at most ``chunk`` rows of ``W`` (the module docstring); one block when ``n <= chunk``."""
    n = W.shape[0]
    if n <= chunk:
        z = x @ W.T + b
        zt = jnp.take_along_axis(z, jnp.clip(local, 0, n - 1)[:, None], axis=1)[:, 0]
        return jax.nn.logsumexp(z, axis=-1), jnp.max(z, axis=-1), jnp.where(local >= 0, zt, 0.0)
    lse, mx, zt = _streamed(x, W, b, local, chunk)
    return lse, jax.lax.stop_gradient(mx), zt


def _split(W: Array, b: Array, chunk: int) -> tuple[Array, Array, Array, int]:
    """``W`` and ``b`` as equal blocks ``(K, size, d)``, ``(K, size)`` (padding: zero rows with bias ``-inf``), the
    blocks' first rows, and the block size."""
    n = W.shape[0]
    n_blocks = -(-n // chunk)
    size = -(-n // n_blocks)
    pad = n_blocks * size - n
    Wb = jnp.pad(W, ((0, pad), (0, 0))).reshape(n_blocks, size, W.shape[1])
    bb = jnp.pad(b, (0, pad), constant_values=-jnp.inf).reshape(n_blocks, size)
    return Wb, bb, jnp.arange(n_blocks) * size, size


def _target_in_block(local: Array, off: Array, size: int) -> tuple[Array, Array]:
    j = local - off
    return (local >= 0) & (j >= 0) & (j < size), jnp.clip(j, 0, size - 1)


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def _streamed(x, W, b, local, chunk):
    return _streamed_fwd(x, W, b, local, chunk)[0]


def _streamed_fwd(x, W, b, local, chunk):
    Wb, bb, offsets, size = _split(W, b, chunk)

    def body(carry, xs):
        m, s, zt = carry
        Wk, bk, off = xs
        z = x @ Wk.T + bk
        m_new = jnp.maximum(m, jnp.max(z, axis=-1))
        s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(z - m_new[:, None]), axis=-1)
        hit, j = _target_in_block(local, off, size)
        zj = jnp.take_along_axis(z, j[:, None], axis=1)[:, 0]
        return (m_new, s, zt + jnp.where(hit, zj, 0.0)), None

    L = x.shape[0]
    init = (jnp.full((L,), -jnp.inf, x.dtype), jnp.zeros((L,), x.dtype), jnp.zeros((L,), x.dtype))
    (m, s, zt), _ = jax.lax.scan(body, init, (Wb, bb, offsets))
    lse = m + jnp.log(s)
    return (lse, m, zt), (x, W, b, local, lse)


def _streamed_bwd(chunk, residuals, cotangents):
    x, W, b, local, lse = residuals
    g_lse, _, g_zt = cotangents  # the maximum has no gradient (stopped in blocked_stats)
    Wb, bb, offsets, size = _split(W, b, chunk)
    cols = jnp.arange(size)

    def body(dx, xs):
        Wk, bk, off = xs
        p = jnp.exp(x @ Wk.T + bk - lse[:, None])
        hit, j = _target_in_block(local, off, size)
        dz = g_lse[:, None] * p + jnp.where(hit[:, None] & (cols == j[:, None]), g_zt[:, None], 0.0)
        return dx + dz @ Wk, (dz.T @ x, jnp.sum(dz, axis=0))

    dx, (dWb, dbb) = jax.lax.scan(body, jnp.zeros_like(x), (Wb, bb, offsets))
    n = W.shape[0]
    return dx, dWb.reshape(-1, W.shape[1])[:n], dbb.reshape(-1)[:n], None


_streamed.defvjp(_streamed_fwd, _streamed_bwd)
