"""The S4 Cauchy kernel's hand-written gradient (``ssm.kernels._cauchy_sums``' custom VJP, frequency blocks) against
``jax.grad`` of a plain dense formula written here: per frequency, one linear solve with the full conjugate DPLR
matrix, then ``irfft``. Float64, tight tolerances; tiny shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm import kernels


def _system(H, M, R, nC, seed):
    rng = np.random.default_rng(seed)
    return dict(
        dt=rng.uniform(0.05, 0.5, H),
        A_re=-rng.uniform(0.1, 1.0, (H, M)),
        A_im=rng.normal(0, 3, (H, M)),
        P_re=0.5 * rng.normal(size=(R, H, M)),
        P_im=0.5 * rng.normal(size=(R, H, M)),
        B_re=rng.normal(size=(H, M)),
        B_im=rng.normal(size=(H, M)),
        C_re=rng.normal(size=(nC, H, M)),
        C_im=rng.normal(size=(nC, H, M)),
    )


def _dense_kernel(p, L):
    """``K = irfft(K̂)``, ``K̂(z) = Δ C̃_f ((1 - z) I - (Δ/2)(1 + z) A_f)^{-1} B_f`` at ``z_j = e^{-2πij/L}``: the generating
    function ``Σ_{k<L} C Ā^k B̄ z^k = C̃ (I - Ā z)^{-1} B̄`` of the bilinear system at the roots of unity, with the full
    conjugate-symmetric ``A_f = diag(Λ_f) - Σ_r p_r p_r^*`` (``X_f = [X, conj X]``)."""
    cat = lambda x: jnp.concatenate([x, jnp.conj(x)], axis=-1)  # noqa: E731
    Lam = cat(p["A_re"] + 1j * p["A_im"])  # (H, N)
    Pf = cat(p["P_re"] + 1j * p["P_im"])  # (R, H, N)
    Bf = cat(p["B_re"] + 1j * p["B_im"])  # (H, N)
    Cf = cat(p["C_re"] + 1j * p["C_im"])  # (nC, H, N)
    Af = jax.vmap(jnp.diag)(Lam) - jnp.einsum("rhn,rhm->hnm", Pf, jnp.conj(Pf))
    z = jnp.exp(-2j * jnp.pi * jnp.arange(L // 2 + 1) / L)  # (J,)
    N = Lam.shape[-1]
    dt = p["dt"][:, None, None, None]
    mat = (1 - z)[None, :, None, None] * jnp.eye(N) - dt / 2 * (1 + z)[None, :, None, None] * Af[:, None]  # (H, J, N, N)
    x = jnp.linalg.solve(mat, jnp.broadcast_to(Bf[:, None, :, None], mat.shape[:-1] + (1,)))[..., 0]  # (H, J, N)
    khat = p["dt"][:, None] * jnp.einsum("chn,hjn->chj", Cf, x)
    return jnp.fft.irfft(khat, n=L, axis=-1)


def _kernel(p, L, block):
    return kernels.dplr_kernel_from_ctilde(
        p["dt"], p["A_re"] + 1j * p["A_im"], p["P_re"] + 1j * p["P_im"], p["B_re"] + 1j * p["B_im"],
        p["C_re"] + 1j * p["C_im"], L, block=block,
    )


@pytest.mark.parametrize(
    "R,nC,L,block",
    [
        (1, 1, 20, 4),  # 11 frequencies in 3 blocks of 4 (the last one padded)
        (1, 2, 16, 256),  # one block, no lax.map
        (2, 1, 17, 3),  # odd L: no frequency at ω = -1
        (2, 2, 24, 5),
    ],
)
def test_cauchy_kernel_value_and_gradient_match_dense_solve(R, nC, L, block):
    p = {k: jnp.asarray(v) for k, v in _system(3, 4, R, nC, seed=R * 10 + nC).items()}
    w = jnp.asarray(np.random.default_rng(1).normal(size=(nC, 3, L)))

    def loss(f):
        # sin: a cotangent that depends on the kernel, so the gradient is not a linear functional of w alone
        return jax.jit(jax.value_and_grad(lambda p: jnp.sum(jnp.sin(3 * f(p)) * w)))

    val, grad = loss(lambda p: _kernel(p, L, block))(p)
    ref_val, ref_grad = loss(lambda p: _dense_kernel(p, L))(p)
    np.testing.assert_allclose(val, ref_val, rtol=1e-12)
    for k in p:
        scale = float(jnp.max(jnp.abs(ref_grad[k])))
        assert scale > 1e-3, k  # every parameter matters, so a zero gradient cannot pass
        np.testing.assert_allclose(grad[k], ref_grad[k], rtol=0, atol=1e-12 * scale, err_msg=k)


def test_s4_layer_block_option():
    import ssm

    H, N, L = 3, 8, 40
    auto = ssm.S4(d_model=H, d_state=N, l_max=L, key=jax.random.key(0))
    fixed = ssm.S4(d_model=H, d_state=N, l_max=L, block=5, key=jax.random.key(0))
    assert auto.block is None and fixed.block == 5
    np.testing.assert_allclose(fixed.kernel(L), auto.kernel(L), rtol=0, atol=1e-12)
    # the explicit value is the one used: 21 frequencies in 5 blocks of 5 (H·M·Jb temporaries of shape (3, 4, 5))
    jaxpr = str(jax.make_jaxpr(lambda layer: layer.kernel(L))(fixed))
    assert "f64[3,4,5]" in jaxpr and "f64[3,4,21]" not in jaxpr
    assert "f64[3,4,21]" in str(jax.make_jaxpr(lambda layer: layer.kernel(L))(auto))
    with pytest.raises(ValueError, match="block must be a positive"):
        ssm.S4(d_model=H, d_state=N, block=0, key=jax.random.key(0))


def test_rank1_woodbury_in_real_arithmetic():
    """``kernels._woodbury_rank1`` (the rank-1 Woodbury step on real and imaginary parts, Smith's quotient) against
    complex arithmetic ``a - b c / (1 + d)``: both branches of the quotient (``|Re(1+d)|`` above and below ``|Im d|``),
    float64 to rounding; and in float32 at ``|1 + d| ~ 1e20``, where forming ``|1 + d|²`` would overflow."""
    rng = np.random.default_rng(3)
    z = lambda *s: rng.normal(size=s) + 1j * rng.normal(size=s)  # noqa: E731
    a, b, c = z(2, 50), z(2, 50), z(1, 50)
    d = np.concatenate([z(1, 25) * 0.1 + 3.0, z(1, 25) * 0.1 + 3.0j], axis=-1)  # Re(1+d) large, then Im d large
    assert (np.abs((1 + d).real) >= np.abs(d.imag)).sum() == 25
    parts = [x for v in (a, b, c, d) for x in (jnp.asarray(v.real), jnp.asarray(v.imag))]
    re, im = kernels._woodbury_rank1(*parts)
    ref = a - b * c / (1 + d)
    np.testing.assert_allclose(np.asarray(re) + 1j * np.asarray(im), ref, rtol=1e-14, atol=1e-14)

    big = np.array([[3e20 + 1e20j, -1e20 + 4e20j]])
    b32, c32 = np.array([[2e19 - 1e19j, 5e19 + 3e19j]]), np.array([[1.5 + 0.5j, -2 + 1j]])
    a32 = np.array([[0.25 - 1j, 2 + 0.5j]])
    parts = [jnp.asarray(x, jnp.float32) for v in (a32, b32, c32, big) for x in (v.real, v.imag)]
    re, im = kernels._woodbury_rank1(*parts)
    ref = a32 - b32 * c32 / (1 + big)
    assert np.all(np.isfinite(re)) and np.all(np.isfinite(im))
    np.testing.assert_allclose(np.asarray(re) + 1j * np.asarray(im), ref, rtol=1e-6)
