"""HOPE: Hankel-operator parameterized SSMs (Yu, Mahoney, Erichson 2024, "There is HOPE to Avoid HiPPOs for
Long-memory State Space Models").

Each channel's SSM is given by its first n Markov parameters ``h_1..h_n`` (the entries of its Hankel operator),
not by ``(A, B, C)``. The paper samples the transfer function ``G(z) = Σ_j h_j z^{-j}`` on the unit circle after the
Möbius warp ``w(z) = ((1+Δ)z + (Δ-1)) / ((Δ-1)z + (Δ+1))`` (inverse bilinear with step 1, then bilinear with step Δ):
``Ĝ_k = Σ_j h_j e^{-ijθ_k}``, ``θ_k = 2 atan2(sin(πk/L)/Δ, cos(πk/L))`` (:func:`warped_response`).

**Realization (derived here).** In the delay operator ``q = z^{-1}``, ``w^{-1} = β(q) = (q - α)/(1 - αq)`` with
``α = (1-Δ)/(1+Δ)``: a first-order all-pass section. So the warped filter is

    G_Δ(q) = Σ_{j=1}^{n} h_j β(q)^j,

a chain of n identical all-pass sections ``s_j = β(q) s_{j-1}`` (``s_0 = u``) whose outputs are weighted by ``h_j``
(a "warped FIR filter"). Δ = 1 gives ``α = 0``, ``β = q``: the plain FIR filter with taps ``h_j`` at lags ``j``.
Each section is ``s_j[t] + α s_{j-1}[t] = α s_j[t-1] + s_{j-1}[t-1] =: r_j[t-1]``, so the n numbers
``r_j = α s_j + s_{j-1}`` are a minimal state (G_Δ has degree n). With the lower shift ``S``, ``e₁``, and
``T = (I + αS)^{-1}`` (``T_ij = (-α)^{i-j}``, i ≥ j)::

    s_t = T r_{t-1} - α T e₁ u_t,    y_t = h·s_t + D u_t,    r_t = (αI + S) s_t + e₁ u_t,

i.e. ``r_t = Ā r_{t-1} + B̄ u_t`` with ``Ā = (αI + S) T`` (all eigenvalues α, ``|α| < 1`` for Δ > 0),
``B̄ = (I - αĀ) e₁``, and ``y_t = C̃ r_{t-1} + D̃ u_t`` with ``C̃ = h T``, ``D̃ = Σ_j h_j (-α)^j``. The all-pass
sections are lossless, so the state stays well scaled for any Δ.

**Kernel (a deliberate difference from the reference).** The reference uses the L samples ``Ĝ_k`` as an FFT
multiplier, i.e. a *circular* convolution with the impulse response of ``G_Δ`` aliased modulo L (its tail decays only
like ``|α|^t ≈ e^{-2Δt}``, so for small Δ the wrap-around is large). Here the kernel is the exact impulse response
``K_0 = D̃``, ``K_k = C̃ Ā^{k-1} B̄``, truncated at L (:func:`hope_kernel`), used in an ordinary causal (zero-padded)
convolution; so the convolution mode, ``step`` and ``prefill`` are exactly the same causal system. Its frequency response is
``Ĝ`` (:func:`warped_response` sampled finely enough recovers it, up to the aliasing of the tail).

Markov parameters are real: with a real input the reference's ``Re(IFFT(FFT(u)·Ĝ))`` ignores ``Im h`` (Ĝ of
``i·Im h`` is conjugate-antisymmetric), so storing complex ``h`` as the reference does would only add dead weights.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ssm import kernels
from ssm.layers.base import AbstractConvSSMLayer
from ssm.layers.initializers import init_log_dt, resolve_dtype


def warped_response(h: Float[Array, "*batch n"], dt: Float[Array, "*batch"], L: int) -> Array:
    """The paper's samples ``Ĝ_k = Σ_{j=1}^n h_j e^{-ijθ_k}``, ``θ_k = 2 atan2(sin(πk/L)/Δ, cos(πk/L))``,
    ``k = 0..L-1``: shape ``(*batch, L)`` complex."""
    k = jnp.arange(L, dtype=jnp.result_type(h.dtype, jnp.float32))
    x = jnp.pi * k / L
    theta = 2 * jnp.arctan2(jnp.sin(x) / dt[..., None], jnp.cos(x))  # (*batch, L)
    j = jnp.arange(1, h.shape[-1] + 1, dtype=theta.dtype)
    return jnp.einsum("...j,...jk->...k", h.astype(jnp.result_type(h.dtype, jnp.complex64)),
                      jnp.exp(-1j * j[:, None] * theta[..., None, :]))


def _upper_toeplitz(col: Float[Array, "*batch n"]) -> Float[Array, "*batch n n"]:
    """``U_rj = col_{j-r}`` (``j ≥ r``), 0 below the diagonal: the transpose of the lower-triangular Toeplitz matrix of
    ``col``.

    ``[col, 0]`` (length 2n) tiled n times and read as ``(n, 2n-1)`` rows gives ``row r, entry j = [col, 0]_{(j-r) mod
    2n}``, i.e. ``col_{j-r}`` for ``j ≥ r`` and 0 for ``j < r``. Built from slices and reshapes, so its gradient is a
    sum of slices, where a gather by lag would give a scatter-add."""
    n = col.shape[-1]
    a = jnp.concatenate([col, jnp.zeros_like(col)], axis=-1)
    rows = jnp.tile(a, (1,) * (col.ndim - 1) + (n,))[..., : n * (2 * n - 1)]
    return rows.reshape(col.shape[:-1] + (n, 2 * n - 1))[..., :n]


def _lower_toeplitz(col: Float[Array, "*batch n"]) -> Float[Array, "*batch n n"]:
    """The lower-triangular Toeplitz matrix ``T_ij = col_{i-j}`` (``i ≥ j``), 0 above the diagonal."""
    return jnp.swapaxes(_upper_toeplitz(col), -1, -2)


def hope_realization(
    h: Float[Array, "*batch n"], dt: Float[Array, "*batch"]
) -> tuple[Float[Array, "*batch n n"], Float[Array, "*batch n"], Float[Array, "*batch n"], Float[Array, "*batch"]]:
    """``(Ā, B̄, C̃, D̃)`` of the all-pass-chain realization of ``G_Δ(q) = Σ_j h_j β(q)^j`` (module docstring):
    ``r_t = Ā r_{t-1} + B̄ u_t``, ``y_t = C̃ r_{t-1} + D̃ u_t`` (no skip term)."""
    n = h.shape[-1]
    alpha = (1 - dt) / (1 + dt)
    # First column of T = (I + αS)^{-1}: (-α)^k, built by a cumulative product so that it is smooth at α = 0.
    col = jnp.cumprod(jnp.concatenate([jnp.ones_like(alpha)[..., None],
                                       jnp.broadcast_to(-alpha[..., None], alpha.shape + (n - 1,))], -1), -1)
    T = _lower_toeplitz(col)  # (*batch, n, n)
    # Ā = (αI + S)T and B̄ = (I - αĀ)e₁ in closed form (first column of Ā: α, (1-α²)(-α)^{i-1}; B̄_i = (1-α²)(-α)^i),
    # with 1 - α² = 4Δ/(1+Δ)² as in hope_kernel: formed as αT + ST and e₁ - αĀe₁, every entry below the diagonal is
    # a difference of two numbers near 1 when Δ → 0, and loses digits in float32.
    g = 4 * dt / (1 + dt) ** 2
    Ab = _lower_toeplitz(jnp.concatenate([alpha[..., None], g[..., None] * col[..., :-1]], axis=-1))
    Bb = g[..., None] * col
    C = jnp.einsum("...j,...jk->...k", h, T)
    Dt = jnp.sum(h * col * -alpha[..., None], axis=-1)  # Σ_j h_j (-α)^j
    return Ab, Bb, C, Dt


# Rows of X at or above this count are multiplied by a built Toeplitz matrix (one matmul, but its build and its
# gradient cost a fixed ~1 ms at H 128, n 64); fewer rows by zero-padded FFTs of size 2n, whose cost grows with the
# rows. Measured (HOPE kernel fwd+bwd, H 128, n 64, L 4096, CPU): threshold 1 (matmuls only) 48.5 ms, 9: 30.9,
# 17: 26.9, 33: 28.7, FFTs only: 31.0.
_MATMUL_MIN_ROWS = 17


def _series_mul(p: Float[Array, "G n"], x: Float[Array, "G k n"]) -> Float[Array, "G k n"]:
    """Each row of ``x`` times the power series ``p``, truncated to ``n`` terms: ``y_ci = Σ_{m≤i} p_m x_{c,i-m}``,
    i.e. ``y_c = Toeplitz(p) x_c`` for the lower-triangular Toeplitz matrix of ``p``."""
    n = x.shape[-1]
    if x.shape[1] >= _MATMUL_MIN_ROWS:
        return jnp.einsum("gji,gcj->gci", _upper_toeplitz(p), x)
    # A linear convolution of two length-n sequences fits in 2n - 1 < 2n points: no wrap-around.
    f = jnp.fft.rfft(p, 2 * n, axis=-1)[:, None, :] * jnp.fft.rfft(x, 2 * n, axis=-1)
    return jnp.fft.irfft(f, 2 * n, axis=-1)[..., :n].astype(x.dtype)


def hope_kernel(h: Float[Array, "*batch n"], dt: Float[Array, "*batch"], L: int) -> Float[Array, "*batch L"]:
    """The exact impulse response ``K_0 = D̃``, ``K_k = C̃ Ā^{k-1} B̄`` (``k < L``) of the warped filter.

    Power series form: ``Ā = (αI + S)(I + αS)^{-1}`` is a power series in the lower shift ``S``, so every matrix here is
    lower-triangular Toeplitz and products of them are products of power series truncated to ``n`` terms: ``Ā = a(S)``
    with ``a(x) = (α + x)/(1 + αx)`` (first column ``α, (1-α²)(-α)^{i-1}``), ``B̄ = b(S) e₁`` with
    ``b(x) = (1-α²)/(1 + αx)`` (entries ``(1-α²)(-α)^i``), ``Ā^j B̄`` the first n coefficients of ``b a^j``.
    ``1 - α²`` is computed as ``4Δ/(1+Δ)²`` (as in :func:`hope_realization`): written as ``1 - α·α`` it loses digits in
    float32 as ``Δ → 0``.

    Two levels, ``k - 1 = bT + j`` with ``T ≈ √L``: ``K = (C̃ Ā^{bT}) · (Ā^j B̄)``. The columns ``Ā^j B̄``
    (``j < T``) by doubling: ``[Q, a^{2^s} Q]``, ``a^{2^{s+1}} = a^{2^s} a^{2^s}``. The rows ``C̃ Ā^{bT}`` by doubling
    too, as columns: a Toeplitz matrix is persymmetric (``J M^T J = M``, ``J`` the reversal), so ``C̃ Ā^{bT}``
    reversed is ``Ā^{bT} (J C̃^T)``, and ``J C̃^T = (I + αS)^{-1} (J h^T)``. Each doubling step is one product of a
    power series with a block of series (:func:`_series_mul`), ``log2 L`` steps in all, then one batched matmul.
    ``O(n² √L + n L)`` work and ``O(n √L)`` memory per filter.
    """
    batch, n = h.shape[:-1], h.shape[-1]
    h, dt = h.reshape(-1, n), dt.reshape(-1)
    alpha = (1 - dt) / (1 + dt)
    # (-α)^i by a cumulative product, so that it is smooth at α = 0 (Δ = 1).
    pw = jnp.cumprod(jnp.concatenate([jnp.ones_like(alpha)[:, None],
                                      jnp.broadcast_to(-alpha[:, None], alpha.shape + (n - 1,))], -1), -1)
    Dt = jnp.sum(h * pw * -alpha[:, None], axis=-1)  # Σ_j h_j (-α)^j
    if L == 1:
        return Dt.reshape(batch + (1,))
    g = 4 * dt / (1 + dt) ** 2  # 1 - α²
    T = max(1, 1 << int(np.ceil(np.log2(np.sqrt(L - 1)))))
    nb = -(-(L - 1) // T)

    Q, p = (g[:, None] * pw)[:, None, :], jnp.concatenate([alpha[:, None], g[:, None] * pw[:, :-1]], -1)
    while Q.shape[1] < T:  # Q: rows Ā^j B̄, j < 2^s; p: a^{2^s}
        X = _series_mul(p, jnp.concatenate([Q, p[:, None, :]], axis=1))
        Q, p = jnp.concatenate([Q, X[:, :-1]], axis=1), X[:, -1]
    # p = a^T. Rows (C̃ Ā^{bT}) reversed, b < 2^s.
    R = _series_mul(pw, h[:, None, ::-1])
    while R.shape[1] < nb:
        take = min(R.shape[1], nb - R.shape[1])
        last = R.shape[1] + take == nb
        X = _series_mul(p, R[:, :take] if last else jnp.concatenate([R[:, :take], p[:, None, :]], axis=1))
        R = jnp.concatenate([R, X[:, :take]], axis=1)
        if not last:
            p = X[:, -1]
    K = jnp.einsum("gbn,gtn->gbt", R[..., ::-1], Q).reshape(h.shape[0], nb * T)[:, : L - 1]
    return jnp.concatenate([Dt[:, None], K], axis=-1).reshape(batch + (L,))


HOPE_INITS = ("randn",)


class HOPE(AbstractConvSSMLayer):
    """HOPE layer: ``ssm.HOPE(d_model=H, d_state=n, key=key, **options)``; ``n`` Markov parameters per channel.

    Options: ``dt_min``/``dt_max`` (1e-4, 1e-1: log-uniform Δ init, one Δ per transfer function as in the reference),
    ``train_dt`` (True; False freezes Δ by a stop-gradient, as the reference's ``lr_dt = 0``), ``init``: ``"randn"``
    (``h_j ~ N(0, 1)·init_scale/√n``, ``init_scale = 1/4`` is the reference's real-part scale
    ``Re(randn_complex)/(2√(2n))``), ``decay_exp`` (0: ``h_j ← h_j·j^{decay_exp}``, the reference's optional decay),
    ``bidirectional`` (a second set of Markov parameters and Δ for the backward kernel, project convention), ``dtype``
    of the parameters.

    Parameters: ``h (d, H, n)``, ``log_dt (d, H)`` (``d = 2`` if bidirectional), ``D (H,)``. SSM parameters: ``h``,
    ``log_dt``. ``rate`` multiplies Δ.
    """

    ssm_param_names: ClassVar[tuple[str, ...]] = ("h", "log_dt")
    dt_param_names: ClassVar[tuple[str, ...]] = ("log_dt",)

    d_model: int = eqx.field(static=True)
    d_state: int = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    train_dt: bool = eqx.field(static=True)
    h: Float[Array, "d H n"]
    log_dt: Float[Array, "d H"]
    D: Float[Array, " H"]

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        *,
        key: PRNGKeyArray,
        init: str = "randn",
        init_scale: float = 0.25,
        decay_exp: float = 0.0,
        dt_min: float = 1e-4,
        dt_max: float = 1e-1,
        train_dt: bool = True,
        bidirectional: bool = False,
        dtype: Any = None,
    ):
        if d_model < 1 or d_state < 1:
            raise ValueError(f"HOPE needs d_model >= 1 and d_state (Markov parameters) >= 1; got {d_model}, {d_state}.")
        if init not in HOPE_INITS:
            raise ValueError(f"Unknown HOPE init {init!r}; choose one of {HOPE_INITS}.")
        H, n, d = d_model, d_state, 2 if bidirectional else 1
        k_h, k_dt, k_d = jax.random.split(key, 3)
        self.d_model, self.d_state, self.bidirectional, self.train_dt = H, n, bidirectional, train_dt
        dtype = resolve_dtype(dtype)
        j = jnp.arange(1, n + 1, dtype=jnp.zeros(()).dtype)
        self.h = (jax.random.normal(k_h, (d, H, n)) * (init_scale / np.sqrt(n)) * j**decay_exp).astype(dtype)
        self.log_dt = init_log_dt(k_dt, (d, H), dt_min, dt_max).astype(dtype)
        self.D = jax.random.normal(k_d, (H,)).astype(dtype)

    def _dt(self, rate: float) -> Float[Array, "d H"]:
        log_dt = self.log_dt if self.train_dt else jax.lax.stop_gradient(self.log_dt)
        return rate * jnp.exp(log_dt)

    def realization(self, *, rate: float = 1.0) -> tuple[Array, Array, Array, Array]:
        """``(Ā (d,H,n,n), B̄ (d,H,n), C̃ (d,H,n), D̃ (d,H))`` of :func:`hope_realization` per transfer function."""
        return hope_realization(self.h, self._dt(rate))

    def kernel(self, L: int, *, rate: float = 1.0) -> Float[Array, "H L"] | Float[Array, "2 H L"]:
        """Impulse response ``K_0 = D̃``, ``K_k = C̃ Ā^{k-1} B̄`` of the warped filter, ``(H, L)`` (``(2, H, L)``
        bidirectional: forward, backward)."""
        k = hope_kernel(self.h, self._dt(rate), L)
        return k if self.bidirectional else k[0]

    # -- recurrent mode -------------------------------------------------------------------------------------------

    def init_state(self, *, rate: float = 1.0) -> Float[Array, "H n"]:
        """Zero state: the n all-pass-chain registers ``r_j`` per channel (``rate`` changes nothing here)."""
        self._check_recurrent()
        return jnp.zeros((self.d_model, self.d_state), self.h.dtype)

    def step(
        self, u_t: Float[Array, " H"], state: Float[Array, "H n"], *, rate: float = 1.0
    ) -> tuple[Float[Array, " H"], Float[Array, "H n"]]:
        self._check_recurrent()
        Ab, Bb, C, Dt = (a[0] for a in self.realization(rate=rate))
        y = jnp.einsum("hn,hn->h", C, state) + (Dt + self.D) * u_t
        new = jnp.einsum("hnk,hk->hn", Ab, state) + Bb * u_t[:, None]
        return y.astype(u_t.dtype), new

    def prefill(
        self, u: Float[Array, "L H"], state: Float[Array, "H n"] | None = None, *, rate: float = 1.0
    ) -> tuple[Float[Array, "L H"], Float[Array, "H n"]]:
        self._check_recurrent()
        r0 = self.init_state() if state is None else state
        Ab, Bb, C, Dt = (a[0] for a in self.realization(rate=rate))
        # dense_prefill gives C̃ r_k (state after input k); the output reads the state before the input.
        cd = jnp.result_type(Ab.dtype, jnp.complex64)  # kernels.dense_prefill works on complex systems
        yr, rL = kernels.dense_prefill(Ab.astype(cd), Bb.astype(cd), C.astype(cd), u, r0.astype(cd))
        rL = rL.real
        y_prev = jnp.concatenate([jnp.einsum("hn,hn->h", C, r0)[None], yr[:-1]], axis=0)
        return (y_prev + (Dt + self.D) * u).astype(u.dtype), rL
