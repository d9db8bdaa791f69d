"""DSS layer: exp kernel == recurrence == naive powers; softmax kernel == (W/Λ)·softmax over the window; separate Δ for
Re/Im, shared Λ, bidirectional, causality, training, transforms."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ssm

KEY = jax.random.key(0)
call = eqx.filter_jit(lambda m, u, rate=1.0: m(u, rate=rate))


def dss_parts(layer, rate=1.0):
    dt = rate * np.exp(np.asarray(layer.log_dt))  # (H, 1|2)
    re = -np.exp(np.asarray(layer.Lambda_re)) if layer.kernel_type == "exp" else np.asarray(layer.Lambda_re)
    im = np.asarray(layer.Lambda_im)
    dtLam = dt[:, :1] * re + 1j * dt[:, -1:] * im  # (H, N)
    return dtLam, re + 1j * im, np.asarray(layer.W_re) + 1j * np.asarray(layer.W_im)


def naive_kernels(layer, L, rate=1.0):
    dtLam, Lam, W = dss_parts(layer, rate)
    K = np.zeros((W.shape[0], layer.d_model, L))
    for h in range(layer.d_model):
        if layer.kernel_type == "exp":  # Re W Ā^k B̄ with Ā = diag(e^{ΔΛ}) raised by repeated multiplication
            Ab = np.diag(np.exp(dtLam[h]))
            x = (np.exp(dtLam[h]) - 1) / Lam
            for k in range(L):
                K[:, h, k] = np.real(W[:, h] @ x)
                x = Ab @ x
        else:  # (W/Λ) · softmax_l(l ΔΛ) over the window
            z = dtLam[h][:, None] * np.arange(L)
            sm = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
            K[:, h] = np.real((W[:, h] / Lam) @ sm)
    return K


def naive_output(layer, u, rate=1.0):
    L = u.shape[0]
    K = naive_kernels(layer, L, rate)
    y = np.asarray(layer.D) * u
    for t in range(L):
        for s in range(t + 1):
            y[t] += K[0, :, t - s] * u[s]
        if K.shape[0] == 2:
            for s in range(t, L):
                y[t] += K[1, :, s - t] * u[s]
    return y


@pytest.mark.parametrize("kernel_type,sep", [("exp", True), ("exp", False), ("softmax", True), ("softmax", False)])
def test_conv_equals_naive_kernel(kernel_type, sep):
    layer = ssm.DSS(d_model=3, d_state=6, key=KEY, kernel_type=kernel_type, sep_dt_re_im=sep)
    assert layer.log_dt.shape == (3, 2 if sep else 1)
    u = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_allclose(call(layer, jnp.asarray(u)), naive_output(layer, u.copy()), atol=1e-10)
    np.testing.assert_allclose(call(layer, jnp.asarray(u), 0.5), naive_output(layer, u.copy(), 0.5), atol=1e-10)


def test_softmax_with_growing_modes():
    layer = ssm.DSS(d_model=2, d_state=6, key=KEY, kernel_type="softmax")
    layer = eqx.tree_at(lambda m: m.Lambda_re, layer, layer.Lambda_re.at[:3].set(0.4))  # Re Λ > 0 is allowed
    u = np.random.default_rng(1).normal(size=(16, 2))
    np.testing.assert_allclose(call(layer, jnp.asarray(u)), naive_output(layer, u.copy()), atol=1e-10)


def test_exp_step_and_prefill():
    layer = ssm.DSS(d_model=3, d_state=6, key=KEY, kernel_type="exp")
    u = jnp.asarray(np.random.default_rng(2).normal(size=(24, 3)))
    ref = naive_output(layer, np.asarray(u).copy())
    state, ys = jax.lax.scan(lambda s, x: layer.step(x, s)[::-1], layer.init_state(), u)
    np.testing.assert_allclose(ys, ref, atol=1e-10)
    prefill = eqx.filter_jit(lambda m, u, s=None: m.prefill(u, s))
    y1, s1 = prefill(layer, u[:12])
    y2, s2 = prefill(layer, u[12:], s1)
    np.testing.assert_allclose(jnp.concatenate([y1, y2]), ref, atol=1e-10)
    np.testing.assert_allclose(s2, state, atol=1e-12)


def test_softmax_has_no_recurrence():
    layer = ssm.DSS(d_model=2, d_state=4, key=KEY)
    assert layer.kernel_type == "softmax"  # DSS's default
    with pytest.raises(ValueError, match="normalized over the whole window"):
        layer.init_state()
    with pytest.raises(ValueError, match="kernel_type='exp'"):
        layer.step(jnp.zeros(2), jnp.zeros((2, 4), complex))


def test_shared_lambda_init_and_bidirectional():
    layer = ssm.DSS(d_model=2, d_state=8, key=KEY, kernel_type="exp", bidirectional=True)
    assert layer.Lambda_re.shape == (8,) and layer.W_re.shape == (2, 2, 8)
    # DSS init: the N eigenvalues with positive imaginary part of the size-2N LegS normal part, Re Λ = -1/2
    S = np.tril(np.sqrt(2 * np.arange(16) + 1)[:, None] * np.sqrt(2 * np.arange(16) + 1)[None], -1)
    eig = np.linalg.eigvals((S - S.T) / 2)
    np.testing.assert_allclose(np.sort(layer.Lambda_im), np.sort(eig.imag[eig.imag > 0]), rtol=1e-10)
    np.testing.assert_allclose(-np.exp(layer.Lambda_re), -0.5)
    u = np.random.default_rng(3).normal(size=(12, 2))
    np.testing.assert_allclose(call(layer, jnp.asarray(u)), naive_output(layer, u.copy()), atol=1e-10)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.prefill(jnp.asarray(u))


def test_causality_training_and_mask():
    layer = ssm.DSS(d_model=2, d_state=4, key=KEY)
    u = jnp.asarray(np.random.default_rng(4).normal(size=(12, 2)))
    Jts = np.asarray(jax.jit(jax.jacrev(layer))(u)).transpose(0, 2, 1, 3)
    upper = np.triu(np.ones((12, 12)), 1).astype(bool)
    assert np.abs(Jts[upper]).max() < 1e-14 * np.abs(Jts).max()
    assert np.abs(Jts[~upper]).max() > 0.1
    mask = ssm.ssm_param_mask(layer)
    assert all(getattr(mask, n) is True for n in ("log_dt", "Lambda_re", "Lambda_im", "W_re", "W_im"))
    assert mask.D is False
    # AdamW on a regression task realizable by a teacher DSS
    x = jnp.asarray(np.random.default_rng(5).normal(size=(4, 32, 3)))
    teacher = ssm.DSS(d_model=3, d_state=8, key=jax.random.key(7))
    y_true = jax.vmap(teacher)(x)
    params, static = eqx.partition(ssm.DSS(d_model=3, d_state=8, key=KEY), eqx.is_array)
    opt = optax.adamw(3e-2, weight_decay=0.0)
    st = opt.init(params)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(lambda p: jnp.mean((jax.vmap(eqx.combine(p, static))(x) - y_true) ** 2))(p)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    losses = []
    for _ in range(60):
        params, st, loss = step(params, st)
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_bad_options():
    with pytest.raises(ValueError, match="kernel_type"):
        ssm.DSS(d_model=2, d_state=4, key=KEY, kernel_type="clip")
