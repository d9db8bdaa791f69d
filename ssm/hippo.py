"""HiPPO transition matrices and their normal-plus-low-rank (NPLR) decomposition.

Pure numpy functions in float64/complex128: they run once at initialization, and the
eigendecomposition must be done in double precision (state-spaces/s4 ``hippo.nplr`` with
``diagonalize_precision``).

Sign convention: ``A`` is already stable, i.e. the continuous system is ``x' = A x + B u``.
Indices ``n, k = 0..N-1``:

- ``legs``  (HiPPO-LegS, Gu et al. 2020): ``A_nk = -sqrt(2n+1) sqrt(2k+1)`` for n > k, ``-(n+1)`` for n = k,
  0 above the diagonal; ``B_n = sqrt(2n+1)``.
- ``legt``  (HiPPO-LegT, halved for timescale correctness as in S4):
  ``A_nk = -1/2 sqrt(2n+1) sqrt(2k+1) * (1 if n >= k else (-1)^(n-k))``, ``B_n = 1/2 sqrt(2n+1)``.
- ``lagt``  (HiPPO-LagT, tilted): ``A = 1/2 I - tril(1)``, ``B_n = 1``.
- ``fout``  (FouT, "How to Train Your HiPPO"): ``A = A0 - B B^T`` with the skew ``A0 = pi (-diag(d, 1) + diag(d, -1))``,
  ``d_i = i/2`` for even i and 0 for odd i, and ``B = (1, 0, sqrt2, 0, sqrt2, 0, ...)``.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

MEASURES = ("legs", "legt", "lagt", "fout")

# Minimal rank of the correction that makes A + P^T P normal.
_MIN_RANK = {"legs": 1, "legt": 2, "lagt": 1, "fout": 1}


def _check(measure: str, N: int) -> None:
    if measure not in MEASURES:
        raise ValueError(f"Unknown HiPPO measure {measure!r}; choose one of {MEASURES}.")
    if not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"State size N must be a positive integer, got {N!r}.")
    if measure == "fout" and N % 2:
        raise ValueError(f"The 'fout' measure pairs cos/sin states, so N must be even; got N={N}.")


def transition(measure: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """The HiPPO state matrix ``A (N, N)`` and input vector ``B (N,)`` (float64) of ``measure``."""
    _check(measure, N)
    n = np.arange(N, dtype=np.float64)
    row, col = n[:, None], n[None, :]
    r = np.sqrt(2 * n + 1)
    if measure == "legs":
        A = -np.where(row > col, np.outer(r, r), 0.0) - np.diag(n + 1)
        B = r.copy()
    elif measure == "legt":
        sign = np.where(row >= col, 1.0, (-1.0) ** (row - col))
        A = -0.5 * np.outer(r, r) * sign
        B = 0.5 * r
    elif measure == "lagt":
        A = 0.5 * np.eye(N) - np.tril(np.ones((N, N)))
        B = np.ones(N)
    else:  # fout
        i = np.arange(N - 1)
        d = np.where(i % 2 == 0, i / 2, 0.0)
        A0 = np.pi * (-np.diag(d, 1) + np.diag(d, -1))
        B = np.zeros(N)
        B[0::2] = np.sqrt(2.0)
        B[0] = 1.0
        A = A0 - np.outer(B, B)
    return A, B


def rank_correction(measure: str, N: int, rank: int = 1) -> np.ndarray:
    """``P (rank, N)`` with ``A + P^T P`` normal (``A + sum_r P_r P_r^T``). Rows beyond the minimal rank are 0."""
    _check(measure, N)
    need = _MIN_RANK[measure]
    if rank < need:
        raise ValueError(
            f"Measure {measure!r} needs a low-rank correction of rank >= {need} to be normal; got rank={rank}. "
            f"Pass rank={need}."
        )
    n = np.arange(N, dtype=np.float64)
    if measure == "legs":
        P = np.sqrt(n + 0.5)[None]
    elif measure == "legt":
        p = np.sqrt(2 * n + 1) * 2**-0.5
        P0 = np.where(n % 2 == 1, p, 0.0)
        P1 = np.where(n % 2 == 0, p, 0.0)
        P = np.stack([P0, P1])
    elif measure == "lagt":
        P = np.full((1, N), np.sqrt(0.5))
    else:  # fout
        P = transition("fout", N)[1][None]
    if rank > need:
        P = np.concatenate([P, np.zeros((rank - need, N))], axis=0)
    return P


def nplr(
    measure: str, N: int, rank: int = 1, b_clip: float | None = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normal-plus-low-rank form of a HiPPO matrix, in the unitary eigenbasis of its normal part.

    ``A + P^T P = V_f diag(Λ_f) V_f^*`` with ``V_f = [V, conj V]`` unitary, ``Λ_f = [Λ, conj Λ]``. Returns the stored
    conjugate half ``(Λ (N//2,), P̃ (rank, N//2), B̃ (N//2,), V (N, N//2))`` where ``P̃ = V^* P``, ``B̃ = V^* B``, so that
    ``A = V_f (diag Λ_f - P̃_f^T conj(P̃_f)) V_f^*`` with ``P̃_f = [P̃, conj P̃]``. ``Im Λ <= 0`` (ascending order).

    ``b_clip``: as in official S4, ``Im B̃`` is clipped to ``[-b_clip, b_clip]``; ``None`` keeps the exact ``B̃``.
    FouT's normal part has a double zero eigenvalue (states 0 and 1 are decoupled); its kept eigenvector is set to
    ``(1, i, 0, ...)/sqrt2`` so that the pair ``(v, conj v)`` spans both states.
    """
    # Every S4 layer of a model asks for the same decomposition: compute it once per process, hand out copies.
    return tuple(x.copy() for x in _nplr(measure, N, rank, b_clip))  # type: ignore[return-value]


@functools.lru_cache(maxsize=64)
def _nplr(
    measure: str, N: int, rank: int, b_clip: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    _check(measure, N)
    if N % 2:
        raise ValueError(f"nplr keeps N/2 conjugate pairs, so N must be even; got N={N}.")
    A, B = transition(measure, N)
    P = rank_correction(measure, N, rank)
    AP = A + P.T @ P
    re = np.mean(np.diag(AP))
    skew_err = np.max(np.abs(AP + AP.T - 2 * re * np.eye(N)))
    if skew_err > 1e-5:
        warnings.warn(f"HiPPO {measure!r}: A + P^T P is not c*I + skew (error {skew_err:.2e}).", stacklevel=2)
    # (-i) * skew part is Hermitian: eigh gives real eigenvalues (= Im Λ) and a unitary V.
    im, V = np.linalg.eigh(-1j * (AP - re * np.eye(N)))
    order = np.argsort(im, kind="stable")
    im, V = im[order][: N // 2], V[:, order][:, : N // 2]
    if N >= 4 and abs(im[-2]) < 1e-4:
        raise ValueError(f"HiPPO {measure!r}: more than one zero eigenvalue in the kept half; cannot pair modes.")
    if abs(im[-1]) < 1e-4:
        V[:, -1] = 0.0
        V[0, -1] = 2**-0.5
        V[1, -1] = 1j * 2**-0.5
        im[-1] = 0.0
    Lambda = re + 1j * im
    Vh = V.conj().T
    Bt = Vh @ B
    Pt = P @ V.conj()  # (rank, N/2) = (V^* P_r) per row
    if b_clip is not None:
        Bt = Bt.real + 1j * np.clip(Bt.imag, -b_clip, b_clip)
    return Lambda.astype(np.complex128), Pt.astype(np.complex128), Bt.astype(np.complex128), V.astype(np.complex128)
