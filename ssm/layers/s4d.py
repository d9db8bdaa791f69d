"""S4D: the diagonal state space layer (Gu, Gupta, Goel, Ré 2022, "On the Parameterization and Initialization of
Diagonal State Space Models"), with S4-PTD's perturb-then-diagonalize initialization (Yu et al. 2024) as an option.

Per channel ``h`` (H channels, M = N/2 stored modes, conjugate partners implicit)::

    x_k = Ā x_{k-1} + B̄ u_k,     y_k = 2 Re(C x_k) + D u_k,     K_l = 2 Re Σ_m C_m Ā_m^l B̄_m

with ZOH ``Ā = e^{ΔΛ}, B̄ = (e^{ΔΛ} - 1)/Λ · B`` (default) or bilinear. ``Re Λ = -exp(log_A_re) < 0`` keeps every
mode stable; ``Δ = rate · exp(log_dt)``.
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
from ssm.layers.initializers import complex_normal, init_log_dt, resolve_dtype

S4D_INITS = ("legs", "lin", "inv", "real", "rand", "legs-ptd")


def s4d_lambda_b(init: str, N: int, key: PRNGKeyArray) -> tuple[np.ndarray, np.ndarray]:
    """S4D initial ``(Λ (N/2,), B (N/2,))``, ``Im Λ <= 0`` (state-spaces/s4
    src/models/sequence/kernels/dplr.py). ``legs-ptd`` calls
    :func:`ssm.ptd.legs_ptd`."""
    M = N // 2
    n = np.arange(M)
    B = np.ones(M, dtype=np.complex128)
    if init == "legs":
        Lam, _, B, _ = hippo.nplr("legs", N)
    elif init == "lin":
        Lam = -0.5 - 1j * np.pi * n
    elif init == "inv":
        Lam = -0.5 - 1j * (N / np.pi) * (N / (2 * n + 1) - 1)
    elif init == "real":
        Lam = -(n + 1.0) + 0j
    elif init == "rand":
        Lam = -0.5 - 1j * np.exp(np.asarray(jax.random.normal(key, (M,)), dtype=np.float64))
    elif init == "legs-ptd":
        try:
            from ssm.ptd import legs_ptd
        except ImportError as e:  # the PTD module is a separate piece of the library
            raise ImportError("init='legs-ptd' needs ssm.ptd.legs_ptd, which is not available.") from e
        Lam, B = legs_ptd(N)
    else:
        raise ValueError(f"Unknown S4D init {init!r}; choose one of {S4D_INITS}.")
    return np.asarray(Lam, dtype=np.complex128), np.asarray(B, dtype=np.complex128)


class S4D(AbstractConvSSMLayer):
    """Diagonal SSM layer: ``ssm.S4D(d_model=H, d_state=N, key=key, **options)``.

    Options: ``init`` in ``("legs", "lin", "inv", "real", "rand", "legs-ptd")`` (default ``"legs"``: S4D-LegS, Λ the
    eigenvalues of the LegS normal part and B from the NPLR decomposition), ``disc`` (``"zoh"`` default or
    ``"bilinear"``), ``bidirectional``, ``dt_min``/``dt_max`` (log-uniform Δ init, defaults 1e-3/1e-1), ``dtype`` of the parameters
    (default: JAX's default float).

    Parameters: ``log_dt (H,)``, ``log_A_re, A_im (H, M)`` (``Λ = -exp(log_A_re) + i A_im``), ``B_re, B_im (H, M)``,
    ``C_re, C_im (d, H, M)`` (``d = 2`` if bidirectional: forward and backward output matrices sharing Λ, B, Δ),
    ``D (H,)``. SSM parameters (own lr, no weight decay): ``log_dt, log_A_re, A_im, B_re, B_im``.
    """

    ssm_param_names: ClassVar[tuple[str, ...]] = ("log_dt", "log_A_re", "A_im", "B_re", "B_im")
    dt_param_names: ClassVar[tuple[str, ...]] = ("log_dt",)

    d_model: int = eqx.field(static=True)
    d_state: int = eqx.field(static=True)
    disc: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    log_dt: Float[Array, " H"]
    log_A_re: Float[Array, "H M"]
    A_im: Float[Array, "H M"]
    B_re: Float[Array, "H M"]
    B_im: Float[Array, "H M"]
    C_re: Float[Array, "d H M"]
    C_im: Float[Array, "d H M"]
    D: Float[Array, " H"]

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        key: PRNGKeyArray,
        init: str = "legs",
        disc: str = "zoh",
        bidirectional: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dtype: Any = None,
    ):
        if d_state < 2 or d_state % 2:
            raise ValueError(f"S4D stores d_state/2 conjugate pairs: d_state must be even and >= 2, got {d_state}.")
        if disc not in ("zoh", "bilinear"):
            raise ValueError(f"S4D disc must be 'zoh' or 'bilinear', got {disc!r}.")
        if init not in S4D_INITS:
            raise ValueError(f"Unknown S4D init {init!r}; choose one of {S4D_INITS}.")
        k_dt, k_lam, k_c, k_d = jax.random.split(key, 4)
        H, M = d_model, d_state // 2
        Lam, B = s4d_lambda_b(init, d_state, k_lam)
        if Lam.shape != (M,) or B.shape != (M,):
            raise ValueError(f"init {init!r} returned Λ {Lam.shape}, B {B.shape}; expected ({M},).")
        if np.any(Lam.real >= 0):
            raise ValueError(f"init {init!r} gave Re Λ >= 0; S4D needs stable modes.")
        # init only sets initial values; it is not a static field, so layers differing only in init share compiled code.
        self.d_model, self.d_state, self.disc = H, d_state, disc
        self.bidirectional = bidirectional
        dtype = resolve_dtype(dtype)
        self.log_dt = init_log_dt(k_dt, (H,), dt_min, dt_max).astype(dtype)
        self.log_A_re = jnp.broadcast_to(jnp.asarray(np.log(-Lam.real), dtype), (H, M))
        self.A_im = jnp.broadcast_to(jnp.asarray(Lam.imag, dtype), (H, M))
        self.B_re = jnp.broadcast_to(jnp.asarray(B.real, dtype), (H, M))
        self.B_im = jnp.broadcast_to(jnp.asarray(B.imag, dtype), (H, M))
        c_re, c_im = complex_normal(k_c, (2 if bidirectional else 1, H, M))
        self.C_re, self.C_im = c_re.astype(dtype), c_im.astype(dtype)
        self.D = jax.random.normal(k_d, (H,)).astype(dtype)

    def _params(self, rate: float | Float[Array, ""]) -> tuple[Array, Array, Array, Array]:
        dt = rate * jnp.exp(self.log_dt)
        A = -jnp.exp(self.log_A_re) + 1j * self.A_im
        B = self.B_re + 1j * self.B_im
        C = self.C_re + 1j * self.C_im
        return dt, A, B, C

    def kernel(self, L: int, *, rate: float | Float[Array, ""] = 1.0) -> Float[Array, "H L"] | Float[Array, "2 H L"]:
        """Convolution kernel ``(H, L)``, or ``(2, H, L)`` (forward, backward) when bidirectional."""
        dt, A, B, C = self._params(rate)
        k = kernels.diagonal_kernel(dt, A, B, C, L, self.disc)  # both directions share one Vandermonde pass
        return k if self.bidirectional else k[0]

    def init_state(self, *, rate: float | Float[Array, ""] = 1.0) -> Complex[Array, "H M"]:
        """Zero state: the ``M`` stored complex modes per channel (``rate`` changes nothing here)."""
        self._check_recurrent()
        return jnp.zeros((self.d_model, self.d_state // 2), jnp.result_type(self.A_im.dtype, jnp.complex64))

    def _discrete(self, rate: float | Float[Array, ""]) -> tuple[Array, Array, Array]:
        dt, A, B, C = self._params(rate)
        Ab, Bb = kernels.discretize(dt[:, None], A, B, self.disc)
        log_z = dt[:, None] * A if self.disc == "zoh" else jnp.log(Ab)
        return log_z, Bb, C[0]

    def step(
        self, u_t: Float[Array, " H"], state: Complex[Array, "H M"], *, rate: float | Float[Array, ""] = 1.0
    ) -> tuple[Float[Array, " H"], Complex[Array, "H M"]]:
        self._check_recurrent()
        log_z, Bb, C = self._discrete(rate)
        x = jnp.exp(log_z) * state + Bb * u_t[:, None]
        y = 2 * jnp.sum(C * x, axis=-1).real + self.D * u_t
        return y.astype(u_t.dtype), x

    def prefill(
        self, u: Float[Array, "L H"], state: Complex[Array, "H M"] | None = None, *, rate: float | Float[Array, ""] = 1.0
    ) -> tuple[Float[Array, "L H"], Complex[Array, "H M"]]:
        self._check_recurrent()
        x0 = self.init_state() if state is None else state
        log_z, Bb, C = self._discrete(rate)
        y, xL = kernels.diagonal_prefill(log_z, Bb, C, u, x0, scale=2.0)
        return y + self.D * u, xL
