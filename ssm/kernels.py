"""Kernel mathematics of the S4 family: discretization, Vandermonde and Cauchy kernels, Woodbury, FFT convolution,
the DPLR set-up (``C̃`` and its length doubling, the constants of the O(N) step), prefill, the associative-scan
diagonal recurrence (S5), and the chunked diagonal convolution.

Pure ``jax.numpy`` functions (float32 or float64, differentiable); the dense DPLR set-up also runs in numpy.
Conventions (after state-spaces/s4 src/models/sequence/kernels/, ag1988/dss, lindermanlab/S5 s5/ssm.py):

- Discrete SSM ``x_k = Ā x_{k-1} + B̄ u_k``, ``y_k = C x_k`` (the state includes the current input), kernel
  ``K_k = C Ā^k B̄``.
- Diagonal and DPLR systems are passed as their ``M = N/2`` stored modes; the conjugate partners are implicit and the
  kernel is ``K_k = 2 Re Σ_m C_m Ā_m^k B̄_m`` (``"dss_exp"``/``"dss_softmax"``: DSS's ``Re Σ_m`` with factor 1).
- DPLR state matrix of the full system: ``diag(Λ_f) - P_f^T conj(P_f)`` with ``X_f = [X, conj X]``.

Memory: no function materializes an ``(H, M, L)`` tensor. The diagonal kernel factors ``z^l`` with ``l = b·T + j`` into
two small Vandermonde matrices (``(H, L/T, M)`` and ``(H, M, T)``, ``T ≈ √L``) and contracts them with one real
batched matmul; the DPLR kernel evaluates its Cauchy sums over blocks of frequencies, forward and backward (custom VJP).
"""

from __future__ import annotations

import functools
import math
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.layout import Layout, with_layout_constraint
from jaxtyping import Array, Bool, Complex, Float, Inexact

DISCS = ("zoh", "bilinear", "dss_exp", "dss_softmax")

# The dense DPLR set-up also runs in numpy (float64 on the host, see ssm.layers.s4): those functions take either.
AnyArray = Union[Array, np.ndarray]


_HIGHEST = jax.lax.Precision.HIGHEST


def _complex_dtype(x: Array) -> jnp.dtype:
    return jnp.result_type(x.dtype, jnp.complex64)


# ----------------------------------------------------------------------------------------------------------------
# Discretization (elementwise, for diagonal A)


def discretize_zoh(
    dt: Float[Array, "*#batch"], A: Complex[Array, "*#batch"], B: Complex[Array, "*#batch"]
) -> tuple[Complex[Array, "*batch"], Complex[Array, "*batch"]]:
    """Zero-order hold: ``Ā = exp(ΔΛ)``, ``B̄ = (exp(ΔΛ) - 1)/Λ · B`` (elementwise, broadcasting)."""
    dtA = dt * A
    Ab = jnp.exp(dtA)
    return Ab, (Ab - 1) / A * B


def discretize_bilinear(
    dt: Float[Array, "*#batch"], A: Complex[Array, "*#batch"], B: Complex[Array, "*#batch"]
) -> tuple[Complex[Array, "*batch"], Complex[Array, "*batch"]]:
    """Bilinear (Tustin): ``Ā = (1 + ΔΛ/2)/(1 - ΔΛ/2)``, ``B̄ = Δ/(1 - ΔΛ/2) · B`` (elementwise, broadcasting)."""
    half = dt * A / 2
    return (1 + half) / (1 - half), dt / (1 - half) * B


def discretize(
    dt: Float[Array, "*#batch"], A: Complex[Array, "*#batch"], B: Complex[Array, "*#batch"], disc: str
) -> tuple[Complex[Array, "*batch"], Complex[Array, "*batch"]]:
    """``(Ā, B̄)`` of a diagonal system for ``disc`` in ``("zoh", "bilinear")``."""
    if disc == "zoh":
        return discretize_zoh(dt, A, B)
    if disc == "bilinear":
        return discretize_bilinear(dt, A, B)
    raise ValueError(f"Unknown discretization {disc!r}; choose 'zoh' or 'bilinear'.")


# ----------------------------------------------------------------------------------------------------------------
# Vandermonde kernel (diagonal systems)


def _block_size(L: int) -> int:
    return max(1, 1 << math.ceil(math.log2(math.sqrt(L))))


def _divisor_block(L: int) -> int | None:
    """The divisor of ``L`` closest to ``√L`` within ``[√L/2, 2√L]``, or None (e.g. ``L`` prime)."""
    r = math.sqrt(L)
    divisors = [d for d in range(max(1, int(r / 2)), int(2 * r) + 1) if L % d == 0]
    return min(divisors, key=lambda d: abs(d - r)) if divisors else None


def vandermonde(
    c: Complex[Array, "*C H M"],
    log_z: Complex[Array, "H M"],
    L: int,
    *,
    reverse: Bool[Array, "H M"] | None = None,
) -> Float[Array, "*C H L"]:
    """``Re Σ_m c_m z_m^l`` for ``l = 0..L-1``, with ``z_m^l = exp(l · log z_m)`` (log-Vandermonde).

    Writing ``l = b·T + j`` gives ``Σ_m (c_m z_m^{bT}) z_m^j``: a ``(L/T, M) @ (M, T)`` product per channel, done as one
    real batched matmul. Memory ``O(H M √L)``; no ``(H, M, L)`` tensor is formed. Leading axes of ``c`` (e.g. the two
    output matrices of a bidirectional layer) share the powers ``z^j``: one set of exponentials, one matmul.

    ``reverse``: modes where True run backwards, contributing ``Re c_m z_m^{L-1-l}``. With ``T`` a divisor of ``L``,
    ``L-1-l = (L/T-1-b)T + (T-1-j)``: a reversed mode only reverses its own row and column indices, so both directions
    share the one matmul. Needs a divisor of ``L`` near ``√L`` (:func:`_divisor_block`); ValueError otherwise.
    """
    if reverse is None:
        T = _block_size(L)
    else:
        T = _divisor_block(L)
        if T is None:
            raise ValueError(f"vandermonde(reverse=...) needs a divisor of L near sqrt(L); L={L} has none.")
    nb = -(-L // T)
    j = jnp.arange(T, dtype=jnp.real(log_z).dtype)
    b = jnp.arange(nb, dtype=j.dtype) * T
    if reverse is None:
        inner = jnp.exp(log_z[:, :, None] * j)  # (H, M, T)
        outer = jnp.exp(log_z[:, None, :] * b[:, None])  # (H, nb, M)
    else:
        j_idx = jnp.where(reverse[:, :, None], (T - 1) - j, j)  # (H, M, T)
        b_idx = jnp.where(reverse[:, None, :], (nb - 1) * T - b[:, None], b[:, None])  # (H, nb, M)
        inner = jnp.exp(log_z[:, :, None] * j_idx)
        outer = jnp.exp(log_z[:, None, :] * b_idx)
    return _two_level_product(c, inner, outer, L)


def _two_level_product(
    c: Complex[Array, "*C H M"], inner: Complex[Array, "H M T"], outer: Complex[Array, "H nb M"], L: int
) -> Float[Array, "*C H L"]:
    """``Re Σ_m c_m outer[b, m] inner[m, j]`` at ``l = b·T + j`` (the first ``L``): one real batched matmul. The
    powers and the weighted outer factor are each written out once (:func:`_materialized`): left to fuse, the powers'
    complex exponentials were computed into the real and the imaginary half of each operand separately (writing out
    the weighted product alone, not ``outer`` itself, measured S4D's kernel value+gradient 7.96 -> 12.2 ms)."""
    inner = _materialized(inner)
    outer = _materialized(c[..., :, None, :] * _materialized(outer))  # (*C, H, nb, M)
    # Re(outer @ inner) = Re(outer) Re(inner) - Im(outer) Im(inner), as a single real matmul.
    lhs = jnp.concatenate([outer.real, -outer.imag], axis=-1)  # (*C, H, nb, 2M)
    rhs = jnp.concatenate([inner.real, inner.imag], axis=-2)  # (H, 2M, T)
    K = jnp.matmul(lhs, rhs, precision=jax.lax.Precision.HIGHEST)  # (*C, H, nb, T)
    nb, T = K.shape[-2:]
    return K.reshape(K.shape[:-2] + (nb * T,))[..., :L]


def expm1_powers(d: Complex[Array, "*batch"], n: int) -> Complex[Array, "*batch n"]:
    """``(1 + d)^k - 1`` for ``k = 0..n-1``, by multiplication (binary doubling), carried as the offset from 1.

    ``P_{[2^i, 2^{i+1})} = P_{[0, 2^i)} · z^{2^i}`` with ``z^{2^{i+1}} = (z^{2^i})²``, written for ``e = z^k - 1`` as
    ``(1 + e_1)(1 + e_2) - 1 = e_1 + e_2 + e_1 e_2``. Each squaring doubles the relative error of the square before
    it, so ``z^k`` is still off by ``~ k eps`` (relative), but not by the phase: ``exp(k log z)`` also rounds the
    product ``k log z`` (``~ k |log z| eps``, up to ``k π eps``). Every power with the same high bits shares the same
    rounded squares, which keeps the geometric sums built from them consistent (:func:`dplr_kernel_vandermonde`).
    Carried as the offset, a pole ``z = 1 + d`` near 1 keeps the relative accuracy of ``d`` instead of losing it to
    the rounding of ``1 + d``."""
    return _expm1_doubling(d, n)[0]


def _expm1_doubling(
    d: Complex[Array, "*batch"], n: int
) -> tuple[Complex[Array, "*batch n"], Complex[Array, "*batch"], int]:
    """:func:`expm1_powers` and the last square it formed: ``(E, (1 + d)^m - 1, m)``, ``m`` the power of 2 ``>= n``."""
    E = jnp.zeros(d.shape + (1,), d.dtype)
    e = d  # (1 + d)^(2^i) - 1
    while E.shape[-1] < n:
        E = jnp.concatenate([E, E + e[..., None] + E * e[..., None]], axis=-1)
        e = e * (2 + e)
    return E[..., :n], e, E.shape[-1]


def diagonal_kernel(
    dt: Float[Array, " H"],
    A: Complex[Array, "H M"],
    B: Complex[Array, "H M"],
    C: Complex[Array, "*C H M"],
    L: int,
    disc: str = "zoh",
) -> Float[Array, "*C H L"]:
    """Convolution kernel ``(H, L)`` of a diagonal SSM from continuous-time parameters; ``(*C, H, L)`` for output
    matrices ``C (*C, H, M)`` sharing ``Λ, B, Δ`` (a bidirectional layer's two), computed in one pass.

    - ``"zoh"``: ``K_l = 2 Re Σ_m C_m B_m (e^{ΔΛ_m} - 1)/Λ_m · e^{lΔΛ_m}`` (S4D).
    - ``"bilinear"``: ``K_l = 2 Re Σ_m C_m B_m Δ/(1 - ΔΛ_m/2) · Ā_m^l``, ``Ā_m = (1 + ΔΛ_m/2)/(1 - ΔΛ_m/2)``.
    - ``"dss_exp"``: DSS-exp, ``K_l = Re Σ_m W_m (e^{ΔΛ_m} - 1)/Λ_m · e^{lΔΛ_m}`` with ``W = B∘C`` (factor 1).
    - ``"dss_softmax"``: DSS-softmax, ``K_l = Re Σ_m W_m (e^{ΔΛ_m} - 1)/(Λ_m (e^{LΔΛ_m} - 1)) · e^{lΔΛ_m}``
      (= ``(W/Λ) softmax_l(lΔΛ)``), valid for either sign of ``Re Λ``: modes with ``Re ΔΛ > 0`` are evaluated
      in the reversed index ``L-1-l`` with the decaying base ``e^{-ΔΛ}``, so nothing overflows.
    """
    if disc not in DISCS:
        raise ValueError(f"Unknown disc {disc!r}; choose one of {DISCS}.")
    if A.shape != B.shape or A.shape != C.shape[-2:] or A.shape[0] != dt.shape[0]:
        raise ValueError(
            f"diagonal_kernel expects dt (H,), A and B (H, M), C (..., H, M); got dt {dt.shape}, A {A.shape}, "
            f"B {B.shape}, C {C.shape}."
        )
    dtA = dt[:, None] * A
    W = B * C
    if disc == "zoh":
        return 2 * vandermonde(W * (jnp.exp(dtA) - 1) / A, dtA, L)
    if disc == "bilinear":
        half = dtA / 2  # discretize_bilinear's Ā and B̄ (with W for B), written out: W may carry leading axes
        return 2 * vandermonde(dt[:, None] / (1 - half) * W, jnp.log((1 + half) / (1 - half)), L)
    if disc == "dss_exp":
        return vandermonde(W * (jnp.exp(dtA) - 1) / A, dtA, L)
    # dss_softmax
    grow = dtA.real > 0
    # For Re ΔΛ > 0: e^{lx}/(e^{Lx}-1) = e^{(L-1-l)(-x)} · e^{-x}/(1-e^{-Lx}), i.e. the reversed index with a decaying
    # base; every exponent below has a non-positive real part (except the one-step e^{ΔΛ}).
    x = jnp.where(grow, -dtA, dtA)
    coef = W * jnp.expm1(dtA) / (A * jnp.expm1(L * x)) * jnp.where(grow, -jnp.exp(x), 1.0)
    if _divisor_block(L) is not None:
        # Both directions in one two-level matmul (half the work of one call per direction).
        return vandermonde(coef, x, L, reverse=grow)
    zero = jnp.zeros_like(coef)
    K_fwd = vandermonde(jnp.where(grow, zero, coef), x, L)
    K_bwd = vandermonde(jnp.where(grow, coef, zero), x, L)
    return K_fwd + K_bwd[..., ::-1]


# ----------------------------------------------------------------------------------------------------------------
# Cauchy kernel, Woodbury, DPLR kernel


def cauchy(
    v: Complex[Array, "*batch M"], w: Complex[Array, "*batch M"], z: Complex[Array, " J"]
) -> Complex[Array, "*batch J"]:
    """Conjugate-symmetric Cauchy sum ``Σ_m v_m/(z_j - w_m) + conj(v_m)/(z_j - conj(w_m))``."""
    d1 = z - w[..., :, None]
    d2 = z - jnp.conj(w)[..., :, None]
    return jnp.sum(v[..., :, None] / d1 + jnp.conj(v)[..., :, None] / d2, axis=-2)


def woodbury(
    k00: Complex[Array, "*batch"],
    k01: Complex[Array, "*batch R"],
    k10: Complex[Array, "*batch R"],
    k11: Complex[Array, "*batch R R"],
) -> Complex[Array, "*batch"]:
    """``k00 - k01 (I + k11)^{-1} k10``: the scalar ``c (D^{-1} + P Q^*)^{-1} b`` from the Cauchy sums
    ``k00 = c D b``, ``k01 = c D P``, ``k10 = Q^* D b``, ``k11 = Q^* D P`` (Woodbury identity)."""
    R = k01.shape[-1]
    if R == 1:
        return k00 - k01[..., 0] * k10[..., 0] / (1 + k11[..., 0, 0])
    eye = jnp.eye(R, dtype=k11.dtype)
    sol = jnp.linalg.solve(eye + k11, k10[..., None])[..., 0]
    return k00 - jnp.sum(k01 * sol, axis=-1)


def _woodbury_rank1(
    a_re: Float[Array, "*#b"], a_im: Float[Array, "*#b"], b_re: Float[Array, "*#b"], b_im: Float[Array, "*#b"],
    c_re: Float[Array, "*#b"], c_im: Float[Array, "*#b"], d_re: Float[Array, "*#b"], d_im: Float[Array, "*#b"],
) -> tuple[Float[Array, "*#b"], Float[Array, "*#b"]]:
    """:func:`woodbury` at rank 1, ``a - b c / (1 + d)``, on real and imaginary parts. The quotient is Smith's
    (scaled by the larger part of ``1 + d``, as XLA's complex division), so ``|1 + d|²`` is never formed: it overflows
    float32 near a barely-damped mode's pole."""
    p_re, p_im = b_re * c_re - b_im * c_im, b_re * c_im + b_im * c_re
    e_re, e_im = 1 + d_re, d_im
    wide = jnp.abs(e_re) >= jnp.abs(e_im)
    big, small = jnp.where(wide, e_re, e_im), jnp.where(wide, e_im, e_re)
    r = small / big
    inv = 1 / (big + small * r)
    # wide: (p_re + p_im r, p_im - p_re r) / (e_re + e_im r); else (p_re r + p_im, p_im r - p_re) / (e_re r + e_im)
    q_re = jnp.where(wide, p_re + p_im * r, p_re * r + p_im) * inv
    q_im = jnp.where(wide, p_im - p_re * r, p_im * r - p_re) * inv
    return a_re - q_re, a_im - q_im


@jax.custom_jvp
def _reciprocal(x: Float[Array, "*b"], y: Float[Array, "*b"]) -> tuple[Float[Array, "*b"], Float[Array, "*b"]]:
    """Real and imaginary parts of ``1/(x + iy) = (x - iy)/(x² + y²)``."""
    inv = 1 / (x * x + y * y)
    return x * inv, -y * inv


@_reciprocal.defjvp
def _reciprocal_jvp(primals, tangents):
    # d(1/E) = -(1/E)² dE, written with 1/E itself: differentiating 1/(x² + y²) would square it, and |E|⁻⁴ overflows
    # float32 once |E| < 1e-9, which S4-FouT's barely-damped modes reach near their poles.
    q_re, q_im = _reciprocal(*primals)
    dx, dy = tangents
    sq_re, sq_im = q_re * q_re - q_im * q_im, 2 * q_re * q_im
    return (q_re, q_im), (-(sq_re * dx - sq_im * dy), -(sq_re * dy + sq_im * dx))


# Elements H·M·Jb of one block's (H, M, Jb) temporaries that the default block size aims at: value and gradient of
# the kernel were fastest (within ~5 %) from about 2^19 to 2^20 elements at H 128/256/512, M 32, on a 2-core CPU
# (docs/benchmarks.md, "S4's Cauchy kernel"); the old fixed 256 cost 1.27x the best at H 512, L 1024 (3 blocks of
# 171 frequencies), and one block of all 513 frequencies 1.8x.
_BLOCK_ELEMENTS = 3 << 18


def _auto_block(H: int, M: int) -> int:
    return max(8, _BLOCK_ELEMENTS // (H * M))


def _freq_blocks(J: int, max_block: int) -> tuple[int, int]:
    nb = -(-J // max_block)
    return nb, -(-J // nb)


def _sin_cos(L: int, nb: int, Jb: int, dtype) -> tuple[Float[Array, "nb Jb"], Float[Array, "nb Jb"]]:
    """``sin(θ_j/2)``, ``cos(θ_j/2)`` at ``θ_j = 2πj/L``, ``j < nb·Jb``, in blocks: float64 on the host, rounded once."""
    half_theta = (np.pi / L * np.arange(nb * Jb)).reshape(nb, Jb)
    return jnp.asarray(np.sin(half_theta), dtype), jnp.asarray(np.cos(half_theta), dtype)


def _cauchy_block_q(
    mu_re: Float[Array, "H M 1"], mu_sq: Float[Array, "H M 1"], s: Float[Array, " Jb"], c: Float[Array, " Jb"]
) -> tuple[Float[Array, "H M Jb"], Float[Array, "H M Jb"]]:
    """``1/E`` with ``E = c²|μ|² - s² - 2i sc Re μ`` (:func:`dplr_kernel_from_ctilde`), real and imaginary parts."""
    return _reciprocal((c * c) * mu_sq - s * s, (-2 * s * c) * mu_re)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _cauchy_sums(
    G: Float[Array, "H K2 M"], mu_re: Float[Array, "H M 1"], mu_sq: Float[Array, "H M 1"], L: int, nb: int, Jb: int
) -> tuple[Float[Array, "H K2 J"], Float[Array, "H K2 J"]]:
    """``T_j = Σ_m G_m / E_m(θ_j)`` (real and imaginary parts) at the ``J = nb·Jb`` frequencies ``θ_j = 2πj/L``,
    computed in ``nb`` blocks of ``Jb`` (a loop writing each block's columns in place): memory ``O(H M Jb)``.

    Gradient (custom VJP): per block, ``1/E`` is recomputed once and ``dG = Σ_j T̄_j (1/E_j)^T``,
    ``d(1/E) = G^T T̄`` are two matmuls; through ``d(1/E) = -(1/E)² dE`` (:func:`_reciprocal`) the cotangent of ``E``
    reduces over the block's frequencies to those of ``|μ|²`` (``Σ_j c_j² Ē_re``) and ``Re μ``
    (``Σ_j -2 s_j c_j Ē_im``), again matmuls, summed over blocks in the loop's carry. Nothing of size ``(H, M, Jb)``
    outlives its block, and the forward matmul is not recomputed (JAX's gradient through ``jax.checkpoint``
    recomputed the whole block). The sums come out in the matmuls' own ``(H, K2, ·)`` order, frequencies last: the
    earlier ``(nb, H, K2, Jb)`` stack of ``lax.map`` had to be transposed for the Woodbury step, forward and backward.
    """
    return _cauchy_sums_fwd(G, mu_re, mu_sq, L, nb, Jb)[0]


def _cauchy_sums_fwd(G, mu_re, mu_sq, L, nb, Jb):
    s, c = _sin_cos(L, nb, Jb, G.dtype)

    def block(s, c):
        q_re, q_im = _cauchy_block_q(mu_re, mu_sq, s, c)
        return jnp.matmul(G, q_re, precision=_HIGHEST), jnp.matmul(G, q_im, precision=_HIGHEST)

    if nb == 1:
        T = block(s[0], c[0])
    else:

        def step(T, args):
            s, c, start = args
            return tuple(jax.lax.dynamic_update_slice_in_dim(x, t, start, axis=-1) for x, t in zip(T, block(s, c))), None

        shape = G.shape[:-1] + (nb * Jb,)
        T0 = (jnp.zeros(shape, G.dtype), jnp.zeros(shape, G.dtype))
        T, _ = jax.lax.scan(step, T0, (s, c, jnp.arange(nb) * Jb))
    return T, (G, mu_re, mu_sq)


def _cauchy_sums_bwd(L, nb, Jb, res, dT):
    G, mu_re, mu_sq = res
    s, c = _sin_cos(L, nb, Jb, G.dtype)
    Gt = jnp.swapaxes(G, -1, -2)  # (H, M, K2)

    def block(s, c, dT_re, dT_im):
        q_re, q_im = _cauchy_block_q(mu_re, mu_sq, s, c)
        dG = jnp.matmul(dT_re, jnp.swapaxes(q_re, -1, -2), precision=_HIGHEST) + jnp.matmul(
            dT_im, jnp.swapaxes(q_im, -1, -2), precision=_HIGHEST
        )
        g_re = jnp.matmul(Gt, dT_re, precision=_HIGHEST)  # cotangent of 1/E, (H, M, Jb)
        g_im = jnp.matmul(Gt, dT_im, precision=_HIGHEST)
        # d(1/E) = -w dE with w = (1/E)²: the transpose of that complex multiply, in real arithmetic.
        w_re, w_im = q_re * q_re - q_im * q_im, 2 * q_re * q_im
        e_re = -(g_re * w_re + g_im * w_im)
        e_im = g_re * w_im - g_im * w_re
        d_sq = jnp.matmul(e_re, c * c, precision=_HIGHEST)  # E_re = c²|μ|² - s²
        d_re = jnp.matmul(e_im, -2 * s * c, precision=_HIGHEST)  # E_im = -2sc Re μ
        return dG, d_re, d_sq

    if nb == 1:
        dG, d_re, d_sq = block(s[0], c[0], *dT)
    else:
        # Summed in the loop's carry: stacking every block's (H, K2, M) and summing afterwards wrote and re-read nb
        # copies (a strided reduction that cost more than a block's matmuls on CPU).
        def step(acc, args):
            s, c, start = args
            dT_b = (jax.lax.dynamic_slice_in_dim(x, start, Jb, axis=-1) for x in dT)
            return jax.tree.map(jnp.add, acc, block(s, c, *dT_b)), None

        zero = (jnp.zeros_like(G), jnp.zeros_like(mu_re[..., 0]), jnp.zeros_like(mu_sq[..., 0]))
        (dG, d_re, d_sq), _ = jax.lax.scan(step, zero, (s, c, jnp.arange(nb) * Jb))
    return dG, d_re[..., None], d_sq[..., None]


_cauchy_sums.defvjp(_cauchy_sums_fwd, _cauchy_sums_bwd)


def _dplr_numerators(
    Ct: Complex[Array, "nC H M"], P: Complex[Array, "R H M"], B: Complex[Array, "H M"]
) -> Complex[Array, "K H M"]:
    """The numerators ``x_n y_n`` of the DPLR kernel's Cauchy sums, stacked ``[C̃B (nC), C̃P (nC·R), P̄B (R), P̄P (R·R)]``
    (``K = (nC + R)(1 + R)``): the sums ``k00, k01, k10, k11`` of the Woodbury correction, in this order."""
    nC, H, M = Ct.shape
    R = P.shape[0]
    Pc = jnp.conj(P)
    return jnp.concatenate(
        [Ct * B, (Ct[:, None] * P[None]).reshape(nC * R, H, M), Pc * B, (Pc[:, None] * P[None]).reshape(R * R, H, M)],
        axis=0,
    )


def dplr_kernel_from_ctilde(
    dt: Float[Array, " H"],
    A: Complex[Array, "H M"],
    P: Complex[Array, "R H M"],
    B: Complex[Array, "H M"],
    Ct: Complex[Array, "*C H M"],
    L: int,
    *,
    block: int | None = None,
) -> Float[Array, "*C H L"]:
    """Bilinear DPLR kernel from ``C̃ = C_f (I - Ā^L)`` (the S4 parameterization), by Cauchy + Woodbury at the
    ``L``-th roots of unity ``ω_j = e^{-2πij/L}``, ``j = 0..L/2``, then ``irfft``.

    With ``g(ω) = (2/Δ)(1-ω)/(1+ω)``, ``a = 1 - ω``, ``b = 1 + ω``, ``μ = ΔΛ/2``:
    ``2/(1+ω) C̃(g - A)^{-1}B = Δ·[S00 - (Δ/2) b S01 (I + (Δ/2) b S11)^{-1} S10]`` with the Cauchy-type sums
    ``S_xy = Σ_n x_n y_n / (a - b μ_n)`` over the full conjugate-symmetric system (Woodbury on ``A = Λ - P P^*``).
    This form has no singularity at ``ω = -1`` (the bilinear map sends it to ``g = ∞``).

    Float32: on the unit circle ``a = 2φ·i sin(θ/2)``, ``b = 2φ·cos(θ/2)`` (``ω = e^{-iθ}``, ``φ = e^{-iθ/2}``). The sums
    are homogeneous of degree -1 in ``(a, b)`` (and the Woodbury term keeps that), so they are evaluated at
    ``(i sin, cos)`` and ``1/(2φ)`` is applied to the result. Then the denominator's coefficients ``-sin²``,
    ``-2i sin cos``, ``cos²`` are purely real or imaginary (so it is formed in real arithmetic, and its reciprocal's
    derivative is ``-(1/E)² dE``, :func:`_reciprocal`): near a barely-damped mode's pole its real part passes through
    zero and its size is the tiny imaginary part ``∝ Re μ``, which a complex product with ``e^{-iθ}`` would swamp with
    the rounding of the large real terms. With ``sin``/``cos`` rounded once from float64 this halves the float32
    kernel's error for every HiPPO measure (``scripts/bench_precision.py``); what remains is the float32 rounding of
    the near-pole terms before the Woodbury correction cancels them. The sums are evaluated over
    blocks of at most ``block`` frequencies (default ``None``: about ``786432/(H M)``, ``_BLOCK_ELEMENTS``) by
    :func:`_cauchy_sums` (a loop over blocks with a hand-written gradient that recomputes each block's reciprocals
    once), so memory is ``O(H M block)`` forward and backward, never ``O(H M L)``; the rank-``R`` Woodbury correction,
    the phase and the ``irfft`` act on the ``O(H K L)`` sums (at rank 1 in real arithmetic, :func:`_woodbury_rank1`).
    """
    lead = Ct.shape[:-2]
    H, M = A.shape
    R = P.shape[0]
    Ct = Ct.reshape((-1, H, M))
    nC = Ct.shape[0]
    cdt = _complex_dtype(A)
    rdt = jnp.real(jnp.zeros((), cdt)).dtype
    J = L // 2 + 1
    if block is not None and block < 1:
        raise ValueError(f"dplr_kernel_from_ctilde: block must be a positive number of frequencies or None, got {block}.")
    nb, Jb = _freq_blocks(J, _auto_block(H, M) if block is None else block)
    # a = 1 - ω = 2φ·i sin(θ/2), b = 1 + ω = 2φ·cos(θ/2) with the common phase φ = e^{-iθ/2}: the Cauchy sums are
    # homogeneous of degree -1 in (a, b), so they are evaluated at (i sin, cos) and the phase 1/(2φ) applied at the end.
    s, c = (x[0] for x in _sin_cos(L, 1, J, rdt))  # (J,): the values the blocks use
    half_dt = dt / 2
    mu = (half_dt[:, None] * A).astype(cdt)  # (H, M)
    V = _dplr_numerators(Ct, P, B).transpose(1, 0, 2)  # (H, K, M)
    nK = V.shape[1]
    # Pair each mode with its conjugate over one denominator:
    # v/(a - bμ) + conj(v)/(a - b conj μ) = (2Re(v)·a - 2Re(v conj μ)·b) / E,  E = a² - 2ab Re μ + b²|μ|²,
    # with a = i s, b = c: Re E = c²|μ|² - s², Im E = -2sc Re μ, in real arithmetic (_cauchy_sums).
    G = jnp.concatenate([2 * V.real, 2 * (V * jnp.conj(mu)[:, None, :]).real], axis=1)  # (H, 2K, M) real
    mu_re, mu_sq = mu.real[:, :, None], (mu.real**2 + mu.imag**2)[:, :, None]
    T_re, T_im = (t[..., :J] for t in _cauchy_sums(G, mu_re, mu_sq, L, nb, Jb))  # (H, 2K, J)
    hb = (half_dt[:, None] * c)[:, None]  # (H, 1, J): (Δ/2) b
    if R == 1:
        # In real arithmetic, on the sums split apart once (jnp.split: its gradient is one concatenation, where
        # slicing's is a zero-padded copy per slice): JAX's gradient of complex elementwise products and quotients
        # (conjugates, real/imag splits, re-assembly) and of the slices compiled to several times the passes.
        # S = a T[:K] - b T[K:] with a = i s, b = c, for the sums [C̃B (nC), C̃P (nC), P̄B, P̄P].
        sizes = np.cumsum([nC, nC, 1, 1, nC, nC, 1])
        ar, br = jnp.split(T_re, sizes, axis=1), jnp.split(T_im, sizes, axis=1)
        S = [(-s * br[i] - c * ar[i + 4], s * ar[i] - c * br[i + 4]) for i in range(4)]
        k_re, k_im = _woodbury_rank1(*S[0], hb * S[1][0], hb * S[1][1], *S[2], hb * S[3][0], hb * S[3][1])
        # times Δ·phase, phase = e^{iθ/2}/2 = (c + i s)/2
        dt_ = dt[:, None, None] / 2
        khat = jax.lax.complex(dt_ * (k_re * c - k_im * s), dt_ * (k_re * s + k_im * c))  # (H, nC, J)
        khat = jnp.swapaxes(khat, 0, 1)
    else:
        S = (-s * T_im[:, :nK] - c * T_re[:, nK:]) + 1j * (s * T_re[:, :nK] - c * T_im[:, nK:])  # (H, K, J)
        S = jnp.swapaxes(S, 0, 1)  # (K, H, J)
        hb = hb[:, 0]
        k00 = S[:nC]  # (nC, H, J)
        k01 = hb * S[nC : nC + nC * R].reshape(nC, R, H, J)
        k10 = S[nC + nC * R : nC + nC * R + R][None]  # (1, R, H, J)
        k11 = hb * S[nC + nC * R + R :].reshape(1, R, R, H, J)
        # woodbury works on trailing (R,) / (R, R).
        k01, k10, k11 = jnp.moveaxis(k01, 1, -1), jnp.moveaxis(k10, 1, -1), jnp.moveaxis(k11, (1, 2), (-2, -1))
        khat = woodbury(k00, k01, jnp.broadcast_to(k10, k01.shape), jnp.broadcast_to(k11, k01.shape + (R,)))
        khat = khat * (dt[:, None] * jax.lax.complex(c, s) / 2)  # times Δ·phase
    K = jnp.fft.irfft(khat, n=L, axis=-1)
    return K.reshape(lead + (H, L))


def dplr_kernel_vandermonde(
    dt: Float[Array, " H"],
    A: Complex[Array, "H M"],
    P: Complex[Array, "R H M"],
    B: Complex[Array, "H M"],
    Ct: Complex[Array, "*C H M"],
    L: int,
) -> Float[Array, "*C H L"]:
    """The kernel of :func:`dplr_kernel_from_ctilde` (same arguments, same system), with the Cauchy sums at the roots
    of unity obtained as real FFTs of time-domain sequences instead of evaluated frequency by frequency.

    Each Cauchy term is a geometric series: with ``μ = ΔΛ/2`` and the bilinear pole ``ā = (1 + μ)/(1 - μ)``,
    ``1/(a - bμ) = 1/((1 - μ)(1 - ωā))``, and at an ``L``-th root of unity (``ω^L = 1``)
    ``1/(1 - ωā) = Σ_{l<L} (ωā)^l / (1 - ā^L)``. So ``S_xy(ω_j) = rfft(s)_j`` with the real sequence
    ``s_l = 2 Re Σ_m x_m y_m ā_m^l / ((1 - μ_m)(1 - ā_m^L))`` (the conjugate modes give the conjugate terms): one
    log-Vandermonde product (:func:`vandermonde`, all sums sharing the powers ``ā^l``) and one ``rfft`` per sum,
    then the same rank-``R`` Woodbury correction per frequency and ``irfft``. The ``(H, M, L/2)`` Cauchy
    denominators are never formed.

    Precision: the powers ``ā^l`` are products of rounded squares (:func:`expm1_powers`, offsets from 1 with
    ``ā = 1 + 2μ/(1 - μ)``), and ``ā^L`` in the weight comes from the same products, so each geometric sum and its
    ``1 - ā^L`` stay consistent. Taking them as ``e^{l log ā}`` instead cost a float32 forward error (against the
    float64 kernel of the same float32 parameters) of 7e-5 (LagT) to 3e-3 (FouT) at ``L = 1024``; with the products
    it is 4e-6 (LegS) to 4e-5 (FouT), against 1e-6 to 1e-5 for the Cauchy form (``scripts/bench_precision.py``).
    What remains is mostly the float32 rounding of the sequences ``s`` themselves: the exact ``s`` rounded once to
    float32 and transformed in float64 already errs by 1.6e-6 (LegS) to 2.4e-5 (FouT). The likely mechanism: a
    rounding of ``s`` spreads over every frequency at the scale of the largest (near-pole) sums, which the Woodbury
    correction then cancels; per-frequency Cauchy sums err relative to their own size.
    It forms no per-frequency reciprocals, forward or backward; since the Cauchy form got its hand-written gradient
    (:func:`_cauchy_sums`) both forms cost about the same on CPU, and S4's default stays the more accurate Cauchy form.
    """
    lead = Ct.shape[:-2]
    H, M = A.shape
    R = P.shape[0]
    Ct = Ct.reshape((-1, H, M))
    nC = Ct.shape[0]
    cdt = _complex_dtype(A)
    mu = (dt[:, None] / 2 * A).astype(cdt)  # (H, M)
    # Powers ā^l at l = b·T + j by multiplication (expm1_powers), as offsets from 1 with ā = 1 + 2μ/(1 - μ); ā^L for
    # the weight from the same products (ā^L = ā^{qT} ā^r), so that Σ_l (ωā)^l and 1 - ā^L stay consistent.
    T = _block_size(L)
    nb = -(-L // T)
    e_inner, e_T, _ = _expm1_doubling(2 * mu / (1 - mu), T)  # (H, M, T): ā^j - 1; ā^T - 1 (T is a power of 2)
    q, r = divmod(L, T)
    e_outer, e_top, top = _expm1_doubling(e_T, nb)  # (H, M, nb): ā^{bT} - 1; ā^{top·T} - 1
    if q == nb and top != q:  # L = nb·T with nb not a power of 2: one more outer power
        e_outer, e_top, top = _expm1_doubling(e_T, nb + 1)
    e_q = e_top if q == top else e_outer[..., q]
    e_L = e_q if r == 0 else e_q + e_inner[..., r] + e_q * e_inner[..., r]  # ā^L - 1 = ā^{qT} ā^r - 1
    weight = 1 / ((1 - mu) * -e_L)  # 1/((1 - μ)(1 - ā^L))
    V = _dplr_numerators(Ct, P, B)  # (K, H, M)
    s = _two_level_product(V * weight, 1 + e_inner, jnp.swapaxes(1 + e_outer[..., :nb], -1, -2), L)
    S = jnp.fft.rfft(2 * s, axis=-1)  # (K, H, J)
    J = L // 2 + 1
    b = jnp.asarray(1 + np.exp(-2j * np.pi * np.arange(J) / L), cdt)  # 1 + ω_j, float64 on the host
    half_dt = (dt / 2)[:, None, None]
    k00 = S[:nC]  # (nC, H, J)
    k01 = half_dt * b[:, None] * S[nC : nC + nC * R].reshape(nC, R, H, J).transpose(0, 2, 3, 1)  # (nC, H, J, R)
    k10 = S[nC + nC * R : nC + nC * R + R].transpose(1, 2, 0)[None]  # (1, H, J, R)
    k11 = half_dt[..., None] * b[:, None, None] * S[nC + nC * R + R :].reshape(R, R, H, J).transpose(2, 3, 0, 1)[None]
    khat = woodbury(k00, k01, jnp.broadcast_to(k10, k01.shape), jnp.broadcast_to(k11, k01.shape + (R,)))
    K = jnp.fft.irfft(khat * dt[:, None], n=L, axis=-1)
    return K.reshape(lead + (H, L))


def dplr_dense(
    dt: Float[AnyArray, " H"], A: Complex[AnyArray, "H M"], P: Complex[AnyArray, "R H M"], B: Complex[AnyArray, "H M"], xp=jnp
) -> tuple[Complex[AnyArray, "H N N"], Complex[AnyArray, "H N"]]:
    """Bilinear ``(Ā, B̄)`` of the full ``N = 2M`` DPLR system as dense matrices (for setup, not the hot path).

    ``xp``: the array namespace, ``jax.numpy`` (default) or ``numpy`` (host float64 set-up, :func:`dplr_recurrence`)."""
    Af = xp.concatenate([A, xp.conj(A)], axis=-1)
    Pf = xp.concatenate([P, xp.conj(P)], axis=-1)  # (R, H, N)
    Bf = xp.concatenate([B, xp.conj(B)], axis=-1)
    N = Af.shape[-1]
    eye = xp.eye(N, dtype=Af.dtype)
    Amat = Af[:, :, None] * eye - xp.einsum("rhn,rhk->hnk", Pf, xp.conj(Pf))
    s = (2 / dt)[:, None, None]
    lhs = s * eye - Amat
    Ab = xp.linalg.solve(lhs, s * eye + Amat)
    Bb = xp.linalg.solve(lhs, 2 * Bf[..., None])[..., 0]
    return Ab, Bb


def matrix_power(X: Inexact[Array, "*batch N N"], n: int) -> Inexact[Array, "*batch N N"]:
    """``X^n`` for a static non-negative integer ``n`` by repeated squaring (``O(log n)`` matmuls)."""
    result = None
    base = X
    while n:
        if n & 1:
            result = base if result is None else result @ base
        n >>= 1
        if n:
            base = base @ base
    if result is None:
        return jnp.broadcast_to(jnp.eye(X.shape[-1], dtype=X.dtype), X.shape)
    return result


def ctilde(
    dt: Float[AnyArray, " H"],
    A: Complex[AnyArray, "H M"],
    P: Complex[AnyArray, "R H M"],
    B: Complex[AnyArray, "H M"],
    C: Complex[AnyArray, "*C H M"],
    L: int,
    xp=jnp,
) -> Complex[AnyArray, "*C H M"]:
    """``C̃ = C_f (I - Ā^L)`` restricted to the stored half (bilinear DPLR; dense ``Ā^L``, ``O(H N^3 log L)``);
    ``xp`` as in :func:`dplr_dense`."""
    M = A.shape[-1]
    Ab, _ = dplr_dense(dt, A, P, B, xp)
    AL = np.linalg.matrix_power(Ab, L) if xp is np else matrix_power(Ab, L)
    Cf = xp.concatenate([C, xp.conj(C)], axis=-1)
    return (Cf - xp.einsum("...hn,hnk->...hk", Cf, AL))[..., :M]


def ctilde_inverse(
    dt: Float[AnyArray, " H"],
    A: Complex[AnyArray, "H M"],
    P: Complex[AnyArray, "R H M"],
    B: Complex[AnyArray, "H M"],
    Ct: Complex[AnyArray, "*C H M"],
    L: int,
    xp=jnp,
) -> Complex[AnyArray, "*C H M"]:
    """The output matrix ``C = C̃ (I - Ā^L)^{-1}`` from ``C̃`` (inverse of :func:`ctilde`); ``xp`` as in
    :func:`dplr_dense`."""
    M = A.shape[-1]
    N = 2 * M
    Ab, _ = dplr_dense(dt, A, P, B, xp)
    power = np.linalg.matrix_power if xp is np else matrix_power
    IminusAL = xp.eye(N, dtype=Ab.dtype) - power(Ab, L)
    Ctf = xp.concatenate([Ct, xp.conj(Ct)], axis=-1)
    lead = Ctf.shape[:-2]
    rhs = xp.moveaxis(Ctf.reshape((-1,) + Ctf.shape[-2:]), 0, -1)  # (H, N, nC)
    sol = xp.linalg.solve(xp.swapaxes(IminusAL, -1, -2), rhs)  # C_f (I - Ā^L) = C̃_f, transposed
    return xp.moveaxis(sol, -1, 0).reshape(lead + (Ctf.shape[-2], N))[..., :M]


def ctilde_double(
    dt: Float[Array, " H"],
    A: Complex[Array, "H M"],
    P: Complex[Array, "R H M"],
    B: Complex[Array, "H M"],
    Ct: Complex[Array, "*C H M"],
    L: int,
    times: int,
) -> Complex[Array, "*C H M"]:
    """``C̃`` for length ``2^times · L`` from ``C̃ = C_f (I - Ā^L)`` for length ``L``, by doubling ``times`` times.

    ``I - Ā^{2L} = (I - Ā^L)(I + Ā^L)`` gives ``C_f (I - Ā^{2L}) = C̃ (I + Ā^L) = C̃ + C̃ Ā^L``: the output matrix C is
    unchanged, so the kernel of the doubled ``C̃`` continues the original one exactly (the length doubling of the
    official S4 code, state-spaces/s4 ``SSMKernelDPLR._setup_C``). Dense ``Ā^L`` by squaring, ``O(H N^3 log L)``."""
    M = A.shape[-1]
    Ab, _ = dplr_dense(dt, A, P, B)
    AL = matrix_power(Ab, L)
    Ctf = jnp.concatenate([Ct, jnp.conj(Ct)], axis=-1)
    for i in range(times):
        Ctf = Ctf + jnp.einsum("...hn,hnk->...hk", Ctf, AL)
        if i + 1 < times:
            AL = AL @ AL
    return Ctf[..., :M]


def dplr_recurrence(
    dt: Float[AnyArray, " H"],
    A: Complex[AnyArray, "H M"],
    P: Complex[AnyArray, "R H M"],
    B: Complex[AnyArray, "H M"],
    Ct: Complex[AnyArray, "H M"],
    L: int,
    xp=jnp,
) -> dict[str, AnyArray]:
    """The constants of the O(N) bilinear DPLR step (S4's recurrent mode), on the stored half state.

    With ``s = 2/Δ``, ``D_Δ = 1/(s - Λ)`` and ``G = I + P^* D_Δ P`` (rank ``R``, inner products over the full
    conjugate-symmetric state), the bilinear step ``x_new = Ā x + B̄ u`` is Woodbury's
    ``x_new = D_Δ x' - D_Δ P G^{-1} P^* D_Δ x'``, ``x' = (s + Λ) x - P (P^* x) + 2 B u``. Since
    ``D_Δ (s + Λ) = 1 + 2 Λ D_Δ``, ``D_Δ x' = x + v`` with the increment ``v = 2ΛD_Δ x - D_Δ P (P^* x) + 2 D_Δ B u``,
    and ``x_new = x + v - D_Δ P G^{-1} (P^* x + P^* v)``. The coefficients multiply only the increment, which is
    O(Δ) smaller than ``x``: their rounding perturbs ``Ā`` by O(Δ·eps) instead of O(eps), and such a fixed error
    compounds over the steps (``Ā^t``), so in float32 this form stays far closer to the convolution.

    Returns ``C = C̃ (I - Ā^L)^{-1}`` (:func:`ctilde_inverse`) and ``a = 2ΛD_Δ``, ``DP = D_Δ P``, ``DB = 2D_Δ B``,
    ``Ginv = G^{-1}`` (real ``(H, R, R)``). ``xp`` as in :func:`dplr_dense`.
    """
    C = ctilde_inverse(dt, A, P, B, Ct, L, xp)
    Dd = 1 / ((2 / dt)[:, None] - A)
    DP = Dd * P
    G = xp.eye(P.shape[0], dtype=dt.dtype) + 2 * xp.einsum("rhm,qhm->hrq", xp.conj(P), DP).real
    return {"C": C, "a": 2 * A * Dd, "DP": DP, "DB": 2 * Dd * B, "Ginv": xp.linalg.inv(G)}


def dplr_kernel(
    dt: Float[Array, " H"],
    A: Complex[Array, "H M"],
    P: Complex[Array, "R H M"],
    B: Complex[Array, "H M"],
    C: Complex[Array, "H M"],
    L: int,
    disc: str = "bilinear",
) -> Float[Array, "H L"]:
    """Convolution kernel ``(H, L)``, ``K_k = Re(C_f Ā^k B̄)``, of the DPLR system ``diag(Λ_f) - P_f^T conj(P_f)``.

    ``C`` is the output matrix itself; the truncation factor ``(I - Ā^L)`` is applied inside (:func:`ctilde`, a dense
    ``Ā^L``), then the kernel comes from :func:`dplr_kernel_from_ctilde`. Only ``disc="bilinear"`` is supported:
    the ZOH ``exp(ΔA)`` of a DPLR matrix has no Cauchy/Woodbury structure.
    """
    if disc != "bilinear":
        raise ValueError(
            f"dplr_kernel supports only disc='bilinear' (got {disc!r}): ZOH of a DPLR matrix has no Cauchy form. "
            "Use a diagonal system (S4D) for ZOH."
        )
    if P.ndim != 3 or P.shape[1:] != A.shape or B.shape != A.shape or C.shape != A.shape:
        raise ValueError(
            f"dplr_kernel expects A, B, C (H, M) and P (R, H, M); got A {A.shape}, P {P.shape}, B {B.shape}, "
            f"C {C.shape}."
        )
    return dplr_kernel_from_ctilde(dt, A, P, B, ctilde(dt, A, P, B, C, L), L)


# ----------------------------------------------------------------------------------------------------------------
# FFT convolution


def _materialized(y: Inexact[Array, "*shape"]) -> Inexact[Array, "*shape"]:
    """``y`` unchanged, but written out once in its ordinary row-major layout.

    The constraint names ``y``'s default layout, so it changes no value and no layout; what it does is stop XLA from
    fusing the computation of ``y`` into each of ``y``'s consumers. Without it XLA:CPU copies the ``(H, 2L) -> (L, H)``
    slice-and-transpose of :func:`fft_conv` into every elementwise fusion that reads ``y`` (the activation after the
    layer and its gradient: four of them in a GELU layer's forward+backward), each one a strided read; with it the
    transpose runs once as its own copy and the consumers read contiguous memory (docs/benchmarks.md, "The
    convolution's layout"). Likewise the Vandermonde powers (:func:`vandermonde`): XLA fused their complex
    exponentials into the real and the imaginary half of the matmul operands separately, computing each power twice
    or more per use.
    """
    return with_layout_constraint(y, Layout(major_to_minor=tuple(range(y.ndim))))


def conv_spectrum(
    k: Float[Array, "H Lk"] | Float[Array, "2 H Lk"], L: int
) -> Complex[Array, "H Lf"]:
    """The spectrum that :func:`fft_conv` multiplies a length-``L`` input's spectrum by: the real FFT of size ``2L``
    of the causal kernel ``k (H, Lk)``, or of the circular kernel of length ``2L`` assembled from a bidirectional
    ``k (2, H, Lk)`` (``k0`` at lags ``0..L-1``, ``k1[d]`` at lag ``-d ≡ 2L-d``). Kernels longer than ``L`` are
    truncated, shorter ones zero-padded. It depends on the kernel alone, so a step in micro-batches computes it once
    (:mod:`ssm.train.shared_kernels`)."""
    if k.ndim not in (2, 3) or (k.ndim == 3 and k.shape[0] != 2):
        raise ValueError(f"conv_spectrum expects k (H, Lk) or (2, H, Lk); got {k.shape}.")
    Lk = k.shape[-1]
    k = k[..., :L] if Lk >= L else jnp.pad(k, [(0, 0)] * (k.ndim - 1) + [(0, L - Lk)])
    n = 2 * L
    if k.ndim == 3:
        k0, k1 = k[0], k[1]
        back = jnp.concatenate([k1[:, :1], jnp.zeros_like(k1[:, :1]), k1[:, :0:-1]], axis=-1)  # lags 0, L, L+1..2L-1
        k = jnp.concatenate([k0 + jnp.pad(back[:, :1], ((0, 0), (0, L - 1))), back[:, 1:]], axis=-1)
    return jnp.fft.rfft(k, n=n, axis=-1)


def fft_conv_spectrum(
    u: Float[Array, "L H"], kf: Complex[Array, "H Lf"], D: Float[Array, " H"] | None = None
) -> Float[Array, "L H"]:
    """:func:`fft_conv` with the kernel's spectrum given (:func:`conv_spectrum` at ``u``'s length)."""
    L = u.shape[0]
    if kf.shape != (u.shape[1], L + 1):
        raise ValueError(f"fft_conv_spectrum expects u (L, H) and kf (H, L + 1); got u {u.shape}, kf {kf.shape}.")
    n = 2 * L
    # FFTs along the contiguous last axis of (H, L) are much faster than along axis 0 of (L, H).
    uf = jnp.fft.rfft(u.T, n=n, axis=-1)
    # The first L outputs written out in (H, L), then transposed as a copy of their own: fused into one
    # slice-and-transpose loop they were read strided from the (H, 2L) result (docs/benchmarks.md, "The presets at
    # their own batches; the convolution's output transpose": the same values, layers' CPU time 4-9 % lower).
    y = _materialized(_materialized(jnp.fft.irfft(uf * kf, n=n, axis=-1)[:, :L]).T)
    if D is not None:
        y = y + u * D
    return y.astype(u.dtype)


def fft_conv(
    u: Float[Array, "L H"], k: Float[Array, "H Lk"] | Float[Array, "2 H Lk"], D: Float[Array, " H"] | None = None
) -> Float[Array, "L H"]:
    """Causal (or bidirectional) convolution by real FFTs of size ``2L``, plus the skip ``D u``.

    ``k (H, Lk)``: ``y_t = Σ_{s≤t} k[t-s] u_s + D u_t``. ``k (2, H, Lk)`` (bidirectional, project convention):
    ``y_t = Σ_{s≤t} k0[t-s] u_s + Σ_{s≥t} k1[s-t] u_s + D u_t``, so the backward half is an exact reversed causal pass
    (it includes the current input). Kernels longer than ``L`` are truncated, shorter ones zero-padded.
    """
    if k.ndim not in (2, 3) or (k.ndim == 3 and k.shape[0] != 2) or k.shape[-2] != u.shape[1]:
        raise ValueError(
            f"fft_conv expects u (L, H) and k (H, Lk) or (2, H, Lk); got u {u.shape}, k {k.shape}."
        )
    return fft_conv_spectrum(u, conv_spectrum(k, u.shape[0]), D)


# ----------------------------------------------------------------------------------------------------------------
# Prefill: outputs over a prefix and the state after it, in one call


def diagonal_prefill(
    log_z: Complex[Array, "H M"],
    Bb: Complex[Array, "H M"],
    C: Complex[Array, "*C H M"],
    u: Float[Array, "L H"],
    x0: Complex[Array, "H M"],
    scale: float = 2.0,
) -> tuple[Float[Array, "*C L H"], Complex[Array, "H M"]]:
    """Run the diagonal recurrence ``x_k = Ā x_{k-1} + B̄ u_k`` (``Ā = exp(log_z)``, ``x_{-1} = x0``) over ``u`` in
    parallel. Returns ``(y, x_{L-1})`` with ``y_k = scale · Re Σ_m C_m x_k,m`` (no skip term).

    Outputs: FFT convolution with ``K = scale · Re Σ C B̄ Ā^k`` plus the free response ``scale · Re Σ C Ā^{k+1} x0``.
    Final state: ``Ā^L x0 + B̄ Σ_l Ā^l u_{L-1-l}``, a transposed two-level Vandermonde product (``O(H M √L)`` memory).
    """
    L, H = u.shape
    lead = C.shape[:-2]
    Cs = C.reshape((-1,) + C.shape[-2:])
    ys = []
    for c in Cs:
        k = scale * vandermonde(c * Bb, log_z, L)
        free = scale * vandermonde(c * jnp.exp(log_z) * x0, log_z, L)
        ys.append(fft_conv(u, k) + free.T)
    y = jnp.stack(ys).reshape(lead + (L, H))
    T = _block_size(L)
    nb = -(-L // T)
    w = jnp.pad(u[::-1], ((0, nb * T - L), (0, 0))).reshape(nb, T, H).astype(log_z.dtype)
    j = jnp.arange(T, dtype=jnp.real(log_z).dtype)
    b = jnp.arange(nb, dtype=j.dtype) * T
    inner = jnp.einsum("hmj,bjh->hmb", jnp.exp(log_z[:, :, None] * j), w)
    acc = jnp.sum(jnp.exp(log_z[:, :, None] * b) * inner, axis=-1)
    xL = jnp.exp(L * log_z) * x0 + Bb * acc
    return y, xL


def dense_prefill(
    Ab: Complex[Array, "H N N"],
    Bb: Complex[Array, "H N"],
    C: Complex[Array, "H N"],
    u: Float[Array, "L H"],
    x0: Complex[Array, "H N"],
    chunk: int = 128,
) -> tuple[Float[Array, "L H"], Complex[Array, "H N"]]:
    """Run a dense recurrence ``x_k = Ā x_{k-1} + B̄ u_k``, ``y_k = Re(C x_k)`` from ``x_{-1} = x0`` chunk-parallel.

    Within a chunk of ``T`` steps everything is matmuls against precomputed Krylov blocks ``[Ā^j B̄]_{j<T}`` and
    ``[C Ā^{t+1}]_{t<T}``; chunks are chained by ``x ← Ā^T x + Σ_s Ā^{T-1-s} B̄ u_s`` (a scan of ``L/T`` steps).
    """
    L, H = u.shape
    T = max(1, min(chunk, L))
    dt_c = Ab.dtype

    # Krylov blocks by doubling: [v, vĀ] -> [v, vĀ, vĀ^2, vĀ^3] ... (log T matmuls).
    Kb = Bb[:, None, :]  # (H, t, N): Ā^j B̄
    Psi = jnp.einsum("hn,hnk->hk", C, Ab)[:, None, :]  # (H, t, N): C Ā^{t+1}
    Pw = Ab
    while Kb.shape[1] < T:
        Kb = jnp.concatenate([Kb, jnp.einsum("hnk,hjk->hjn", Pw, Kb)], axis=1)
        Psi = jnp.concatenate([Psi, jnp.einsum("hjn,hnk->hjk", Psi, Pw)], axis=1)
        Pw = Pw @ Pw
    Kb, Psi = Kb[:, :T], Psi[:, :T]
    kern = jnp.concatenate([jnp.einsum("hn,hn->h", C, Bb)[:, None], jnp.einsum("htn,hn->ht", Psi[:, : T - 1], Bb)], axis=1).real
    idx = jnp.arange(T)
    lag = idx[:, None] - idx[None, :]
    toep = jnp.where(lag >= 0, kern[:, jnp.clip(lag, 0, T - 1)], 0.0)  # (H, T, T)

    def run_chunk(x: Array, uc: Array, AT: Array) -> tuple[Array, Array]:
        n = uc.shape[0]
        y = jnp.einsum("htn,hn->th", Psi[:, :n], x).real + jnp.einsum("hts,sh->th", toep[:, :n, :n], uc)
        x_new = jnp.einsum("hnk,hk->hn", AT, x) + jnp.einsum("hsn,sh->hn", Kb[:, :n][:, ::-1], uc.astype(dt_c))
        return y, x_new

    r = L % T
    ys = []
    x = x0
    if r:
        y_r, x = run_chunk(x, u[:r], matrix_power(Ab, r))
        ys.append(y_r)
    nfull = L // T
    if nfull:
        AT = matrix_power(Ab, T)

        def body(x: Array, uc: Array) -> tuple[Array, Array]:
            y, x = run_chunk(x, uc, AT)
            return x, y

        x, y_f = jax.lax.scan(body, x, u[r:].reshape(nfull, T, H))
        ys.append(y_f.reshape(nfull * T, H))
    return jnp.concatenate(ys, axis=0).astype(u.dtype), x


# ----------------------------------------------------------------------------------------------------------------
# Diagonal linear recurrence by associative scan (S5)


def _combine(
    e1: tuple[Complex[Array, "..."], Complex[Array, "..."]], e2: tuple[Complex[Array, "..."], Complex[Array, "..."]]
) -> tuple[Complex[Array, "..."], Complex[Array, "..."]]:
    # e1 is the earlier element: x = a2 (a1 x0 + b1) + b2.
    a1, b1 = e1
    a2, b2 = e2
    return a2 * a1, a2 * b1 + b2


def _scan(a: Complex[Array, " P"], b: Complex[Array, "L P"], reverse: bool) -> Complex[Array, "L P"]:
    A = jnp.broadcast_to(a, b.shape)
    return jax.lax.associative_scan(_combine, (A, b), reverse=reverse)[1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _recurrence(a: Complex[Array, " P"], b: Complex[Array, "L P"], reverse: bool) -> Complex[Array, "L P"]:
    return _scan(a, b, reverse)


def _recurrence_fwd(a, b, reverse):
    x = _scan(a, b, reverse)
    return x, (a, x)


def _recurrence_bwd(reverse, res, g):
    # The adjoint of x_k = a x_{k-1} + b_k is the reversed recurrence λ_k = g_k + a λ_{k+1}, and then
    # ∂/∂b_k = λ_k, ∂/∂a = Σ_k λ_k x_{k-1} (JAX's convention for holomorphic maps: plain transposes, no conjugates).
    # One more associative scan instead of differentiating through the scan's strided slices (~5x faster on CPU).
    a, x = res
    lam = _scan(a, g, not reverse)
    zero = jnp.zeros_like(x[:1])
    x_prev = jnp.concatenate([x[1:], zero]) if reverse else jnp.concatenate([zero, x[:-1]])
    return jnp.sum(lam * x_prev, axis=0), lam


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def linear_recurrence(
    a: Complex[Array, " P"], b: Complex[Array, "L P"], *, reverse: bool = False
) -> Complex[Array, "L P"]:
    """All states of ``x_k = a ∘ x_{k-1} + b_k`` (``x_{-1} = 0``) by ``jax.lax.associative_scan``.

    ``reverse=True`` runs the recurrence from the end: ``x_k = a ∘ x_{k+1} + b_k``, i.e. ``x_k = Σ_{s≥k} a^{s-k} b_s``.
    Reverse-mode differentiable (custom VJP: the adjoint is the opposite-direction scan); no forward mode.
    """
    return _recurrence(a, b, reverse)


# ----------------------------------------------------------------------------------------------------------------
# Chunked diagonal convolution (short sequences, small state)


def _chunked_causal(
    u: Float[Array, "L H"], log_z: Complex[Array, "H M"], c: Complex[Array, "H M"], scale: float, T: int
) -> Float[Array, "L H"]:
    """``y_t = Σ_{s≤t} K[t-s] u_s`` with ``K_l = scale · Re Σ_m c_m z_m^l``, chunk by chunk (see
    :func:`diagonal_chunked_conv`)."""
    L, H = u.shape
    nc = -(-L // T)
    rdt = jnp.real(log_z).dtype
    uc = jnp.pad(u.astype(rdt), ((0, nc * T - L), (0, 0))).reshape(nc, T, H).transpose(2, 1, 0)  # (H, T, nc)
    i = jnp.arange(T, dtype=rdt)
    # Within a chunk: the lower-triangular Toeplitz matrix of the first T kernel taps.
    k = scale * vandermonde(c, log_z, T)  # (H, T)
    # Lower-triangular Toeplitz by tiling [k, 0] (length 2T) T times: row r of the (T, 2T-1) reshape reads
    # [k, 0] at (j - r) mod 2T, i.e. k[j - r] for j >= r and zeros above. Its gradient is a sum of slices, where a
    # gather by lag would give a scatter-add.
    a = jnp.pad(k, ((0, 0), (0, T)))
    toep = jnp.tile(a, (1, T))[:, : T * (2 * T - 1)].reshape(H, T, 2 * T - 1)[:, :, :T].transpose(0, 2, 1)
    y = jnp.matmul(toep, uc, precision=_HIGHEST)  # (H, T, nc)
    if nc > 1:
        # State at the end of each chunk from its own inputs, S_c = Σ_j z^{T-1-j} u_{cT+j} (real and imaginary parts
        # as one real matmul), then chained across chunks, X_{c+1} = z^T X_c + S_c, X_0 = 0.
        zr = jnp.exp(log_z[:, :, None] * (T - 1 - i))  # (H, M, T)
        S = jnp.matmul(jnp.concatenate([zr.real, zr.imag], axis=1), uc[:, :, :-1], precision=_HIGHEST)
        M = log_z.shape[1]
        S = (S[:, :M] + 1j * S[:, M:]).transpose(2, 0, 1)  # (nc-1, H, M)
        X = linear_recurrence(jnp.exp(T * log_z).reshape(-1), S.reshape(nc - 1, -1)).reshape(nc - 1, H, M)
        # Its output in the next chunk: scale · Re Σ_m c_m z_m^{i+1} X_m.
        out = c[:, None, :] * jnp.exp(log_z[:, None, :] * (i + 1)[:, None])  # (H, T, M)
        Xr = X.transpose(1, 2, 0)  # (H, M, nc-1)
        y_in = jnp.matmul(jnp.concatenate([out.real, -out.imag], axis=-1),
                          jnp.concatenate([Xr.real, Xr.imag], axis=1), precision=_HIGHEST)  # (H, T, nc-1)
        y = y + scale * jnp.pad(y_in, ((0, 0), (0, 0), (1, 0)))
    return y.transpose(2, 1, 0).reshape(nc * T, H)[:L]


def diagonal_chunked_conv(
    u: Float[Array, "L H"],
    log_z: Complex[Array, "H M"],
    c: Complex[Array, "d H M"],
    D: Float[Array, " H"] | None = None,
    *,
    scale: float = 2.0,
    chunk: int = 64,
) -> Float[Array, "L H"]:
    """The convolution of :func:`fft_conv` with the diagonal kernel ``K_l = scale · Re Σ_m c_m z_m^l``
    (``z = exp(log_z)``, ``|z| ≤ 1``), computed as the recurrence it comes from, in chunks of ``T = chunk`` steps
    (the chunked, block-decomposed form of a linear recurrence, as in Dao & Gu 2024, "Transformers are SSMs"):

        y_{cT+i} = Σ_{j≤i} K_{i-j} u_{cT+j}  +  scale · Re Σ_m c_m z_m^{i+1} X_{c,m},
        X_{c+1} = z^T X_c + Σ_j z^{T-1-j} u_{cT+j},   X_0 = 0.

    Work per step and channel: ``T`` (the Toeplitz block) ``+ 4M`` (state in and out) real multiply-adds, all as
    batched matmuls, against FFTs of size ``2L``; cheaper for short ``L`` and small ``M``. ``c (1, H, M)`` is causal,
    ``c (2, H, M)`` bidirectional (``c[1]`` the backward half, as ``fft_conv``'s ``k[1]``). Needs ``Re log_z ≤ 0``
    (decaying modes): the state is carried forwards, never by ``z^{-1}``.
    """
    if c.ndim != 3 or c.shape[0] not in (1, 2) or c.shape[1:] != log_z.shape or log_z.shape[0] != u.shape[1]:
        raise ValueError(
            f"diagonal_chunked_conv expects u (L, H), log_z (H, M), c (1|2, H, M); got u {u.shape}, "
            f"log_z {log_z.shape}, c {c.shape}."
        )
    T = max(1, min(chunk, u.shape[0]))
    y = _chunked_causal(u, log_z, c[0], scale, T)
    if c.shape[0] == 2:
        y = y + _chunked_causal(u[::-1], log_z, c[1], scale, T)[::-1]
    if D is not None:
        y = y + u * D
    return y.astype(u.dtype)
