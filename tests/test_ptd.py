"""Perturb-then-diagonalize (S4-PTD/S5-PTD) against independent linear algebra, float64."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ssm import hippo, kernels
from ssm.ptd import block_diagonal, legs_ptd, legs_ptd_system

N = 16


@pytest.fixture(scope="module")
def ptd():
    return legs_ptd_system(N)


def _full(ptd):
    Vf = np.concatenate([ptd.V, ptd.V.conj()], axis=1)
    Lf = np.concatenate([ptd.Lambda, ptd.Lambda.conj()])
    Vf_inv = np.concatenate([ptd.Vinv, ptd.Vinv.conj()], axis=0)
    return Vf, Lf, Vf_inv


def test_diagonalizes_a_small_perturbation_with_bounded_condition_number(ptd):
    A, b = hippo.transition("legs", N)
    Vf, Lf, Vf_inv = _full(ptd)
    assert ptd.E.dtype == np.float64 and ptd.E.shape == (N, N)
    At = A + ptd.E
    assert np.max(np.abs(Vf @ np.diag(Lf) @ Vf_inv - At)) < 1e-10 * np.abs(At).max()
    assert np.max(np.abs(Vf_inv @ Vf - np.eye(N))) < 1e-12
    assert np.linalg.norm(ptd.E) < 0.05 * np.linalg.norm(A)  # a small perturbation
    kappa = np.linalg.cond(Vf)
    assert abs(kappa - ptd.kappa) < 1e-8 * kappa and kappa < 15
    # the unperturbed LegS: float64 eig already reports ~8e10 at N = 16 (exact value 8.3e10: float64 and exact arithmetic still agree at this size)
    _, V_legs = np.linalg.eig(A)
    assert np.linalg.cond(V_legs / np.linalg.norm(V_legs, axis=0)) > 1e10
    # stable, conjugate-paired, B̃ = V^{-1} b
    assert np.all(ptd.Lambda.real < 0) and np.all(ptd.Lambda.imag < 0)
    assert np.all(np.diff(ptd.Lambda.imag) >= 0)
    assert np.max(np.abs(ptd.B - ptd.Vinv @ b)) < 1e-12


def test_legs_ptd_returns_conjugate_half_lambda_and_b(ptd):
    Lam, B = legs_ptd(N)
    assert Lam.shape == (N // 2,) and B.shape == (N // 2,)
    assert Lam.dtype == np.complex128 and B.dtype == np.complex128
    np.testing.assert_array_equal(Lam, ptd.Lambda)
    np.testing.assert_array_equal(B, ptd.B)
    Lam[:] = 0  # callers get copies: the cache is not corrupted
    np.testing.assert_array_equal(legs_ptd(N)[0], ptd.Lambda)


def _half_transfer(cV, B, Lam, s):
    """c V_f (s - Λ_f)^{-1} V_f^{-1} b from the stored conjugate half (C = c V, real c and b)."""
    return np.sum(cV * B / (s - Lam) + np.conj(cV) * np.conj(B) / (s - np.conj(Lam)))


def test_transfer_function_close_to_hippo_where_s4d_legs_is_not(ptd):
    """At frequencies near the top eigenvalue of LegS's normal part, S4D-LegS's transfer function is ~100x off HiPPO's
    c (sI - A)^{-1} b; PTD's stays within a few percent."""
    A, b = hippo.transition("legs", N)
    Lam_d, _, B_d, V_d = hippo.nplr("legs", N, b_clip=None)  # S4D-LegS: the normal part, exactly diagonalized
    top = np.abs(Lam_d.imag).max()
    rng = np.random.default_rng(0)
    for w in [0.9 * top, top, 1.1 * top]:
        s = 1j * w
        for _ in range(3):
            c = rng.normal(size=N)
            G = c @ np.linalg.solve(s * np.eye(N) - A, b)
            G_s4d = _half_transfer(c @ V_d, B_d, Lam_d, s)
            G_ptd = _half_transfer(c @ ptd.V, ptd.B, ptd.Lambda, s)
            assert abs(G_s4d - G) > 5 * abs(G)
            assert abs(G_ptd - G) < 0.15 * abs(G)


def test_diagonal_kernel_equals_dense_zoh_kernel_of_perturbed_system(ptd):
    """S4-PTD's diagonal ZOH kernel 2 Re Σ C̃ B̄ Ā^k (C̃ = c V) equals c expm(ΔÃ)^k B̄ of the dense perturbed matrix."""
    A, b = hippo.transition("legs", N)
    At = A + ptd.E
    c = np.random.default_rng(1).normal(size=N)
    dt, L = 0.03, 50
    M = np.zeros((N + 1, N + 1))
    M[:N, :N], M[:N, N] = At, b
    E = scipy.linalg.expm(dt * M)
    Ab, Bb = E[:N, :N], E[:N, N]
    ref = np.array([c @ np.linalg.matrix_power(Ab, k) @ Bb for k in range(L)])
    K = kernels.diagonal_kernel(
        jnp.array([dt]), jnp.asarray(ptd.Lambda)[None], jnp.asarray(ptd.B)[None], jnp.asarray(c @ ptd.V)[None], L, "zoh"
    )
    assert np.max(np.abs(np.asarray(K[0]) - ref)) < 1e-10 * np.abs(ref).max()


def test_block_diagonal_tiles_blocks(ptd):
    Lam, V, Vinv = block_diagonal(ptd.Lambda, ptd.V, ptd.Vinv, 3)
    assert Lam.shape == (3 * N // 2,) and V.shape == (3 * N, 3 * N // 2) and Vinv.shape == (3 * N // 2, 3 * N)
    np.testing.assert_array_equal(V[N : 2 * N, N // 2 : N], ptd.V)
    assert np.all(V[:N, N // 2 :] == 0)
    np.testing.assert_allclose(Vinv @ V, np.eye(3 * N // 2), atol=1e-12)
    with pytest.raises(ValueError, match="blocks"):
        block_diagonal(ptd.Lambda, ptd.V, ptd.Vinv, 0)


@pytest.mark.parametrize("bad", [3, 0, -2])
def test_bad_sizes_raise(bad):
    with pytest.raises(ValueError, match="even state size"):
        legs_ptd(bad)


def test_tiny_sizes_work():
    for n in (4,):  # N = 4 is also S5's block in tests/test_s5.py (cached)
        s = legs_ptd_system(n)
        A, _ = hippo.transition("legs", n)
        Vf, Lf, Vf_inv = _full(s)
        assert np.max(np.abs(Vf @ np.diag(Lf) @ Vf_inv - (A + s.E))) < 1e-10
        assert s.kappa < 15 and np.all(s.Lambda.real < 0)
