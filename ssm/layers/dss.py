"""DSS: diagonal state spaces (Gupta, Gu, Berant 2022, "Diagonal State Spaces are as Effective as Structured State
Spaces"), in DSS's own convention: N complex modes, no conjugate halving, kernel ``Re Σ`` with factor 1, no B
(``W = C∘B`` is the one output weight), Λ shared by all channels.

With ``ΔΛ := Δ_re Re Λ + i Δ_im Im Λ`` (separate Δ for the real and imaginary parts, DSS's default)::

    exp:      K_l = Re Σ_n W_n (e^{ΔΛ_n} - 1)/Λ_n · e^{lΔΛ_n}                      (Re Λ = -exp(Lambda_re) < 0)
    softmax:  K_l = Re Σ_n W_n/Λ_n · softmax_l(lΔΛ_n)
                  = Re Σ_n W_n (e^{ΔΛ_n} - 1)/(Λ_n (e^{LΔΛ_n} - 1)) · e^{lΔΛ_n}     (Λ unconstrained)

DSS computes ``1/Λ`` as ``conj(Λ)/(|Λ|² + ε)``; here it is the exact reciprocal (Λ = 0 is a measure-zero event).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from ssm import hippo, kernels
from ssm.layers.base import AbstractConvSSMLayer
from ssm.layers.initializers import init_log_dt, resolve_dtype

DSS_KERNELS = ("exp", "softmax")


class DSS(AbstractConvSSMLayer):
    """Diagonal state space layer: ``ssm.DSS(d_model=H, d_state=N, key=key, **options)``.

    Options: ``kernel_type`` ``"softmax"`` (default, as DSS) or ``"exp"``; ``sep_dt_re_im`` (default True: Δ of shape
    ``(H, 2)``, one for Re Λ and one for Im Λ; False: ``(H, 1)``); ``bidirectional``; ``dt_min``/``dt_max``; ``dtype`` of the parameters.
    Λ init ("hippo_skew_pos_imag"): the N eigenvalues with positive imaginary part of the size-2N LegS normal part,
    ``Re Λ = -1/2``. W: real and imaginary parts standard normal.

    Parameters: ``log_dt (H, 1|2)``, ``Lambda_re, Lambda_im (N,)`` (``Re Λ = -exp(Lambda_re)`` for exp, ``= Lambda_re``
    for softmax; ``Im Λ = Lambda_im``), ``W_re, W_im (d, H, N)`` (``d = 2`` if bidirectional), ``D (H,)``. SSM parameters
    (DSS trains all three at lr 1e-3 without weight decay): ``log_dt, Lambda_re, Lambda_im, W_re, W_im``.

    Recurrent mode: exp only. The softmax kernel is normalized over the window: its coefficients contain
    ``1/(e^{LΔΛ} - 1)``, so the kernel at lag l depends on the sequence length L and no single L-independent
    recurrence produces it for every prefix; ``step``/``prefill``/``init_state`` raise for ``kernel_type="softmax"``.
    """

    ssm_param_names: ClassVar[tuple[str, ...]] = ("log_dt", "Lambda_re", "Lambda_im", "W_re", "W_im")
    dt_param_names: ClassVar[tuple[str, ...]] = ("log_dt",)

    d_model: int = eqx.field(static=True)
    d_state: int = eqx.field(static=True)
    kernel_type: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    log_dt: Float[Array, "H T"]
    Lambda_re: Float[Array, " N"]
    Lambda_im: Float[Array, " N"]
    W_re: Float[Array, "d H N"]
    W_im: Float[Array, "d H N"]
    D: Float[Array, " H"]

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        key: PRNGKeyArray,
        kernel_type: str = "softmax",
        sep_dt_re_im: bool = True,
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dtype: Any = None,
    ):
        if kernel_type not in DSS_KERNELS:
            raise ValueError(f"Unknown DSS kernel_type {kernel_type!r}; choose one of {DSS_KERNELS}.")
        if d_state < 1:
            raise ValueError(f"d_state must be >= 1, got {d_state}.")
        k_dt, k_w, k_d = jax.random.split(key, 3)
        H, N = d_model, d_state
        Lam = np.conj(hippo.nplr("legs", 2 * N)[0])  # Im > 0 in decreasing order, as DSS sorts them
        dtype = resolve_dtype(dtype)
        self.d_model, self.d_state, self.kernel_type, self.bidirectional = H, N, kernel_type, bidirectional
        self.log_dt = init_log_dt(k_dt, (H, 2 if sep_dt_re_im else 1), dt_min, dt_max).astype(dtype)
        re = np.log(-Lam.real) if kernel_type == "exp" else Lam.real
        self.Lambda_re = jnp.asarray(re, dtype)
        self.Lambda_im = jnp.asarray(Lam.imag, dtype)
        W = jax.random.normal(k_w, (2, 2 if bidirectional else 1, H, N)).astype(dtype)
        self.W_re, self.W_im = W[0], W[1]
        self.D = jax.random.normal(k_d, (H,)).astype(dtype)

    def _params(self, rate: float | Float[Array, ""]) -> tuple[Array, Array, Array]:
        """``(ΔΛ (H, N), Λ (N,), W (d, H, N))``."""
        dt = rate * jnp.exp(self.log_dt)  # (H, 1|2); the last column is Δ_im
        re = -jnp.exp(self.Lambda_re) if self.kernel_type == "exp" else self.Lambda_re
        Lam = re + 1j * self.Lambda_im
        dtLam = dt[:, :1] * re + 1j * dt[:, -1:] * self.Lambda_im
        return dtLam, Lam, self.W_re + 1j * self.W_im

    def kernel(self, L: int, *, rate: float | Float[Array, ""] = 1.0) -> Float[Array, "H L"] | Float[Array, "2 H L"]:
        """Kernel ``(H, L)`` (``(2, H, L)`` when bidirectional)."""
        dtLam, Lam, W = self._params(rate)
        H = self.d_model
        # diagonal_kernel(Δ=1, A=ΔΛ, B=ΔΛ/Λ, C=W) reproduces DSS's W(e^{ΔΛ} - 1)/Λ factor exactly.
        ones = jnp.ones((H,), dtLam.real.dtype)
        Bk = dtLam / Lam
        disc = "dss_exp" if self.kernel_type == "exp" else "dss_softmax"
        k = kernels.diagonal_kernel(ones, dtLam, Bk, W, L, disc)  # both directions share one Vandermonde pass
        return k if self.bidirectional else k[0]

    def _check_exp_kernel(self) -> None:
        self._check_recurrent()
        if self.kernel_type == "softmax":
            raise ValueError(
                "DSS-softmax has no recurrent mode: its kernel W/Λ·softmax_l(lΔΛ) is normalized over the whole window "
                "L (coefficients contain 1/(e^{LΔΛ} - 1)), so it changes with L and no fixed recurrence reproduces it "
                "for every prefix. Use DSS(kernel_type='exp') for generation."
            )

    def init_state(self, *, rate: float | Float[Array, ""] = 1.0) -> Complex[Array, "H N"]:
        """Zero state ``(H, N)`` complex (exp kernel only; ``rate`` changes nothing here)."""
        self._check_exp_kernel()
        return jnp.zeros((self.d_model, self.d_state), jnp.result_type(self.Lambda_im.dtype, jnp.complex64))

    def step(
        self, u_t: Float[Array, " H"], state: Complex[Array, "H N"], *, rate: float | Float[Array, ""] = 1.0
    ) -> tuple[Float[Array, " H"], Complex[Array, "H N"]]:
        """``x ← e^{ΔΛ} x + (e^{ΔΛ} - 1)/Λ · u``, ``y = Re Σ_n W_n x_n + D u`` (exp kernel only)."""
        self._check_exp_kernel()
        dtLam, Lam, W = self._params(rate)
        Ab = jnp.exp(dtLam)
        x = Ab * state + (Ab - 1) / Lam * u_t[:, None]
        y = jnp.sum(W[0] * x, axis=-1).real + self.D * u_t
        return y.astype(u_t.dtype), x

    def prefill(
        self, u: Float[Array, "L H"], state: Complex[Array, "H N"] | None = None, *, rate: float | Float[Array, ""] = 1.0
    ) -> tuple[Float[Array, "L H"], Complex[Array, "H N"]]:
        self._check_exp_kernel()
        x0 = self.init_state() if state is None else state
        dtLam, Lam, W = self._params(rate)
        Bb = (jnp.exp(dtLam) - 1) / Lam
        y, xL = kernels.diagonal_prefill(dtLam, Bb, W[0], u, x0, scale=1.0)
        return y + self.D * u, xL
