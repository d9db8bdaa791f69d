"""S4D layer: convolution == recurrence == naive matrix-power kernel, prefill, rate, bidirectional, causality,
gradients, training, transforms."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import ssm
from ssm.layers.s4d import S4D_INITS

KEY = jax.random.key(0)
# Jitted entry points: one compilation per shape instead of one per eager primitive keeps the file fast.
call = eqx.filter_jit(lambda m, u, rate=1.0: m(u, rate=rate))
kernel = eqx.filter_jit(lambda m, L: m.kernel(L))
prefill = eqx.filter_jit(lambda m, u, s=None, rate=1.0: m.prefill(u, s, rate=rate))


def full(x):
    return np.concatenate([x, np.conj(x)], axis=-1)


def naive_kernels(layer, L, rate=1.0):
    """Per direction and channel: Re(C_f Ā^k B̄) of the full N-state system, Ā by expm (ZOH) or the dense bilinear
    formula, powers by repeated multiplication."""
    dt = rate * np.exp(np.asarray(layer.log_dt))
    Lam = -np.exp(np.asarray(layer.log_A_re)) + 1j * np.asarray(layer.A_im)
    B = np.asarray(layer.B_re) + 1j * np.asarray(layer.B_im)
    C = np.asarray(layer.C_re) + 1j * np.asarray(layer.C_im)
    out = np.zeros((C.shape[0], layer.d_model, L))
    for h in range(layer.d_model):
        Af, Bf = np.diag(full(Lam[h])), full(B[h])
        N = Af.shape[0]
        if layer.disc == "zoh":
            Ab = scipy.linalg.expm(dt[h] * Af)
            Bb = np.linalg.solve(Af, (Ab - np.eye(N)) @ Bf)
        else:
            Ab = np.linalg.solve(np.eye(N) - dt[h] / 2 * Af, np.eye(N) + dt[h] / 2 * Af)
            Bb = np.linalg.solve(np.eye(N) - dt[h] / 2 * Af, dt[h] * Bf)
        x = Bb
        for k in range(L):
            for d in range(C.shape[0]):
                out[d, h, k] = np.real(full(C[d, h]) @ x)
            x = Ab @ x
    return out


def naive_output(layer, u, rate=1.0):
    L = u.shape[0]
    K = naive_kernels(layer, L, rate)
    D = np.asarray(layer.D)
    y = D * u
    for t in range(L):
        for s in range(t + 1):
            y[t] += K[0, :, t - s] * u[s]
        if K.shape[0] == 2:
            for s in range(t, L):
                y[t] += K[1, :, s - t] * u[s]
    return y


@eqx.filter_jit
def run_steps(layer, u, state=None, rate=1.0):
    state = layer.init_state() if state is None else state
    state, ys = jax.lax.scan(lambda s, x: layer.step(x, s, rate=rate)[::-1], state, u)
    return ys, state


@pytest.mark.parametrize("disc,init", [("zoh", "legs"), ("bilinear", "legs"), ("zoh", "lin"), ("bilinear", "inv"),
                                       ("zoh", "real"), ("zoh", "rand")])
def test_conv_equals_step_equals_naive_kernel(disc, init):
    layer = ssm.S4D(d_model=3, d_state=8, key=KEY, disc=disc, init=init)
    u = np.random.default_rng(0).normal(size=(24, 3))
    ref = naive_output(layer, u.copy())
    y = call(layer, jnp.asarray(u))
    np.testing.assert_allclose(y, ref, atol=1e-10)
    ys, _ = run_steps(layer, jnp.asarray(u))
    np.testing.assert_allclose(ys, ref, atol=1e-10)
    yp, _ = prefill(layer, jnp.asarray(u))
    np.testing.assert_allclose(yp, ref, atol=1e-10)
    np.testing.assert_allclose(kernel(layer, 24), naive_kernels(layer, 24)[0], atol=1e-10)


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_prefill_state_equals_stepped_state_and_rate(disc):
    layer = ssm.S4D(d_model=3, d_state=8, key=KEY, disc=disc)
    u = jnp.asarray(np.random.default_rng(1).normal(size=(30, 3)))
    for r in (1.0, 0.5):
        rate = jnp.asarray(r)  # traced: one compilation for both rates
        ys, s_step = run_steps(layer, u, rate=rate)
        np.testing.assert_allclose(ys, naive_output(layer, np.asarray(u).copy(), r), atol=1e-10)
        np.testing.assert_allclose(call(layer, u, rate), ys, atol=1e-10)
        # two prefills chained through a nonzero state == one stepped run
        y1, s1 = prefill(layer, u[:15], rate=rate)
        y2, s2 = prefill(layer, u[15:], s1, rate=rate)
        np.testing.assert_allclose(jnp.concatenate([y1, y2]), ys, atol=1e-10)
        np.testing.assert_allclose(s2, s_step, atol=1e-12)
    # rate r is the same as Δ scaled by r
    scaled = eqx.tree_at(lambda m: m.log_dt, layer, layer.log_dt + np.log(0.5))
    np.testing.assert_allclose(call(layer, u, jnp.asarray(0.5)), call(scaled, u, jnp.asarray(1.0)), atol=1e-12)


def test_bidirectional_is_forward_plus_reversed_pass():
    layer = ssm.S4D(d_model=2, d_state=6, key=KEY, bidirectional=True)
    u = np.random.default_rng(2).normal(size=(15, 2))
    y = call(layer, jnp.asarray(u))
    np.testing.assert_allclose(y, naive_output(layer, u.copy()), atol=1e-10)
    k = kernel(layer, 15)
    assert k.shape == (2, 2, 15)
    fwd = ssm.kernels.fft_conv(jnp.asarray(u), k[0])
    bwd = ssm.kernels.fft_conv(jnp.asarray(u[::-1]), k[1])[::-1]
    np.testing.assert_allclose(y, fwd + bwd + layer.D * u, atol=1e-12)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.init_state()


def test_causality():
    layer = ssm.S4D(d_model=2, d_state=4, key=KEY)
    u = jnp.asarray(np.random.default_rng(3).normal(size=(12, 2)))
    J = jax.jit(jax.jacrev(layer))(u)  # (L, H, L, H): d y_t / d u_s
    Jts = np.asarray(J).transpose(0, 2, 1, 3)  # (t, s, H, H)
    upper = np.triu(np.ones((12, 12)), 1).astype(bool)
    # FFT round-off only (~1e-17); any real leak of the future would be O(|J|).
    assert np.abs(Jts[upper]).max() < 1e-14 * np.abs(Jts).max()
    assert np.abs(Jts[~upper]).max() > 0.1


def train_losses(layer, teacher, steps=60, lr=3e-2):
    """AdamW on a regression task realizable by the layer family: match a teacher layer of the same kind.
    All parameters, complex ones included, are real leaves (real/imaginary pairs), so plain AdamW is correct."""
    rng = np.random.default_rng(5)
    u = jnp.asarray(rng.normal(size=(4, 32, layer.d_model)))
    y_true = jax.vmap(teacher)(u)
    params, static = eqx.partition(layer, eqx.is_array)
    opt = optax.adamw(lr, weight_decay=0.0)
    state = opt.init(params)

    def loss_fn(p):
        return jnp.mean((jax.vmap(eqx.combine(p, static))(u) - y_true) ** 2)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    losses = []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    return losses


def test_adamw_reduces_regression_loss():
    losses = train_losses(ssm.S4D(d_model=3, d_state=8, key=KEY), ssm.S4D(d_model=3, d_state=8, key=jax.random.key(7)))
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_vmap_jit_grad_compose():
    layer = ssm.S4D(d_model=3, d_state=4, key=KEY)
    u = jax.random.normal(KEY, (5, 10, 3))
    yb = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(layer, u)
    np.testing.assert_allclose(yb, jnp.stack([call(layer, x) for x in u]), atol=1e-12)
    g_b = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(jax.vmap(m)(u))))(layer)
    grad_one = eqx.filter_jit(eqx.filter_grad(lambda m, x: jnp.sum(m(x))))
    g_s = [grad_one(layer, x) for x in u]
    np.testing.assert_allclose(g_b.log_dt, sum(g.log_dt for g in g_s), rtol=1e-10)


def test_ssm_param_mask_and_inits():
    layer = ssm.S4D(d_model=2, d_state=4, key=KEY)
    mask = ssm.ssm_param_mask(layer)
    for name in ("log_dt", "log_A_re", "A_im", "B_re", "B_im"):
        assert getattr(mask, name) is True
    for name in ("C_re", "C_im", "D"):
        assert getattr(mask, name) is False
    for init in S4D_INITS:
        if init == "legs-ptd":
            continue
        m = ssm.S4D(d_model=2, d_state=8, key=KEY, init=init)
        assert np.all(np.exp(np.asarray(m.log_A_re)) > 0) and np.all(np.isfinite(m.kernel(16)))
    lin = ssm.S4D(d_model=1, d_state=8, key=KEY, init="lin")
    np.testing.assert_allclose(lin.A_im[0], -np.pi * np.arange(4))
    legs = ssm.S4D(d_model=1, d_state=8, key=KEY, init="legs")
    Lam, _, B, _ = ssm.hippo.nplr("legs", 8)
    np.testing.assert_allclose(legs.A_im[0], Lam.imag)
    np.testing.assert_allclose(legs.B_re[0] + 1j * legs.B_im[0], B)


def test_legs_ptd_init():
    ptd = pytest.importorskip("ssm.ptd")
    m = ssm.S4D(d_model=2, d_state=8, key=KEY, init="legs-ptd")
    Lam, B = ptd.legs_ptd(8)
    np.testing.assert_allclose(-np.exp(m.log_A_re[0]) + 1j * m.A_im[0], Lam, atol=1e-12)
    np.testing.assert_allclose(m.B_re[0] + 1j * m.B_im[0], B, atol=1e-12)


def test_bad_options():
    with pytest.raises(ValueError, match="d_state must be even"):
        ssm.S4D(d_model=2, d_state=5, key=KEY)
    with pytest.raises(ValueError, match="Unknown S4D init"):
        ssm.S4D(d_model=2, d_state=4, key=KEY, init="foo")
    with pytest.raises(ValueError, match="disc"):
        ssm.S4D(d_model=2, d_state=4, key=KEY, disc="euler")
    with pytest.raises(ValueError, match="dt_min"):
        ssm.S4D(d_model=2, d_state=4, key=KEY, dt_min=0.1, dt_max=0.01)
