"""``kernels.fft_conv`` (its output transpose materialized by a layout constraint) against a naive convolution
written here: values by ``np.convolve`` per channel, gradients by ``jax.grad`` of a dense Toeplitz product; float64,
under ``jit`` and ``vmap`` (where the constraint takes effect) and eagerly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm import kernels

B, L, H = 3, 11, 4


def _np_conv(u, k, D):
    """``np.convolve`` per channel; ``k (2, H, L)``: plus the reversed causal pass of ``k[1]``."""
    k0 = k[0] if k.ndim == 3 else k
    y = np.stack([np.convolve(u[:, h], k0[h])[:L] for h in range(H)], axis=1)
    if k.ndim == 3:
        y += np.stack([np.convolve(u[::-1, h], k[1, h])[:L] for h in range(H)], axis=1)[::-1]
    return y + D * u


def _toeplitz_conv(u, k, D):
    """``y_t = Σ_s M[h, t, s] u_s + D u_t`` with the dense matrix ``M[h, t, s] = k0[h, t-s]`` (t ≥ s), plus
    ``k1[h, s-t]`` (s ≥ t) when bidirectional."""
    lag = jnp.arange(L)[:, None] - jnp.arange(L)[None, :]  # t - s
    k0 = k[0] if k.ndim == 3 else k
    M = jnp.where(lag >= 0, k0[:, jnp.clip(lag, 0, L - 1)], 0.0)
    if k.ndim == 3:
        M = M + jnp.where(lag <= 0, k[1][:, jnp.clip(-lag, 0, L - 1)], 0.0)
    return jnp.einsum("hts,sh->th", M, u) + D * u


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fft_conv_equals_naive_values_and_gradients(bidirectional):
    rng = np.random.default_rng(11)
    u = rng.normal(size=(B, L, H))
    k = rng.normal(size=(2, H, L) if bidirectional else (H, L))
    D = rng.normal(size=H)
    w = rng.normal(size=(B, L, H))
    ref = np.stack([_np_conv(u[b], k, D) for b in range(B)])

    def loss(conv, u, k, D):
        return jnp.sum(jnp.tanh(jax.vmap(lambda x: conv(x, k, D))(u)) * w)

    y = jax.jit(jax.vmap(kernels.fft_conv, in_axes=(0, None, None)))(u, k, D)
    assert y.dtype == jnp.float64 and y.shape == (B, L, H)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(kernels.fft_conv(jnp.asarray(u[0]), jnp.asarray(k), jnp.asarray(D))),
                               ref[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(_toeplitz_conv(u[0], k, D)), ref[0], rtol=0, atol=1e-12)
    got = jax.jit(jax.grad(lambda *a: loss(kernels.fft_conv, *a), argnums=(0, 1, 2)))(u, k, D)
    want = jax.grad(lambda *a: loss(_toeplitz_conv, *a), argnums=(0, 1, 2))(u, k, D)
    for g, r in zip(got, want):
        assert g.shape == r.shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=0, atol=1e-11 * np.max(np.abs(r)))
