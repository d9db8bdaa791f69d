"""Kernel mathematics against independent references: matrix exponentials, matrix powers, ODE solves, direct sums."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special
from jax.test_util import check_grads

from ssm import kernels

RNG = np.random.default_rng(0)

# One compilation per shape instead of one per eager primitive keeps this file fast.
diagonal_kernel = jax.jit(kernels.diagonal_kernel, static_argnums=(4, 5))
from_ctilde = jax.jit(kernels.dplr_kernel_from_ctilde, static_argnums=(5,), static_argnames=("block",))
ctilde = jax.jit(kernels.ctilde, static_argnums=(5,))
ctilde_inverse = jax.jit(kernels.ctilde_inverse, static_argnums=(5,))
dplr_kernel = jax.jit(kernels.dplr_kernel, static_argnums=(5,))
vandermonde = jax.jit(kernels.vandermonde, static_argnums=(2,))
expm1_powers = jax.jit(kernels.expm1_powers, static_argnums=(1,))


def rand_system(H=3, M=4, R=1, seed=0):
    rng = np.random.default_rng(seed)
    A = -rng.uniform(0.1, 1.0, (H, M)) + 1j * rng.normal(0, 3, (H, M))
    B = rng.normal(size=(H, M)) + 1j * rng.normal(size=(H, M))
    C = rng.normal(size=(H, M)) + 1j * rng.normal(size=(H, M))
    P = 0.5 * (rng.normal(size=(R, H, M)) + 1j * rng.normal(size=(R, H, M)))
    dt = rng.uniform(0.01, 0.5, H)
    return dt, A, P, B, C


def full(x):
    return np.concatenate([x, np.conj(x)], axis=-1)


def dense_A(A, P):
    """Per channel: the full N x N DPLR matrix diag(Λ_f) - P_f^T conj(P_f)."""
    Af, Pf = full(A), full(P)
    return np.stack([np.diag(Af[h]) - Pf[:, h].T @ Pf[:, h].conj() for h in range(A.shape[0])])


def discretize_dense(dt, Amat, Bvec, disc):
    N = Amat.shape[-1]
    if disc == "zoh":  # one matrix exponential: expm(Δ[[A, B], [0, 0]]) = [[Ā, B̄], [0, 1]]
        big = np.zeros((N + 1, N + 1), complex)
        big[:N, :N], big[:N, N] = Amat, Bvec
        E = scipy.linalg.expm(dt * big)
        return E[:N, :N], E[:N, N]
    I = np.eye(N)
    return np.linalg.solve(I - dt / 2 * Amat, I + dt / 2 * Amat), np.linalg.solve(I - dt / 2 * Amat, dt * Bvec)


def naive_kernel(Ab, Bb, Cf, L):
    """Re(C Ā^k B̄) by explicit matrix powers."""
    out, x = [], Bb.copy()
    for _ in range(L):
        out.append(np.real(Cf @ x))
        x = Ab @ x
    return np.array(out)


def naive_causal_conv(u, k):
    L = u.shape[0]
    return np.stack([sum(k[:, t - s] * u[s] for s in range(t + 1)) for t in range(L)])


# ---------------------------------------------------------------------------------------------------------------
# Discretization


def test_zoh_equals_matrix_exponential():
    dt, A, _, B, _ = rand_system()
    Ab, Bb = kernels.discretize_zoh(jnp.asarray(dt)[:, None], jnp.asarray(A), jnp.asarray(B))
    for h in range(A.shape[0]):
        Ae, Be = discretize_dense(dt[h], np.diag(A[h]), B[h], "zoh")
        np.testing.assert_allclose(Ab[h], np.diag(Ae), atol=1e-13)
        np.testing.assert_allclose(Bb[h], Be, atol=1e-13)


def test_bilinear_equals_dense_formula():
    dt, A, _, B, _ = rand_system()
    Ab, Bb = kernels.discretize_bilinear(jnp.asarray(dt)[:, None], jnp.asarray(A), jnp.asarray(B))
    for h in range(A.shape[0]):
        Ae, Be = discretize_dense(dt[h], np.diag(A[h]), B[h], "bilinear")
        np.testing.assert_allclose(Ab[h], np.diag(Ae), atol=1e-13)
        np.testing.assert_allclose(Bb[h], Be, atol=1e-13)


def test_zoh_recurrence_equals_ode_solve_with_piecewise_constant_input():
    # x' = Λx + B u(t) with u_k held on [t_k, t_{k+1}); the state at t_{k+1} equals the ZOH recurrence after u_k.
    M, L, dt = 4, 6, 0.1
    lam = -0.5 + 1j * np.arange(M)
    b = np.ones(M) + 0.3j
    u = np.array([1.0, -0.5, 2.0, 0.0, 0.7, -1.2])
    ts = dt * jnp.arange(L + 1)

    def u_of_t(t):
        return jnp.asarray(u)[jnp.clip(jnp.searchsorted(ts, t, side="right") - 1, 0, L - 1)]

    def vf(t, y, args):  # real pair (2, M) form of the complex state
        x = y[0] + 1j * y[1]
        dx = lam * x + b * u_of_t(t)
        return jnp.stack([dx.real, dx.imag])

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf), diffrax.Dopri8(), t0=0.0, t1=float(ts[-1]), dt0=dt / 10, y0=jnp.zeros((2, M)),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12, jump_ts=ts), max_steps=100_000,
    )
    ode = np.asarray(sol.ys[:, 0] + 1j * sol.ys[:, 1])[1:]
    Ab, Bb = kernels.discretize_zoh(jnp.asarray(dt), jnp.asarray(lam), jnp.asarray(b))
    x, rec = np.zeros(M, complex), []
    for k in range(L):
        x = np.asarray(Ab) * x + np.asarray(Bb) * u[k]
        rec.append(x)
    np.testing.assert_allclose(ode, np.array(rec), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Diagonal kernels


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("L", [1, 37])
def test_diagonal_kernel_equals_full_real_system_powers(disc, L):
    # The 2·Re convention over M stored modes == the kernel of the full N = 2M system by matrix powers.
    dt, A, _, B, C = rand_system()
    K = diagonal_kernel(jnp.asarray(dt), jnp.asarray(A), jnp.asarray(B), jnp.asarray(C), L, disc)
    assert K.shape == (A.shape[0], L)
    for h in range(A.shape[0]):
        Ab, Bb = discretize_dense(dt[h], np.diag(full(A[h])), full(B[h]), disc)
        np.testing.assert_allclose(K[h], naive_kernel(Ab, Bb, full(C[h]), L), atol=1e-11)


def test_dss_exp_kernel():
    dt, A, _, B, C = rand_system()
    L = 40
    K = diagonal_kernel(jnp.asarray(dt), jnp.asarray(A), jnp.asarray(B), jnp.asarray(C), L, "dss_exp")
    W = B * C
    l = np.arange(L)
    ref = np.real(np.einsum("hm,hml->hl", W * (np.exp(dt[:, None] * A) - 1) / A,
                            np.exp(dt[:, None, None] * A[..., None] * l)))
    np.testing.assert_allclose(K, ref, atol=1e-12)


@pytest.mark.parametrize("L", [5, 64])
def test_dss_softmax_kernel_is_softmax_over_the_window(L):
    # K_l = Re Σ (W/Λ) softmax_l(lΔΛ), including modes with Re Λ > 0 (allowed in DSS-softmax).
    dt, A, _, B, C = rand_system(seed=1)
    A = A.copy()
    A[0, :2] = -A[0, :2].real + 1j * A[0, :2].imag  # growing modes
    K = diagonal_kernel(jnp.asarray(dt), jnp.asarray(A), jnp.asarray(B), jnp.asarray(C), L, "dss_softmax")
    z = dt[:, None, None] * A[..., None] * np.arange(L)
    sm = np.exp(z) / np.sum(np.exp(z), axis=-1, keepdims=True)
    ref = np.real(np.einsum("hm,hml->hl", B * C / A, sm))
    np.testing.assert_allclose(K, ref, atol=1e-12)
    # no overflow for long windows with growing modes
    K_long = diagonal_kernel(jnp.asarray(dt), jnp.asarray(A * 50), jnp.asarray(B), jnp.asarray(C), 4096,
                                     "dss_softmax")
    assert np.all(np.isfinite(K_long))


def test_vandermonde_lengths():
    rng = np.random.default_rng(3)
    c = rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3))
    lz = -rng.uniform(0, 0.1, (2, 3)) + 1j * rng.normal(size=(2, 3))
    for L in [1, 2, 3, 17, 100]:
        ref = np.real(np.einsum("hm,hml->hl", c, np.exp(lz[..., None] * np.arange(L))))
        np.testing.assert_allclose(vandermonde(jnp.asarray(c), jnp.asarray(lz), L), ref, atol=1e-13)


@pytest.mark.parametrize("n", [1, 2, 5, 32, 33])
def test_expm1_powers_equal_repeated_products(n):
    rng = np.random.default_rng(7)
    z = rng.uniform(0.5, 1.0, (2, 3)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (2, 3)))
    ref, p = [], np.ones_like(z)
    for _ in range(n):  # z^k by k multiplications
        ref.append(p - 1)
        p = p * z
    E = expm1_powers(jnp.asarray(z - 1), n)
    assert E.shape == (2, 3, n)
    np.testing.assert_allclose(E, np.stack(ref, -1), rtol=1e-13, atol=1e-15)
    # Near 1, z^k - 1 = sum_i binom(k, i) d^i (k|d| < 1e-4, so the series converges fast): relative accuracy of d.
    d = 1e-7 * (rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3)))
    k = np.arange(n)
    series = sum(scipy.special.comb(k, i) * d[..., None] ** i for i in range(1, 6))
    E = np.asarray(expm1_powers(jnp.asarray(d), n))
    np.testing.assert_allclose(E[..., 1:], series[..., 1:], rtol=1e-13)


def test_expm1_powers_float32_accuracy():
    # float32 poles near the unit circle, half with phases near pi (where exp(k log z) rounds k log z, ~k pi eps) and
    # half near 1 (where z^k - 1 formed from z^k would lose the digits of d). Reference: float64 powers of the same
    # float32 d. Measured: max_k err(z^k)/(k eps) = 0.47, offsets near 1 relative 5.6e-6.
    rng = np.random.default_rng(5)
    M, n = 64, 1024
    phase = np.concatenate([rng.uniform(2.5, 3.1, M // 2), rng.uniform(1e-4, 1e-2, M // 2)])
    d32 = ((1 - rng.uniform(1e-7, 1e-3, M)) * np.exp(1j * phase) - 1).astype(np.complex64)
    k = np.arange(n)
    log_z = np.log1p(d32.astype(np.complex128))[:, None] * k
    E = expm1_powers(jnp.asarray(d32), n)
    assert E.dtype == jnp.complex64
    E = np.asarray(E, np.complex128)
    err = np.abs(1 + E - np.exp(log_z)) / np.abs(np.exp(log_z))
    assert np.max(err[:, 1:] / k[1:]) < 1.0 * np.finfo(np.float32).eps, np.max(err[:, 1:] / k[1:])
    near = slice(M // 2, M)
    rel_e = np.abs(E[near, 1:] - np.expm1(log_z[near, 1:])) / np.abs(np.expm1(log_z[near, 1:]))
    assert np.max(rel_e) < 1.2e-5, np.max(rel_e)


# ---------------------------------------------------------------------------------------------------------------
# Cauchy, Woodbury, DPLR


def test_cauchy_and_woodbury():
    rng = np.random.default_rng(4)
    v = rng.normal(size=(2, 5)) + 1j * rng.normal(size=(2, 5))
    w = -rng.uniform(size=(2, 5)) + 1j * rng.normal(size=(2, 5))
    z = 1j * rng.normal(size=7)
    ref = np.sum(full(v)[:, :, None] / (z - full(w)[:, :, None]), axis=1)
    np.testing.assert_allclose(kernels.cauchy(jnp.asarray(v), jnp.asarray(w), jnp.asarray(z)), ref, atol=1e-13)
    # c (D^{-1} + P Q^*)^{-1} b for rank 1 and 3
    N = 6
    for R in (1, 3):
        d = rng.normal(size=N) + 1j * rng.normal(size=N)
        P, Q = (rng.normal(size=(N, R)) + 1j * rng.normal(size=(N, R)) for _ in range(2))
        b, c = (rng.normal(size=N) + 1j * rng.normal(size=N) for _ in range(2))
        ref = c @ np.linalg.solve(np.diag(1 / d) + P @ Q.conj().T, b)
        D = np.diag(d)
        got = kernels.woodbury(jnp.asarray(c @ D @ b), jnp.asarray(c @ D @ P), jnp.asarray(Q.conj().T @ D @ b),
                               jnp.asarray(Q.conj().T @ D @ P))
        np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("R,L", [(1, 1), (1, 37), (2, 2), (2, 64)])
def test_dplr_kernel_equals_dense_matrix_powers(R, L):
    dt, A, P, B, C = rand_system(R=R)
    K = dplr_kernel(*map(jnp.asarray, (dt, A, P, B, C)), L)
    Am = dense_A(A, P)
    for h in range(A.shape[0]):
        Ab, Bb = discretize_dense(dt[h], Am[h], full(B[h]), "bilinear")
        np.testing.assert_allclose(K[h], naive_kernel(Ab, Bb, full(C[h]), L), atol=1e-11)


def test_dplr_ctilde_blocks_doubling_and_inverse():
    dt, A, P, B, C = map(jnp.asarray, rand_system(R=2))
    L = 50
    Ct = ctilde(dt, A, P, B, C, L)
    ref = dplr_kernel(dt, A, P, B, C, L)
    # frequency blocks (lax.map path, 4 blocks of 7 for 26 frequencies) and the default (one block at this H·M)
    for block in (7, None):
        np.testing.assert_allclose(from_ctilde(dt, A, P, B, Ct, L, block=block), ref, atol=1e-12)
    np.testing.assert_allclose(ctilde_inverse(dt, A, P, B, Ct, L), C, atol=1e-11)
    # length doubling: C̃_{2L} = C̃_L (I + Ā^L), with dense Ā from numpy
    Am = dense_A(np.asarray(A), np.asarray(P))
    for h in range(A.shape[0]):
        Ab, _ = discretize_dense(float(dt[h]), Am[h], full(np.asarray(B)[h]), "bilinear")
        Ct_f = full(np.asarray(Ct)[h])
        doubled = Ct_f + Ct_f @ np.linalg.matrix_power(Ab, L)
        np.testing.assert_allclose(ctilde(dt, A, P, B, C, 2 * L)[h], doubled[: A.shape[1]], atol=1e-11)


def test_ctilde_double_and_recurrence_constants():
    dt, A, P, B, C = map(jnp.asarray, rand_system(R=2))
    L = 6
    Ct = ctilde(dt, A, P, B, C, L)
    # doubling twice: C̃_{4L} = C̃_L (I + Ā^L)(I + Ā^{2L}) = C (I - Ā^{4L}) (kernels.ctilde uses the direct power)
    np.testing.assert_allclose(kernels.ctilde_double(dt, A, P, B, Ct, L, 2), ctilde(dt, A, P, B, C, 4 * L), atol=1e-11)
    # the step constants (numpy and jax.numpy give the same), applied in increment form, give one dense bilinear step
    rec = kernels.dplr_recurrence(dt, A, P, B, Ct, L)
    rec_np = kernels.dplr_recurrence(*(np.asarray(a) for a in (dt, A, P, B, Ct)), L, xp=np)
    for k in rec:
        np.testing.assert_allclose(rec[k], rec_np[k], atol=1e-12)
    np.testing.assert_allclose(rec["C"], C, atol=1e-11)
    Am = dense_A(np.asarray(A), np.asarray(P))
    x = RNG.normal(size=A.shape) + 1j * RNG.normal(size=A.shape)
    u = RNG.normal(size=A.shape[0])
    Pc = np.conj(np.asarray(P))
    inner = lambda w: 2 * np.sum(Pc * w[None], axis=-1).real  # noqa: E731
    v = rec_np["a"] * x - np.einsum("rhm,rh->hm", rec_np["DP"], inner(x)) + rec_np["DB"] * u[:, None]
    x_new = x + v - np.einsum("rhm,hr->hm", rec_np["DP"], np.einsum("hrq,qh->hr", rec_np["Ginv"], inner(x) + inner(v)))
    for h in range(A.shape[0]):
        Ab, Bb = discretize_dense(float(dt[h]), Am[h], full(np.asarray(B)[h]), "bilinear")
        np.testing.assert_allclose(x_new[h], (Ab @ full(x[h]) + Bb * u[h])[: A.shape[1]], atol=1e-12)


def test_dplr_default_block_follows_working_set_and_rejects_bad_block():
    # the default keeps a block's (H, M, Jb) temporaries near _BLOCK_ELEMENTS, whatever H·M
    for H, M in ((128, 32), (512, 32), (64, 32), (4096, 512)):
        Jb = kernels._auto_block(H, M)
        assert Jb >= 8 and (H * M * Jb <= kernels._BLOCK_ELEMENTS or Jb == 8)
        assert Jb == 8 or H * M * (Jb + 1) > kernels._BLOCK_ELEMENTS
    dt, A, P, B, C = map(jnp.asarray, rand_system())
    with pytest.raises(ValueError, match="block must be a positive"):
        kernels.dplr_kernel_from_ctilde(dt, A, P, B, C, 8, block=0)


def test_dplr_with_zero_low_rank_equals_diagonal_bilinear():
    dt, A, P, B, C = map(jnp.asarray, rand_system())
    K1 = dplr_kernel(dt, A, jnp.zeros_like(P), B, C, 33)
    K2 = diagonal_kernel(dt, A, B, C, 33, "bilinear")
    np.testing.assert_allclose(K1, K2, atol=1e-12)


def test_dplr_rejects_zoh_and_bad_shapes():
    dt, A, P, B, C = map(jnp.asarray, rand_system())
    with pytest.raises(ValueError, match="bilinear"):
        kernels.dplr_kernel(dt, A, P, B, C, 8, "zoh")
    with pytest.raises((ValueError, TypeError)):  # jaxtyping's hook or our own check, whichever runs first
        kernels.dplr_kernel(dt, A, P[0], B, C, 8)
    with pytest.raises(ValueError, match="Unknown disc"):
        kernels.diagonal_kernel(dt, A, B, C, 8, "euler")


# ---------------------------------------------------------------------------------------------------------------
# Precision and gradients


def test_float32():
    dt, A, P, B, C = rand_system(R=1)
    f32 = [jnp.asarray(x, jnp.complex64 if np.iscomplexobj(x) else jnp.float32) for x in (dt, A, P, B, C)]
    f64 = [jnp.asarray(x) for x in (dt, A, P, B, C)]
    for disc in ("bilinear", "dss_softmax"):
        k32 = diagonal_kernel(f32[0], f32[1], f32[3], f32[4], 64, disc)
        assert k32.dtype == jnp.float32
        k64 = diagonal_kernel(f64[0], f64[1], f64[3], f64[4], 64, disc)
        np.testing.assert_allclose(k32, k64, atol=1e-4 * float(jnp.abs(k64).max()))
    Ct32 = jnp.asarray(ctilde(*f64, 64), jnp.complex64)
    k32 = from_ctilde(*f32[:4], Ct32, 64)
    assert k32.dtype == jnp.float32
    np.testing.assert_allclose(k32, dplr_kernel(*f64, 64), atol=1e-4 * 10)


def test_gradients_match_finite_differences():
    dt, A, P, B, C = map(jnp.asarray, rand_system(H=2, M=3))

    def diag(dt, Are, Aim):
        dt, Are, Aim = map(jnp.asarray, (dt, Are, Aim))  # check_grads also calls with numpy arrays
        return jnp.sum(jnp.sin(kernels.diagonal_kernel(dt, Are + 1j * Aim, B, C, 20, "zoh")))

    diag = jax.jit(diag)
    check_grads(diag, (dt, A.real, A.imag), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)
    Ct = kernels.ctilde(dt, A, P, B, C, 20)

    def dplr(dt, Are, Pre):
        dt, Are, Pre = map(jnp.asarray, (dt, Are, Pre))
        return jnp.sum(jnp.sin(kernels.dplr_kernel_from_ctilde(dt, Are + 1j * A.imag, Pre + 1j * P.imag, B, Ct, 20,
                                                               block=4)))

    dplr = jax.jit(dplr)
    check_grads(dplr, (dt, A.real, P.real), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# FFT convolution and prefill


def test_fft_conv_causal_and_bidirectional():
    L, H = 9, 3
    u = RNG.normal(size=(L, H))
    k = RNG.normal(size=(2, H, L))
    D = RNG.normal(size=H)
    np.testing.assert_allclose(kernels.fft_conv(jnp.asarray(u), jnp.asarray(k[0]), jnp.asarray(D)),
                               naive_causal_conv(u, k[0]) + D * u, atol=1e-12)
    ref = np.zeros((L, H))
    for t in range(L):
        for s in range(L):
            if s <= t:
                ref[t] += k[0, :, t - s] * u[s]
            if s >= t:
                ref[t] += k[1, :, s - t] * u[s]
    got = kernels.fft_conv(jnp.asarray(u), jnp.asarray(k), jnp.asarray(D))
    np.testing.assert_allclose(got, ref + D * u, atol=1e-12)
    # == forward pass + reversed causal pass
    rev = naive_causal_conv(u[::-1], k[1])[::-1]
    np.testing.assert_allclose(got, naive_causal_conv(u, k[0]) + rev + D * u, atol=1e-12)
    # shorter kernels are zero-padded, longer truncated
    np.testing.assert_allclose(kernels.fft_conv(jnp.asarray(u), jnp.asarray(k[0, :, :4])),
                               naive_causal_conv(u, np.pad(k[0, :, :4], ((0, 0), (0, L - 4)))), atol=1e-12)
    with pytest.raises((ValueError, TypeError)):  # channel mismatch: jaxtyping's hook or our check
        kernels.fft_conv(jnp.asarray(u), jnp.asarray(k[0, :2]))


@pytest.mark.parametrize("L", [1, 40])
def test_prefill_equals_recurrence_from_nonzero_state(L):
    dt, A, P, B, C = rand_system(R=2)
    H, M = A.shape
    u = RNG.normal(size=(L, H))
    x0 = RNG.normal(size=(H, M)) + 1j * RNG.normal(size=(H, M))
    # diagonal (ZOH)
    Ab, Bb = np.exp(dt[:, None] * A), (np.exp(dt[:, None] * A) - 1) / A * B
    x, ys = x0.copy(), []
    for t in range(L):
        x = Ab * x + Bb * u[t][:, None]
        ys.append(2 * np.sum(C * x, -1).real)
    y, xL = jax.jit(kernels.diagonal_prefill)(jnp.asarray(dt[:, None] * A), jnp.asarray(Bb), jnp.asarray(C), jnp.asarray(u),
                                     jnp.asarray(x0))
    np.testing.assert_allclose(y, np.array(ys), atol=1e-11)
    np.testing.assert_allclose(xL, x, atol=1e-12)
    # dense (full DPLR system)
    Am = dense_A(A, P)
    Abd, Bbd = zip(*[discretize_dense(dt[h], Am[h], full(B[h]), "bilinear") for h in range(H)])
    Abd, Bbd = np.stack(Abd), np.stack(Bbd)
    x, ys = full(x0), []
    for t in range(L):
        x = np.einsum("hnk,hk->hn", Abd, x) + Bbd * u[t][:, None]
        ys.append(np.sum(full(C) * x, -1).real)
    y, xL = jax.jit(kernels.dense_prefill, static_argnames="chunk")(
        jnp.asarray(Abd), jnp.asarray(Bbd), jnp.asarray(full(C)), jnp.asarray(u), jnp.asarray(full(x0)), chunk=16
    )
    np.testing.assert_allclose(y, np.array(ys), atol=1e-11)
    np.testing.assert_allclose(xL, x, atol=1e-11)


def test_reciprocal_parts_and_their_derivative():
    # 1/(x + iy) and d(1/z) = -dz/z² (custom JVP) against numpy's complex arithmetic, in float64; and in float32 at
    # |z| ~ 3e-11 (a barely-damped S4 mode's Cauchy denominator), where differentiating 1/|z|² overflows (|z|⁻⁴).
    z = np.array([0.3 - 1.2j, -2.0 + 0.5j, 1e-3 + 4e-4j])
    re, im = kernels._reciprocal(jnp.asarray(z.real), jnp.asarray(z.imag))
    np.testing.assert_allclose(np.asarray(re) + 1j * np.asarray(im), 1 / z, rtol=1e-14)
    for dz in (1.0, 1j):
        _, (dre, dim) = jax.jvp(kernels._reciprocal, (jnp.asarray(z.real), jnp.asarray(z.imag)),
                                (jnp.full(3, dz.real), jnp.full(3, dz.imag)))
        np.testing.assert_allclose(np.asarray(dre) + 1j * np.asarray(dim), -dz / z**2, rtol=1e-13)
    g = jax.grad(lambda x, y: kernels._reciprocal(x, y)[0], argnums=(0, 1))(jnp.float32(3e-11), jnp.float32(1e-12))
    zz = 3e-11 + 1e-12j
    np.testing.assert_allclose([float(g[0]), float(g[1])], [(-1 / zz**2).real, (-1j / zz**2).real], rtol=1e-5)

