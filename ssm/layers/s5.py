"""S5: the simplified state space layer (Smith, Warrington, Linderman 2023, "Simplified State Space Layers for
Sequence Modeling"), with S5-PTD's perturb-then-diagonalize initialization (Yu et al. 2024) as an option.

One MIMO diagonal SSM per layer: P states shared by all H channels, one Δ per state::

    x_k = Λ̄ ∘ x_{k-1} + B̄ u_k,      y_k = 2 Re(C̃ x_k) + D ∘ u_k      (B̄ ∈ C^{P×H}, C̃ ∈ C^{H×P})

computed over the whole sequence with ``jax.lax.associative_scan`` and the operator
``(a_i, b_i) • (a_j, b_j) = (a_j a_i, a_j b_i + b_j)``. With conjugate symmetry (default) only the P/2 modes with
``Im Λ <= 0`` are stored and the output is ``2 Re``; without it all P modes are stored and the output is ``Re``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from ssm import hippo, kernels, ptd
from ssm.kernels import linear_recurrence
from ssm.layers.base import AbstractSSMLayer
from ssm.layers.initializers import complex_normal, init_log_dt, resolve_dtype

S5_INITS = ("hippo", "legs-ptd")
S5_C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")


def s5_eigenbasis(
    init: str, d_state: int, blocks: int, conj_sym: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-diagonal initial ``(Λ (M,), V (P, M), V^{-1} (M, P))`` of S5 (``init="hippo"``: HiPPO-N, the LegS normal
    part of block size ``P/blocks``, V unitary) or S5-PTD (``init="legs-ptd"``: :func:`ssm.ptd.legs_ptd_system` of that
    block size). ``M = P/2`` stored modes with conjugate symmetry, ``M = P`` without."""
    if blocks < 1 or d_state % blocks:
        raise ValueError(f"blocks must divide d_state: got d_state={d_state}, blocks={blocks}.")
    b = d_state // blocks
    if b % 2:
        raise ValueError(
            f"S5 block size d_state/blocks = {b} must be even (the LegS modes come in conjugate pairs); "
            "change d_state or blocks."
        )
    if init == "hippo":
        Lam, _, _, V = hippo.nplr("legs", b)
        Vinv = V.conj().T
    elif init == "legs-ptd":
        sys_ = ptd.legs_ptd_system(b)
        Lam, V, Vinv = sys_.Lambda, sys_.V, sys_.Vinv
    else:
        raise ValueError(f"Unknown S5 init {init!r}; choose one of {S5_INITS}.")
    if not conj_sym:
        Lam = np.concatenate([Lam, Lam.conj()])
        V = np.concatenate([V, V.conj()], axis=1)
        Vinv = np.concatenate([Vinv, Vinv.conj()], axis=0)
    return ptd.block_diagonal(Lam, V, Vinv, blocks)


def _lecun(key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
    # Truncated normal with variance 1/fan_in, JAX's fan rule (in_axis=-2, receptive field = leading axes).
    # jnp, not numpy: the constructor must be traceable (the trainer builds models under filter_eval_shape).
    return jax.nn.initializers.lecun_normal()(key, shape, jnp.zeros(()).dtype)


def _complex(x: np.ndarray) -> Complex[Array, "..."]:
    return jnp.asarray(x, jnp.result_type(jnp.zeros(()).dtype, jnp.complex64))


def s5_C(
    C_init: str, key: PRNGKeyArray, H: int, V: np.ndarray
) -> tuple[Float[Array, "H M"], Float[Array, "H M"]]:
    """Initial ``C̃ (H, M)`` as ``(re, im)`` for the output-matrix options of the S5 reference:

    - ``"trunc_standard_normal"`` (S5's default name, kept for reproducibility): despite the name, each row is a
      LeCun-normal draw of shape ``(1, P, 2)``, i.e. a truncated normal with variance ``1/P`` per real component of
      the complex ``C ∈ C^{H×P}``; then ``C̃ = C V``.
    - ``"lecun_normal"``: LeCun normal of shape ``(H, P, 2)`` (JAX fan rule: variance ``1/(P H)``), then ``C̃ = C V``.
    - ``"complex_normal"``: ``C̃`` drawn directly, standard complex normal (variance ½ per part), no ``V``.
    """
    P, M = V.shape
    if C_init == "trunc_standard_normal":
        C = jax.vmap(lambda k: _lecun(k, (1, P, 2))[0])(jax.random.split(key, H))
    elif C_init == "lecun_normal":
        C = _lecun(key, (H, P, 2))
    elif C_init == "complex_normal":
        return complex_normal(key, (H, M), parts_axis=-1)
    else:
        raise ValueError(f"Unknown S5 C_init {C_init!r}; choose one of {S5_C_INITS}.")
    Ct = (C[..., 0] + 1j * C[..., 1]) @ _complex(V)
    return Ct.real, Ct.imag


class S5(AbstractSSMLayer):
    """S5 layer: ``ssm.S5(d_model=H, d_state=P, key=key, **options)``.

    Options (defaults reproduce the S5 reference layer):

    - ``blocks`` (1): J blocks of the block-diagonal initialization (each of size P/J).
    - ``init``: ``"hippo"`` (default; HiPPO-N, the LegS normal part, S5) or ``"legs-ptd"`` (S5-PTD: the
      perturb-then-diagonalize LegS of :mod:`ssm.ptd`; its spectrum is conjugate-paired, so unlike the S5-PTD code
      conjugate symmetry stays available).
    - ``conj_sym`` (True): store P/2 modes and output ``2 Re``.
    - ``disc``: ``"zoh"`` (default) or ``"bilinear"``.
    - ``C_init``: ``"trunc_standard_normal"`` (default, S5's name for a LeCun-scaled draw, see :func:`s5_C`),
      ``"lecun_normal"``, ``"complex_normal"``.
    - ``bidirectional`` (False): a reverse scan over the same ``(Λ̄, B̄ u)`` gives ``x^b_k = Σ_{s≥k} Λ̄^{s-k} B̄ u_s``
      and ``y = 2 Re(C̃₁ x + C̃₂ x^b) + D u``: both directions include the current input (project convention).
    - ``clip_eigs`` (False): use ``Re Λ = min(Re Λ, -1e-4)`` in the forward pass (keeps every mode stable).
    - ``dt_min``, ``dt_max`` (1e-3, 1e-1): log-uniform init of the P-state (or P/2) ``Δ``; ``rate`` multiplies Δ
      (S5's ``step_rescale``).
    - ``dtype``: of the parameters (default: JAX's default float).

    Parameters: ``Lambda_re, Lambda_im (M,)``, ``B (M, H, 2)`` (``B̃ = V^{-1} B`` with ``B ∈ R^{P×H}`` LeCun normal,
    as real/imaginary pairs), ``C_re, C_im (d, H, M)`` (``d = 2`` if bidirectional), ``D (H,)`` ~ N(0, 1),
    ``log_step (M,)``. SSM parameters (own lr, no weight decay): ``Lambda_re, Lambda_im, B, log_step``.
    """

    ssm_param_names: ClassVar[tuple[str, ...]] = ("Lambda_re", "Lambda_im", "B", "log_step")
    dt_param_names: ClassVar[tuple[str, ...]] = ("log_step",)

    d_model: int = eqx.field(static=True)
    d_state: int = eqx.field(static=True)
    blocks: int = eqx.field(static=True)
    init: str = eqx.field(static=True)
    conj_sym: bool = eqx.field(static=True)
    disc: str = eqx.field(static=True)
    C_init: str = eqx.field(static=True)
    bidirectional: bool = eqx.field(static=True)
    clip_eigs: bool = eqx.field(static=True)
    Lambda_re: Float[Array, " M"]
    Lambda_im: Float[Array, " M"]
    B: Float[Array, "M H 2"]
    C_re: Float[Array, "d H M"]
    C_im: Float[Array, "d H M"]
    D: Float[Array, " H"]
    log_step: Float[Array, " M"]

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        key: PRNGKeyArray,
        blocks: int = 1,
        init: str = "hippo",
        conj_sym: bool = True,
        disc: str = "zoh",
        C_init: str = "trunc_standard_normal",
        bidirectional: bool = False,
        clip_eigs: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dtype: Any = None,
    ):
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}.")
        if disc not in ("zoh", "bilinear"):
            raise ValueError(f"S5 disc must be 'zoh' or 'bilinear', got {disc!r}.")
        if C_init not in S5_C_INITS:
            raise ValueError(f"Unknown S5 C_init {C_init!r}; choose one of {S5_C_INITS}.")
        Lam, V, Vinv = s5_eigenbasis(init, d_state, blocks, conj_sym)
        H, (P, M) = d_model, V.shape
        k_b, k_c, k_d, k_dt = jax.random.split(key, 4)
        self.d_model, self.d_state, self.blocks, self.init = H, d_state, blocks, init
        self.conj_sym, self.disc, self.C_init = conj_sym, disc, C_init
        self.bidirectional, self.clip_eigs = bidirectional, clip_eigs
        dtype = resolve_dtype(dtype)
        self.Lambda_re = jnp.asarray(Lam.real, dtype)
        self.Lambda_im = jnp.asarray(Lam.imag, dtype)
        Bt = _complex(Vinv) @ _lecun(k_b, (P, H))
        self.B = jnp.stack([Bt.real, Bt.imag], axis=-1).astype(dtype)
        Cs = [s5_C(C_init, k, H, V) for k in jax.random.split(k_c, 2 if bidirectional else 1)]
        self.C_re = jnp.stack([c[0] for c in Cs]).astype(dtype)
        self.C_im = jnp.stack([c[1] for c in Cs]).astype(dtype)
        self.D = jax.random.normal(k_d, (H,)).astype(dtype)
        self.log_step = init_log_dt(k_dt, (M,), dt_min, dt_max).astype(dtype)

    # -- discretization and readout -------------------------------------------------------------------------------

    def discrete(self, *, rate: float = 1.0) -> tuple[Complex[Array, " M"], Complex[Array, "M H"]]:
        """``(Λ̄ (M,), B̄ (M, H))`` for step ``Δ = rate · exp(log_step)``."""
        re = jnp.minimum(self.Lambda_re, -1e-4) if self.clip_eigs else self.Lambda_re
        Lam = re + 1j * self.Lambda_im
        dt = rate * jnp.exp(self.log_step)
        Lb, fac = kernels.discretize(dt, Lam, jnp.ones_like(Lam), self.disc)
        return Lb, fac[:, None] * (self.B[..., 0] + 1j * self.B[..., 1])

    def _input(self, u: Float[Array, "L H"], Bb: Complex[Array, "M H"]) -> Complex[Array, "L M"]:
        # One real matmul against [Re B̄; Im B̄] instead of a complex matmul with a real operand.
        M = Bb.shape[0]
        z = jnp.matmul(u, jnp.concatenate([Bb.real, Bb.imag], axis=0).T)
        return jax.lax.complex(z[:, :M], z[:, M:])

    def _readout(self, x: Complex[Array, "L M"], i: int) -> Float[Array, "L H"]:
        # 2 Re(C̃ x) = 2 (Re C̃ Re x - Im C̃ Im x), as one real matmul.
        scale = 2.0 if self.conj_sym else 1.0
        W = jnp.concatenate([self.C_re[i], -self.C_im[i]], axis=-1)  # (H, 2M)
        return jnp.matmul(jnp.concatenate([x.real, x.imag], axis=-1), scale * W.T)

    # -- whole sequence -------------------------------------------------------------------------------------------

    def __call__(self, u: Float[Array, "L H"], *, rate: float = 1.0) -> Float[Array, "L H"]:
        Lb, Bb = self.discrete(rate=rate)
        Bu = self._input(u, Bb)
        y = self._readout(linear_recurrence(Lb, Bu), 0)
        if self.bidirectional:
            y = y + self._readout(linear_recurrence(Lb, Bu, reverse=True), 1)
        return (y + self.D * u).astype(u.dtype)

    # -- recurrent mode -------------------------------------------------------------------------------------------

    def init_state(self, *, rate: float = 1.0) -> Complex[Array, " M"]:
        """Zero state: the M stored complex modes (shared by all channels; ``rate`` changes nothing here)."""
        self._check_recurrent()
        return jnp.zeros(self.Lambda_re.shape, jnp.result_type(self.Lambda_re.dtype, jnp.complex64))

    def step(
        self, u_t: Float[Array, " H"], state: Complex[Array, " M"], *, rate: float = 1.0
    ) -> tuple[Float[Array, " H"], Complex[Array, " M"]]:
        self._check_recurrent()
        Lb, Bb = self.discrete(rate=rate)
        x = Lb * state + Bb @ u_t.astype(Bb.dtype)
        y = self._readout(x[None], 0)[0] + self.D * u_t
        return y.astype(u_t.dtype), x

    def prefill(
        self, u: Float[Array, "L H"], state: Complex[Array, " M"] | None = None, *, rate: float = 1.0
    ) -> tuple[Float[Array, "L H"], Complex[Array, " M"]]:
        self._check_recurrent()
        Lb, Bb = self.discrete(rate=rate)
        Bu = self._input(u, Bb)
        if state is not None:
            # x_0 = Λ̄ x_{-1} + B̄ u_0: fold the start state into the first element of the scan.
            Bu = Bu.at[0].add(Lb * state)
        x = linear_recurrence(Lb, Bu)
        return (self._readout(x, 0) + self.D * u).astype(u.dtype), x[-1]
