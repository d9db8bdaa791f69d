"""HiPPO matrices against the projection ODEs they come from, their normal-plus-low-rank structure, and NPLR."""

import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss
from scipy.special import eval_laguerre, eval_legendre

from ssm import hippo

X, WQ = leggauss(120)  # Gauss-Legendre on [-1, 1], exact for polynomials of degree < 240


def _integrate01(fvals):
    """∫_0^1 of values sampled at the mapped Gauss nodes (X+1)/2."""
    return 0.5 * np.sum(WQ * fvals, axis=-1)


def test_legs_is_the_scaled_legendre_projection_ode():
    # c_n(t) = ∫_0^1 f(tx) sqrt(2n+1) P_n(2x-1) dx (uniform measure on [0, t]); HiPPO-LegS: t c'(t) = A c + B f(t).
    N, t = 12, 1.7
    f = lambda s: np.sin(3 * s) + s**2  # noqa: E731
    df = lambda s: 3 * np.cos(3 * s) + 2 * s  # noqa: E731
    x = (X + 1) / 2
    g = np.sqrt(2 * np.arange(N) + 1)[:, None] * eval_legendre(np.arange(N)[:, None], 2 * x - 1)
    c = _integrate01(f(t * x) * g)
    dc = _integrate01(x * df(t * x) * g)
    A, B = hippo.transition("legs", N)
    np.testing.assert_allclose(t * dc, A @ c + B * f(t), rtol=0, atol=1e-11)


def test_legt_is_the_translated_legendre_projection_ode():
    # c_n(t) = ∫_0^1 f(t-θ+θx) sqrt(2n+1) P_n(2x-1) dx on the window [t-θ, t]; S4's halved LegT is θ = 2.
    # The LegT ODE reconstructs f(t-θ) from c, which is exact for polynomials of degree < N.
    N, t, theta = 10, 0.6, 2.0
    coef = np.array([0.3, -1.0, 0.5, 0.2, -0.1, 0.05, 0.02])  # degree 6 < N
    f = np.polynomial.Polynomial(coef)
    df = f.deriv()
    x = (X + 1) / 2
    g = np.sqrt(2 * np.arange(N) + 1)[:, None] * eval_legendre(np.arange(N)[:, None], 2 * x - 1)
    s = t - theta + theta * x
    c = _integrate01(f(s) * g)
    dc = _integrate01(df(s) * g)
    A, B = hippo.transition("legt", N)
    np.testing.assert_allclose(dc, A @ c + B * f(t), rtol=0, atol=1e-11)


def test_lagt_is_the_laguerre_projection_ode():
    # g_n(x) = L_n(x) e^{-x/2} (orthonormal on [0, ∞)), c_n(t) = ∫_0^t f(t-x) g_n(x) dx with f(0) = 0:
    # c' = (1/2 I - tril(1)) c + 1·f(t).
    N, t = 8, 2.3
    f = lambda s: s**2 * np.cos(s)  # noqa: E731
    df = lambda s: 2 * s * np.cos(s) - s**2 * np.sin(s)  # noqa: E731
    x = t * (X + 1) / 2
    g = eval_laguerre(np.arange(N)[:, None], x) * np.exp(-x / 2)
    c = t * _integrate01(f(t - x) * g)
    dc = t * _integrate01(df(t - x) * g)
    A, B = hippo.transition("lagt", N)
    np.testing.assert_allclose(dc, A @ c + B * f(t), rtol=0, atol=1e-11)


def test_fout_structure():
    N = 10
    A, B = hippo.transition("fout", N)
    np.testing.assert_array_equal(B, [1, 0, np.sqrt(2), 0, np.sqrt(2), 0, np.sqrt(2), 0, np.sqrt(2), 0])
    A0 = A + np.outer(B, B)
    np.testing.assert_allclose(A0, -A0.T, atol=0)
    # A0 couples the (cos_k, sin_k) pair (2k, 2k+1) as a rotation at angular frequency πk; states 0 and 1 are free.
    for k in range(1, N // 2):
        assert A0[2 * k, 2 * k + 1] == pytest.approx(-np.pi * k)
        assert A0[2 * k + 1, 2 * k] == pytest.approx(np.pi * k)
    assert np.count_nonzero(A0) == 2 * (N // 2 - 1)
    freqs = np.sort(np.linalg.eigvals(A0).imag)
    expect = np.sort(np.concatenate([[0.0, 0.0], np.pi * np.arange(1, N // 2), -np.pi * np.arange(1, N // 2)]))
    np.testing.assert_allclose(freqs, expect, atol=1e-12)


@pytest.mark.parametrize("measure,rank,re", [("legs", 1, -0.5), ("legt", 2, 0.0), ("lagt", 1, 0.0), ("fout", 1, 0.0)])
def test_rank_correction_makes_it_scalar_plus_skew(measure, rank, re):
    N = 16
    A, _ = hippo.transition(measure, N)
    P = hippo.rank_correction(measure, N, rank)
    assert P.shape == (rank, N)
    AP = A + P.T @ P
    S = AP - re * np.eye(N)
    np.testing.assert_allclose(S, -S.T, atol=1e-12)
    # extra rows are zero
    P3 = hippo.rank_correction(measure, N, rank + 1)
    np.testing.assert_array_equal(P3[:rank], P)
    np.testing.assert_array_equal(P3[rank:], 0)


@pytest.mark.parametrize("measure,rank", [("legs", 1), ("legt", 2), ("lagt", 1), ("fout", 1), ("legs", 2)])
@pytest.mark.parametrize("N", [2, 8, 32])
def test_nplr_reconstructs_the_hippo_matrix(measure, rank, N):
    A, B = hippo.transition(measure, N)
    Lam, P, Bt, V = hippo.nplr(measure, N, rank, b_clip=None)
    M = N // 2
    assert Lam.shape == (M,) and P.shape == (rank, M) and Bt.shape == (M,) and V.shape == (N, M)
    assert np.all(Lam.imag <= 0)
    Vf = np.concatenate([V, V.conj()], axis=1)
    np.testing.assert_allclose(Vf.conj().T @ Vf, np.eye(N), atol=1e-12)
    Lf = np.concatenate([Lam, Lam.conj()])
    Pf = np.concatenate([P, P.conj()], axis=1)
    Bf = np.concatenate([Bt, Bt.conj()])
    A_rec = Vf @ (np.diag(Lf) - Pf.T @ Pf.conj()) @ Vf.conj().T
    scale = max(1.0, np.abs(A).max())
    np.testing.assert_allclose(A_rec, A, atol=1e-12 * scale * N)
    np.testing.assert_allclose(Vf @ Bf, B, atol=1e-12 * scale * N)


def test_nplr_legs_spectrum_and_b_clip():
    Lam, _, B_clip, _ = hippo.nplr("legs", 16)
    np.testing.assert_allclose(Lam.real, -0.5, atol=1e-14)
    np.testing.assert_allclose(np.sort(-Lam.imag)[::-1][:4], [81.0, 25.6, 13.8, 8.4], atol=0.05)
    _, _, B, _ = hippo.nplr("legs", 16, b_clip=None)
    assert np.abs(B.imag).max() > 2  # the clip is active for LegS
    np.testing.assert_allclose(B_clip, B.real + 1j * np.clip(B.imag, -2, 2))


def test_nplr_fout_double_zero_eigenvalue():
    Lam, _, _, V = hippo.nplr("fout", 8)
    assert Lam[-1] == 0
    np.testing.assert_allclose(V[:, -1], np.r_[2**-0.5, 1j * 2**-0.5, np.zeros(6)])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="Unknown HiPPO measure"):
        hippo.transition("legz", 4)
    with pytest.raises(ValueError, match="rank >= 2"):
        hippo.rank_correction("legt", 4, 1)
    with pytest.raises(ValueError, match="N must be even"):
        hippo.nplr("legs", 5)
