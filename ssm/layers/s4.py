"""S4: the diagonal-plus-low-rank structured state space layer (Gu, Goel, Ré 2022, "Efficiently Modeling Long Sequences
with Structured State Spaces"), in its NPLR/DPLR form with HiPPO initialization.

Per channel (M = N/2 stored modes; full system ``Λ_f = [Λ, conj Λ]``, ``P_f = [P, conj P]``)::

    A = diag(Λ_f) - P_f^T conj(P_f),    Ā = (I - Δ/2 A)^{-1}(I + Δ/2 A),  B̄ = (I - Δ/2 A)^{-1} Δ B   (bilinear)
    y = K * u + D u,   K_k = Re(C_f Ā^k B̄)

Parameterization (as official S4): the stored output parameter is ``C̃ = C (I - Ā^{l_max})`` for the static length
``l_max``, so the kernel is Cauchy + Woodbury at the ``l_max``-th roots of unity (``ssm.kernels.dplr_kernel_from_ctilde``)
with no matrix power on the training path. The true output matrix ``C = C̃ (I - Ā^{L0})^{-1}`` (``L0 = round(l_max/rate)``)
is needed only by the recurrent mode; it is computed once in :meth:`S4.init_state` and carried in the state.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ssm import hippo, kernels
from ssm.layers.base import AbstractSSMLayer
from ssm.layers.s4d import complex_normal, init_log_dt

# The dense setup (matrix powers) runs eagerly at construction and in init_state: compile it as one program.
_ctilde = jax.jit(kernels.ctilde, static_argnums=5)
_ctilde_inverse = jax.jit(kernels.ctilde_inverse, static_argnums=5)


def _small_solve(G: Float[Array, "H R R"], b: Float[Array, "H R"]) -> Float[Array, "H R"]:
    """Batched ``G^{-1} b`` for the tiny ``R x R`` Woodbury systems of the recurrent step. Ranks 1 and 2 (every
    HiPPO measure) are solved in closed form: a LAPACK call inside the generation ``lax.scan`` costs more than the
    whole O(N) step, and was seen to stall multi-layer generation on CPU."""
    R = G.shape[-1]
    if R == 1:
        return b / G[..., 0]
    if R == 2:
        a, c, d, e = G[..., 0, 0], G[..., 0, 1], G[..., 1, 0], G[..., 1, 1]
        det = a * e - c * d
        return jnp.stack([e * b[..., 0] - c * b[..., 1], a * b[..., 1] - d * b[..., 0]], axis=-1) / det[..., None]
    return jnp.linalg.solve(G, b[..., None])[..., 0]


class S4(AbstractSSMLayer):
    """DPLR SSM layer: ``ssm.S4(d_model=H, d_state=N, key=key, **options)``.

    Options: ``measure`` in ``("legs", "legt", "lagt", "fout")`` (default ``"legs"``); ``rank`` of the low-rank term
    (default: the measure's minimum, 1, or 2 for LegT; extra rows start at 0); ``n_ssm`` copies of (Λ, P, B), channel
    ``h`` uses copy ``h % n_ssm`` (default 1: shared by all channels; ``n_ssm = H`` gives one per channel);
    ``l_max`` (default 1024): the length ``C̃`` is set up for, the longest sequence a call accepts at ``rate = 1``;
    ``disc``: only ``"bilinear"`` (ZOH of a DPLR matrix has no Cauchy form; use S4D for ZOH); ``bidirectional``;
    ``dt_min``/``dt_max``; ``b_clip`` (2.0, official: Im B̃ clipped at init; ``None`` for the exact NPLR B).

    Parameters: ``log_dt (H,)``; ``log_A_re, A_im (n_ssm, M)`` (``Λ = -exp(log_A_re) + i A_im``); ``P_re, P_im
    (R, n_ssm, M)``; ``B_re, B_im (n_ssm, M)``; ``C_re, C_im (d, H, M)`` = ``C̃`` (``d = 2`` if bidirectional);
    ``D (H,)``. SSM parameters: ``log_dt, log_A_re, A_im, P_re, P_im, B_re, B_im``.

    ``rate`` must be a Python number here (it sets the static kernel length ``round(l_max/rate)``).
    """

    ssm_param_names: ClassVar[tuple[str, ...]] = ("log_dt", "log_A_re", "A_im", "P_re", "P_im", "B_re", "B_im")
    dt_param_names: ClassVar[tuple[str, ...]] = ("log_dt",)

    d_model: int = eqx.field(static=True)
    d_state: int = eqx.field(static=True)
    n_ssm: int = eqx.field(static=True)
    l_max: int = eqx.field(static=True)
    disc: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    block: int = eqx.field(static=True)
    log_dt: Float[Array, " H"]
    log_A_re: Float[Array, "S M"]
    A_im: Float[Array, "S M"]
    P_re: Float[Array, "R S M"]
    P_im: Float[Array, "R S M"]
    B_re: Float[Array, "S M"]
    B_im: Float[Array, "S M"]
    C_re: Float[Array, "d H M"]
    C_im: Float[Array, "d H M"]
    D: Float[Array, " H"]

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        key: PRNGKeyArray,
        measure: str = "legs",
        rank: int | None = None,
        n_ssm: int = 1,
        l_max: int = 1024,
        disc: str = "bilinear",
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        b_clip: float | None = 2.0,
        block: int = 256,
    ):
        if d_state < 2 or d_state % 2:
            raise ValueError(f"S4 stores d_state/2 conjugate pairs: d_state must be even and >= 2, got {d_state}.")
        if disc != "bilinear":
            raise ValueError(
                f"S4 (DPLR) supports disc='bilinear' only, got {disc!r}: ZOH of a DPLR matrix has no Cauchy/Woodbury "
                "form. Use ssm.S4D for ZOH."
            )
        if n_ssm < 1 or d_model % n_ssm:
            raise ValueError(f"n_ssm must divide d_model; got n_ssm={n_ssm}, d_model={d_model}.")
        if l_max < 1:
            raise ValueError(f"l_max must be a positive sequence length, got {l_max}.")
        rank = (2 if measure == "legt" else 1) if rank is None else rank
        k_dt, k_c, k_d = jax.random.split(key, 3)
        H, M, S = d_model, d_state // 2, n_ssm
        Lam, P, B, _ = hippo.nplr(measure, d_state, rank, b_clip=b_clip)
        re = -Lam.real
        if np.any(re <= 0):
            # LegT/LagT/FouT normal parts are purely imaginary (Re Λ = 0): nudge into the stable half-plane,
            # since Re Λ = -exp(θ) cannot represent 0.
            re = np.maximum(re, 1e-4)
        # measure and rank only shape the initial values (rank = P_re.shape[0]); they are not kept as static fields,
        # so layers that differ only in their init share compiled code.
        self.d_model, self.d_state = H, d_state
        self.n_ssm, self.l_max, self.disc, self.bidirectional, self.block = S, l_max, disc, bidirectional, block
        dtype = jnp.zeros(()).dtype

        def tile(x: np.ndarray) -> Array:  # (M,) -> (S, M)
            return jnp.broadcast_to(jnp.asarray(x, dtype), (S, M))

        self.log_dt = init_log_dt(k_dt, (H,), dt_min, dt_max)
        self.log_A_re = tile(np.log(re))
        self.A_im = tile(Lam.imag)
        self.P_re = jnp.broadcast_to(jnp.asarray(P.real, dtype)[:, None], (rank, S, M))
        self.P_im = jnp.broadcast_to(jnp.asarray(P.imag, dtype)[:, None], (rank, S, M))
        self.B_re = tile(B.real)
        self.B_im = tile(B.imag)
        d = 2 if bidirectional else 1
        self.D = jax.random.normal(k_d, (H,))
        # As official S4: draw the output matrix C and store C̃ = C (I - Ā^{l_max}) for the initial Δ.
        c_re, c_im = complex_normal(k_c, (d, H, M))
        Ct = _ctilde(
            jnp.exp(self.log_dt),
            jnp.broadcast_to(jnp.asarray(-re + 1j * Lam.imag), (H, M)),
            jnp.broadcast_to(jnp.asarray(P)[:, None], (rank, H, M)),
            jnp.broadcast_to(jnp.asarray(B), (H, M)),
            c_re + 1j * c_im,
            l_max,
        )
        self.C_re, self.C_im = Ct.real.astype(dtype), Ct.imag.astype(dtype)

    def _params(self, rate: float) -> tuple[Array, Array, Array, Array, Array]:
        """``(Δ (H,), Λ (H, M), P (R, H, M), B (H, M), C̃ (d, H, M))``, copies broadcast to channels."""
        reps = self.d_model // self.n_ssm
        dt = rate * jnp.exp(self.log_dt)
        A = jnp.tile(-jnp.exp(self.log_A_re) + 1j * self.A_im, (reps, 1))
        P = jnp.tile(self.P_re + 1j * self.P_im, (1, reps, 1))
        B = jnp.tile(self.B_re + 1j * self.B_im, (reps, 1))
        return dt, A, P, B, self.C_re + 1j * self.C_im

    def _length(self, rate: float) -> int:
        if not isinstance(rate, (int, float, np.integer, np.floating)):
            raise TypeError(
                "S4 needs a Python number for `rate` (it sets the static kernel length round(l_max/rate)); "
                f"got {type(rate).__name__}. Mark rate static under jit."
            )
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}.")
        return max(1, int(round(self.l_max / rate)))

    def kernel(self, L: int, *, rate: float = 1.0) -> Float[Array, "H L"] | Float[Array, "2 H L"]:
        """Kernel ``(H, L)`` (``(2, H, L)`` when bidirectional): the first ``L`` taps of the length-``round(l_max/rate)``
        kernel defined by ``C̃``."""
        L0 = self._length(rate)
        if L > L0:
            raise ValueError(
                f"S4 was built with l_max={self.l_max}: C̃ defines kernels up to length round(l_max/rate)={L0}, "
                f"but L={L} was requested. Build the layer with l_max >= {int(np.ceil(L * rate))}."
            )
        dt, A, P, B, Ct = self._params(rate)
        k = kernels.dplr_kernel_from_ctilde(dt, A, P, B, Ct, L0, block=self.block)[..., :L]
        return k if self.bidirectional else k[0]

    def __call__(self, u: Float[Array, "L H"], *, rate: float = 1.0) -> Float[Array, "L H"]:
        return kernels.fft_conv(u, self.kernel(u.shape[0], rate=rate), self.D)

    # Recurrent mode -------------------------------------------------------------------------------------------

    def _check_causal(self) -> None:
        if self.bidirectional:
            raise ValueError("A bidirectional S4 sees future inputs, so it has no recurrent mode; use __call__.")

    def init_state(self, *, rate: float = 1.0) -> PyTree[Array]:
        """``{"x": zeros (H, M) complex, "C": C (H, M)}``: the zero state, and the output matrix
        ``C = C̃ (I - Ā^{L0})^{-1}`` for this ``rate`` (one dense ``O(H N^3 log L0)`` setup, so each step is ``O(N)``).
        Pass the same ``rate`` to ``step``/``prefill`` as here."""
        self._check_causal()
        dt, A, P, B, Ct = self._params(rate)
        C = _ctilde_inverse(dt, A, P, B, Ct, self._length(rate))[0]
        return {"x": jnp.zeros_like(C), "C": C}

    def step(
        self, u_t: Float[Array, " H"], state: PyTree[Array], *, rate: float = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        """One bilinear step in O(N) by Woodbury (ssm-math.md §9): with ``D_Δ = 1/(2/Δ - Λ)``, ``E_Δ = 2/Δ + Λ``,
        ``x' = E_Δ x - P (P^* x) + 2 B u`` and ``x_new = D_Δ x' - D_Δ P (I + P^* D_Δ P)^{-1} P^* D_Δ x'``, where the inner
        products ``P^* (.)`` run over the full conjugate-symmetric state (``2 Re Σ_m conj(P_m) (.)_m``)."""
        self._check_causal()
        dt, A, P, B, _ = self._params(rate)
        x, C = state["x"], state["C"]
        s = (2 / dt)[:, None]
        Dd = 1 / (s - A)  # (H, M)
        Pc = jnp.conj(P)

        def inner(v: Array, w: Array) -> Array:  # 2 Re Σ_m v_m w_m, over the full state
            return 2 * jnp.sum(v * w, axis=-1).real

        xp = (s + A) * x - jnp.einsum("rhm,rh->hm", P, inner(Pc, x[None])) + 2 * B * u_t[:, None]
        G = jnp.eye(P.shape[0]) + 2 * jnp.einsum("rhm,qhm->hrq", Pc, Dd * P).real  # (H, R, R)
        w = _small_solve(G, inner(Pc, (Dd * xp)[None]).T)  # (H, R)
        x_new = Dd * (xp - jnp.einsum("rhm,hr->hm", P, w))
        y = 2 * jnp.sum(C * x_new, axis=-1).real + self.D * u_t
        return y.astype(u_t.dtype), {"x": x_new, "C": C}

    def prefill(
        self, u: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: float = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        """Outputs and final state over a prefix, chunk-parallel on the dense ``N x N`` ``Ā`` (:func:`dense_prefill`)."""
        self._check_causal()
        state = self.init_state(rate=rate) if state is None else state
        dt, A, P, B, _ = self._params(rate)
        Ab, Bb = kernels.dplr_dense(dt, A, P, B)
        M = A.shape[-1]
        full = lambda v: jnp.concatenate([v, jnp.conj(v)], axis=-1)  # noqa: E731
        y, xL = kernels.dense_prefill(Ab, Bb, full(state["C"]), u, full(state["x"]))
        return y + self.D * u, {"x": xL[:, :M], "C": state["C"]}
