"""S4: the diagonal-plus-low-rank structured state space layer (Gu, Goel, Ré 2022, "Efficiently Modeling Long Sequences
with Structured State Spaces"), in its NPLR/DPLR form with HiPPO initialization.

Per channel (M = N/2 stored modes; full system ``Λ_f = [Λ, conj Λ]``, ``P_f = [P, conj P]``)::

    A = diag(Λ_f) - P_f^T conj(P_f),    Ā = (I - Δ/2 A)^{-1}(I + Δ/2 A),  B̄ = (I - Δ/2 A)^{-1} Δ B   (bilinear)
    y = K * u + D u,   K_k = Re(C_f Ā^k B̄)

Parameterization (as official S4): the stored output parameter is ``C̃ = C (I - Ā^{l_max})`` for the static length
``l_max``, so the kernel is Cauchy + Woodbury at the ``l_max``-th roots of unity (``ssm.kernels.dplr_kernel_from_ctilde``)
with no matrix power on the training path. The true output matrix ``C = C̃ (I - Ā^{L0})^{-1}`` (``L0 = ceil(l_max/rate)``)
is needed only by the recurrent mode; it is computed once in :meth:`S4.init_state` and carried in the state.

Longer sequences (length extension): for ``L > L0`` the call doubles ``C̃`` as the official code does
(``C̃ ← C̃ (I + Ā^{l})``, ``l ← 2l``, :func:`ssm.kernels.ctilde_double`) until ``ceil(l/rate) >= L``. The output matrix
C is unchanged by a doubling, so the longer kernel continues the shorter one exactly: the layer is one SSM at every
length. The module is immutable, so nothing is stored: the doubled ``C̃`` is computed inside that call (dense
``O(H N^3 log L)``, differentiable). Training at a fixed long length should build the layer with ``l_max`` = that
length (``ssm.model`` passes the dataset's length) so that no call pays for the doubling.

Recurrent set-up in float64: ``Ā^{L0}`` by repeated squaring multiplies a rounding error of ``Ā`` by up to ``L0``
(HiPPO LegT/LagT/FouT modes barely decay), and ``I - Ā^{L0}`` can be ill-conditioned, so ``init_state`` computes C and
the step's coefficients in numpy float64 on the host (a ``jax.pure_callback``; derivatives, if taken, come from the
same formulas in the parameters' dtype) and rounds them to the parameters' dtype once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ssm import hippo, kernels
from ssm.layers.base import AbstractConvSSMLayer
from ssm.layers.initializers import complex_normal, init_log_dt, resolve_dtype

# The dense setup (matrix powers) runs eagerly at construction: compile it as one program.

DEFAULT_L_MAX = 1024
# How the kernel's Cauchy sums are evaluated: per frequency (accurate in float32) or as FFTs of Vandermonde sequences
# (about the Cauchy form's cost on CPU; float32 forward error 2-7x the Cauchy form's; ssm.kernels.dplr_kernel_vandermonde).
KERNEL_FORMS = ("cauchy", "vandermonde")


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _float64_on_host(fn: Callable[..., Any], L: int, *args: Array) -> Any:
    """``fn(*args, L, xp=numpy)`` evaluated in float64/complex128 by numpy on the host, rounded to the dtypes that
    ``fn(*args, L, xp=jax.numpy)`` gives; works under jit and vmap (one host call per vmapped element)."""
    shapes = jax.eval_shape(lambda *a: fn(*a, L, xp=jnp), *args)

    def host(*a: Any) -> Any:
        a64 = [np.asarray(x, np.complex128 if np.iscomplexobj(x) else np.float64) for x in a]
        out = fn(*a64, L, xp=np)
        return jax.tree.map(lambda o, sd: np.asarray(o).astype(sd.dtype), out, shapes)

    return jax.pure_callback(host, shapes, *args, vmap_method="sequential")


@_float64_on_host.defjvp
def _float64_on_host_jvp(fn, L, primals, tangents):  # derivatives from the same formulas in the arrays' dtype
    return _float64_on_host(fn, L, *primals), jax.jvp(lambda *a: fn(*a, L, xp=jnp), primals, tangents)[1]


class S4(AbstractConvSSMLayer):
    """DPLR SSM layer: ``ssm.S4(d_model=H, d_state=N, key=key, **options)``.

    Options: ``measure`` in ``("legs", "legt", "lagt", "fout")`` (default ``"legs"``); ``rank`` of the low-rank term
    (default: the measure's minimum, 1, or 2 for LegT; extra rows start at 0); ``n_ssm`` copies of (Λ, P, B), channel
    ``h`` uses copy ``h % n_ssm`` (default 1: shared by all channels; ``n_ssm = H`` gives one per channel);
    ``l_max`` (default 1024): the length ``C̃`` is set up for; a longer input is accepted (``C̃`` doubled inside the call,
    module docstring), so ``l_max`` only decides the parameterization and the cost: the kernel is computed at
    ``ceil(l_max/rate)`` points however short the input; ``disc``: only ``"bilinear"`` (ZOH of a DPLR matrix has no
    Cauchy form; use S4D for ZOH); ``bidirectional``; ``dt_min``/``dt_max``; ``b_clip`` (2.0, official: Im B̃ clipped
    at init; ``None`` for the exact NPLR B); ``block``: frequencies per block of the Cauchy form (memory
    ``O(H M block)``; default ``None``: chosen from ``H·M``, :func:`ssm.kernels.dplr_kernel_from_ctilde`);
    ``kernel_form``: ``"cauchy"`` (default: Cauchy + Woodbury frequency by frequency,
    :func:`ssm.kernels.dplr_kernel_from_ctilde`) or ``"vandermonde"`` (the same kernel from real FFTs of Vandermonde
    sequences, :func:`ssm.kernels.dplr_kernel_vandermonde`: since the Cauchy form's hand-written gradient the layer
    costs about the same on CPU (docs/benchmarks.md), float32 layer error 2-7x the Cauchy form's, e.g. 2.5e-6
    (LegS) to 2.5e-5 (FouT) instead of 7e-7 to 8e-6 against the float64 layer at H 4, N 64, L 1024); ``dtype`` of the parameters (default: JAX's default float).

    Parameters: ``log_dt (H,)``; ``log_A_re, A_im (n_ssm, M)`` (``Λ = -exp(log_A_re) + i A_im``); ``P_re, P_im
    (R, n_ssm, M)``; ``B_re, B_im (n_ssm, M)``; ``C_re, C_im (d, H, M)`` = ``C̃`` (``d = 2`` if bidirectional);
    ``D (H,)``. SSM parameters: ``log_dt, log_A_re, A_im, P_re, P_im, B_re, B_im``.

    ``rate`` must be a Python number here (it sets the static kernel length ``ceil(l_max/rate)``).
    """

    ssm_param_names: ClassVar[tuple[str, ...]] = ("log_dt", "log_A_re", "A_im", "P_re", "P_im", "B_re", "B_im")
    dt_param_names: ClassVar[tuple[str, ...]] = ("log_dt",)

    d_model: int = eqx.field(static=True)
    d_state: int = eqx.field(static=True)
    n_ssm: int = eqx.field(static=True)
    l_max: int = eqx.field(static=True)
    disc: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    block: int | None = eqx.field(static=True)
    kernel_form: str = eqx.field(static=True)
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
        l_max: int = DEFAULT_L_MAX,
        disc: str = "bilinear",
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        b_clip: float | None = 2.0,
        block: int | None = None,
        kernel_form: str = "cauchy",
        dtype: Any = None,
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
        if kernel_form not in KERNEL_FORMS:
            raise ValueError(f"kernel_form must be one of {KERNEL_FORMS}, got {kernel_form!r}.")
        if block is not None and (not isinstance(block, int) or block < 1):
            raise ValueError(f"S4: block must be a positive number of frequencies or None (chosen from H·M), got {block!r}.")
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
        self.kernel_form = kernel_form
        dtype = resolve_dtype(dtype)

        def tile(x: np.ndarray) -> Array:  # (M,) -> (S, M)
            return jnp.broadcast_to(jnp.asarray(x, dtype), (S, M))

        log_dt = init_log_dt(k_dt, (H,), dt_min, dt_max)
        self.log_dt = log_dt.astype(dtype)
        self.log_A_re = tile(np.log(re))
        self.A_im = tile(Lam.imag)
        self.P_re = jnp.broadcast_to(jnp.asarray(P.real, dtype)[:, None], (rank, S, M))
        self.P_im = jnp.broadcast_to(jnp.asarray(P.imag, dtype)[:, None], (rank, S, M))
        self.B_re = tile(B.real)
        self.B_im = tile(B.imag)
        d = 2 if bidirectional else 1
        self.D = jax.random.normal(k_d, (H,)).astype(dtype)
        # As official S4: draw the output matrix C and store C̃ = C (I - Ā^{l_max}) for the initial Δ. Set up on the
        # host in float64 (as the recurrence): XLA's batched complex LU solve on CPU was seen to hang when two
        # processes built S4 layers at once.
        c_re, c_im = complex_normal(k_c, (d, H, M))
        Ct = _float64_on_host(
            kernels.ctilde,
            l_max,
            jnp.exp(log_dt),
            jnp.broadcast_to(jnp.asarray(-re + 1j * Lam.imag), (H, M)),
            jnp.broadcast_to(jnp.asarray(P)[:, None], (rank, H, M)),
            jnp.broadcast_to(jnp.asarray(B), (H, M)),
            c_re + 1j * c_im,
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
                "S4 needs a Python number for `rate` (it sets the static kernel length ceil(l_max/rate)); "
                f"got {type(rate).__name__}. Mark rate static under jit."
            )
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}.")
        # ceil, not round: an l_max-sample signal subsampled by `rate` (x[::rate]) has ceil(l_max/rate) samples.
        return max(1, math.ceil(self.l_max / rate))

    def _doublings(self, L: int, rate: float) -> int:
        """The number of times ``C̃`` must be doubled so that its kernel length ``ceil(2^k l_max/rate)`` covers ``L``."""
        k = 0
        while math.ceil((self.l_max << k) / rate) < L:
            k += 1
        return k

    def kernel(self, L: int, *, rate: float = 1.0) -> Float[Array, "H L"] | Float[Array, "2 H L"]:
        """Kernel ``(H, L)`` (``(2, H, L)`` when bidirectional): the first ``L`` taps of the length-``ceil(l/rate)``
        kernel defined by ``C̃``, with ``l = l_max``, or ``l = 2^k l_max`` and ``C̃`` doubled ``k`` times if ``L`` is
        longer (module docstring)."""
        L0 = self._length(rate)
        dt, A, P, B, Ct = self._params(rate)
        k = self._doublings(L, rate)
        if k:
            # Doubling is a statement about the rate-1 system (C̃ = C(I - Ā^{l_max}) at Δ), as in the official code.
            Ct = kernels.ctilde_double(jnp.exp(self.log_dt), A, P, B, Ct, self.l_max, k)
            L0 = math.ceil((self.l_max << k) / rate)
        if self.kernel_form == "vandermonde":
            K = kernels.dplr_kernel_vandermonde(dt, A, P, B, Ct, L0)[..., :L]
        else:
            K = kernels.dplr_kernel_from_ctilde(dt, A, P, B, Ct, L0, block=self.block)[..., :L]
        return K if self.bidirectional else K[0]

    # Recurrent mode -------------------------------------------------------------------------------------------

    def init_state(self, *, rate: float = 1.0) -> PyTree[Array]:
        """The zero state ``"x"`` (H, M) complex, and the constants of the step at this ``rate``: the output matrix
        ``"C" = C̃ (I - Ā^{L0})^{-1}`` (``L0 = ceil(l_max/rate)``) and the Woodbury coefficients of
        :func:`ssm.kernels.dplr_recurrence`, computed once in float64 on the host (one dense ``O(H N^3 log L0)``
        set-up; each step is then ``O(N)``). Pass the same ``rate`` to ``step``/``prefill`` as here.

        At ``rate = 1`` the recurrence equals the convolution at every length (doubling keeps C); at another rate it
        equals the convolution of inputs up to ``ceil(l_max/rate)`` long (the kernel of a longer input at a changed
        rate reads the doubled ``C̃`` at a rounded length, an approximation of its own)."""
        self._check_recurrent()
        dt, A, P, B, Ct = self._params(rate)
        consts = _float64_on_host(kernels.dplr_recurrence, self._length(rate), dt, A, P, B, Ct[0])
        return {"x": jnp.zeros_like(consts["C"]), **consts}

    def step(
        self, u_t: Float[Array, " H"], state: PyTree[Array], *, rate: float = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        """One bilinear step in O(N R) by Woodbury in increment form (:func:`ssm.kernels.dplr_recurrence`):
        ``v = 2ΛD_Δ x - D_Δ P (P^* x) + 2 D_Δ B u``, ``x_new = x + v - D_Δ P G^{-1} (P^* x + P^* v)``, where the inner
        products ``P^* (.)`` run over the full conjugate-symmetric state (``2 Re Σ_m conj(P_m) (.)_m``). The
        coefficients come from ``init_state(rate=rate)``."""
        self._check_recurrent()
        _, _, P, _, _ = self._params(rate)
        x = state["x"]
        Pc = jnp.conj(P)

        def inner(w: Array) -> Array:  # P^* w = 2 Re Σ_m conj(P_m) w_m over the full state: (R, H)
            return 2 * jnp.sum(Pc * w[None], axis=-1).real

        # The rank-R contractions are written as broadcast sums, not einsum: a float32 dot_general may run in TF32 on
        # GPUs (jax's default matmul precision), which would undo the float64 set-up.
        DP = state["DP"]
        Px = inner(x)
        v = state["a"] * x - jnp.sum(DP * Px[:, :, None], axis=0) + state["DB"] * u_t[:, None]
        w = jnp.sum(state["Ginv"] * (Px + inner(v)).T[:, None, :], axis=-1)  # (H, R) = G^{-1} P^*(x + v)
        x_new = x + (v - jnp.sum(DP * w.T[:, :, None], axis=0))
        y = 2 * jnp.sum(state["C"] * x_new, axis=-1).real + self.D * u_t
        return y.astype(u_t.dtype), {**state, "x": x_new}

    def prefill(
        self, u: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: float = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        """Outputs and final state over a prefix, chunk-parallel on the dense ``N x N`` ``Ā`` (:func:`dense_prefill`)."""
        self._check_recurrent()
        state = self.init_state(rate=rate) if state is None else state
        dt, A, P, B, _ = self._params(rate)
        Ab, Bb = _float64_on_host(_dense, 0, dt, A, P, B)
        M = A.shape[-1]
        full = lambda v: jnp.concatenate([v, jnp.conj(v)], axis=-1)  # noqa: E731
        y, xL = kernels.dense_prefill(Ab, Bb, full(state["C"]), u, full(state["x"]))
        return (y + self.D * u).astype(u.dtype), {**state, "x": xL[:, :M]}


def _dense(dt, A, P, B, _L, xp):  # kernels.dplr_dense in the calling convention of _float64_on_host
    return kernels.dplr_dense(dt, A, P, B, xp)
