"""Perturb-then-diagonalize (PTD): a well-conditioned diagonal approximation of HiPPO-LegS.

Yu, Nigmetov, Morozov, Mahoney, Erichson, "Robustifying State-space Models for Long Sequences via Approximate
Diagonalization" (ICLR 2024): S4-PTD and S5-PTD.

The LegS matrix ``A`` cannot be diagonalized in practice: its eigenvector matrix has condition number ~3e47 at
N = 64. S4D-LegS instead drops the rank-one term (``A + P P^T`` is normal) and so changes the system: its transfer
function ``G(s) = c (sI - A)^{-1} b`` differs wildly from HiPPO's near the top of the normal part's spectrum. PTD
diagonalizes a *small* perturbation ``Ã = A + E`` whose eigenvector matrix ``V`` is well conditioned. Then

    |G_PTD(s) - G(s)| <= |c| |b| ||(sI - Ã)^{-1}|| ||(sI - A)^{-1}|| ||E||,

so the diagonal system converges uniformly (in s) to HiPPO as ``E`` shrinks at bounded ``κ(V)``. ``E`` solves
(the paper's objective, up to the scaling of γ)

    min_E  κ(V_E)^2 + γ ||E||_F / ||A||_F.

How we solve it (our construction; the paper optimizes ``E`` directly through ``eig`` and ships the result as
``.mat`` files): we parameterize ``Ã`` by its eigendecomposition, ``Ã = V diag(Λ) V^{-1}`` with ``V = [W, conj W]``
(unit-norm columns) and ``Λ = [λ, conj λ]``, ``Re λ = -exp(ρ) < 0``. So ``Ã`` is real, its spectrum is
conjugate-symmetric with no real eigenvalue (the N/2 stored modes of the conjugate-symmetric layers are exactly
the eigenpairs), it is stable, and both ``κ(V)`` (SVD) and ``E = Ã - A`` are smooth in the parameters (no
eigenvector derivatives). We start from the eigendecomposition of ``A + t0 P P^T`` (t0 = 0.3, κ ≈ 5, no real
eigenvalue; t0 = 1 is S4D-LegS) and run Adam with warm-up and a cosine schedule. Defaults give, at N = 64,
``κ(V) ≈ 8`` and ``||E||_F ≈ 85`` (3 % of ``||A||_F``), close to the paper's file (κ ≈ 9.2, ``||E||_F`` ≈ 97.9).

The optimization runs once per argument set (cached), in float64 on the CPU, whatever ``jax_enable_x64`` says:
a few seconds at N = 16 and 10-40 s at N = 64 on 2 (shared) CPU cores; its cost grows as N^3 per step.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ssm import hippo

__all__ = ["PTD", "legs_ptd", "legs_ptd_system", "block_diagonal"]


class PTD(NamedTuple):
    """Diagonalization of ``Ã = A_LegS + E`` in its conjugate-half form (all numpy float64/complex128).

    With ``V_f = [V, conj V]``, ``Λ_f = [Λ, conj Λ]``: ``Ã = V_f diag(Λ_f) V_f^{-1}`` and
    ``V_f^{-1} = [[Vinv], [conj Vinv]]``.
    """

    Lambda: np.ndarray  # (N//2,) complex, Im <= 0 ascending, Re < 0
    B: np.ndarray  # (N//2,) complex: Vinv @ b, b_n = sqrt(2n+1) (LegS input, not halved)
    V: np.ndarray  # (N, N//2) complex, unit-norm columns
    Vinv: np.ndarray  # (N//2, N) complex
    E: np.ndarray  # (N, N) real perturbation
    kappa: float  # 2-norm condition number of V_f


def legs_ptd(
    N: int,
    *,
    gamma: float = 4000.0,
    steps: int = 1000,
    lr: float = 0.02,
    t0: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """S4-PTD's ``(Λ (N//2,), B̃ (N//2,))``: the conjugate-half eigenvalues of ``Ã = A_LegS + E`` and
    ``B̃ = V^{-1} b``. The whole decomposition (``V``, ``V^{-1}``, ``E``, ``κ``) is :func:`legs_ptd_system`."""
    ptd = legs_ptd_system(N, gamma=gamma, steps=steps, lr=lr, t0=t0)
    return ptd.Lambda, ptd.B


def legs_ptd_system(
    N: int,
    *,
    gamma: float = 4000.0,
    steps: int = 1000,
    lr: float = 0.02,
    t0: float = 0.3,
) -> PTD:
    """PTD diagonalization of HiPPO-LegS of size ``N`` (even): :class:`PTD` ``(Lambda, B, V, Vinv, E, kappa)``.

    ``gamma`` weighs ``||E||_F/||A||_F`` against ``κ(V)^2``: larger ``gamma`` gives a smaller perturbation and a
    worse-conditioned ``V``. ``steps``, ``lr``: Adam iterations and peak learning rate. ``t0``: start point
    ``A + t0·PP^T``. Deterministic; cached per arguments (copies are returned).
    """
    if not isinstance(N, (int, np.integer)) or N < 2 or N % 2:
        raise ValueError(f"legs_ptd needs an even state size N >= 2 (conjugate pairs); got N={N!r}.")
    if not (gamma > 0 and steps >= 0 and lr > 0 and 0 < t0 <= 1):
        raise ValueError(
            f"legs_ptd: need gamma > 0, steps >= 0, lr > 0, 0 < t0 <= 1; got gamma={gamma}, steps={steps}, "
            f"lr={lr}, t0={t0}."
        )
    out = _legs_ptd(int(N), float(gamma), int(steps), float(lr), float(t0))
    return PTD(*(a.copy() if isinstance(a, np.ndarray) else a for a in out))


@functools.lru_cache(maxsize=32)
def _legs_ptd(N: int, gamma: float, steps: int, lr: float, t0: float) -> PTD:
    import jax
    import jax.numpy as jnp
    import optax

    A, b = hippo.transition("legs", N)
    P = hippo.rank_correction("legs", N, 1)
    norm_A = np.linalg.norm(A)
    w, U = np.linalg.eig(A + t0 * P.T @ P)
    order = np.argsort(w.imag, kind="stable")
    w, U = w[order][: N // 2], U[:, order][:, : N // 2]
    if np.any(w.imag > -1e-9):
        raise ValueError(
            f"legs_ptd(N={N}): A + {t0}·PP^T has a real eigenvalue, so the start point is not conjugate-paired; "
            "pass a larger t0."
        )
    cpu = jax.devices("cpu")[0]
    with jax.ensure_compile_time_eval(), jax.enable_x64(True), jax.default_device(cpu):
        im0 = jnp.asarray(w.imag)
        A_j = jnp.asarray(A)

        def build(th):
            W = th["W_re"] + 1j * th["W_im"]
            W = W / jnp.linalg.norm(W, axis=0)
            lam = -jnp.exp(th["rho"]) + 1j * im0 * jnp.exp(th["phi"])
            Vf = jnp.concatenate([W, W.conj()], axis=1)
            Lf = jnp.concatenate([lam, lam.conj()])
            At = ((Vf * Lf) @ jnp.linalg.inv(Vf)).real
            s = jnp.linalg.svd(Vf, compute_uv=False)
            return At, s[0] / s[-1], W, lam

        def loss(th):
            At, kappa, _, _ = build(th)
            return kappa**2 + gamma * jnp.linalg.norm(At - A_j) / norm_A

        theta = {
            "W_re": jnp.asarray(U.real),
            "W_im": jnp.asarray(U.imag),
            "rho": jnp.log(-jnp.asarray(w.real)),
            "phi": jnp.zeros(N // 2),
        }
        # Warm-up: a full-size first Adam step on every entry of W would wreck the conditioning of V.
        opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, lr, max(steps // 10, 1), max(steps, 1)))

        @jax.jit
        def run(theta):
            def body(carry, _):
                th, st = carry
                g = jax.grad(loss)(th)
                up, st = opt.update(g, st, th)
                return (optax.apply_updates(th, up), st), None

            (theta, _), _ = jax.lax.scan(body, (theta, opt.init(theta)), None, length=steps)
            return theta

        theta = run(theta)
        _, _, W, lam = build(theta)
        W, lam = np.asarray(W), np.asarray(lam)
    Vf = np.concatenate([W, W.conj()], axis=1)
    Vf_inv = np.linalg.inv(Vf)
    At = ((Vf * np.concatenate([lam, lam.conj()])) @ Vf_inv).real
    Vinv = Vf_inv[: N // 2]
    order = np.argsort(lam.imag, kind="stable")
    lam, W, Vinv = lam[order], W[:, order], Vinv[order]
    return PTD(
        Lambda=lam.astype(np.complex128),
        B=(Vinv @ b).astype(np.complex128),
        V=W.astype(np.complex128),
        Vinv=Vinv.astype(np.complex128),
        E=At - A,
        kappa=float(np.linalg.cond(Vf)),
    )


def block_diagonal(
    Lambda: np.ndarray, V: np.ndarray, Vinv: np.ndarray, blocks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile one block's ``(Λ (m,), V (b, m), Vinv (m, b))`` ``blocks`` times: the block-diagonal initialization of
    S5 (HiPPO-N blocks) and S5-PTD. Returns ``(Λ (J·m,), blockdiag V (J·b, J·m), blockdiag Vinv (J·m, J·b))``."""
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}.")
    eye = np.eye(blocks)
    return np.tile(Lambda, blocks), np.kron(eye, V), np.kron(eye, Vinv)
