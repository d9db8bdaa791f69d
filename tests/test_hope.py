"""HOPE against independent mathematics, float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ssm
from ssm.layers.hope import HOPE, hope_kernel, hope_realization, warped_response

H, n, L = 3, 5, 40
TOL = 1e-10


def _layer(dt=None, **kw):
    layer = HOPE(H, n, key=jax.random.key(0), **kw)
    if dt is not None:
        layer = eqx.tree_at(lambda m: m.log_dt, layer, jnp.full_like(layer.log_dt, np.log(dt)))
    return layer


@eqx.filter_jit
def _call(layer, u, rate=1.0):
    return layer(u, rate=rate)


@eqx.filter_jit
def _kernel(layer, L):
    return layer.kernel(L)


@eqx.filter_jit
def _step(layer, u_t, state, rate=1.0):
    return layer.step(u_t, state, rate=rate)


@eqx.filter_jit
def _prefill(layer, u, state=None, rate=1.0):
    return layer.prefill(u, state, rate=rate)


def _u(L=L, seed=1):
    return jax.random.normal(jax.random.key(seed), (L, H))


def test_dt_one_is_fir_with_markov_taps():
    layer = _layer(dt=1.0)
    h = np.asarray(layer.h[0])
    k = np.asarray(_kernel(layer, L))
    ref = np.zeros((H, L))
    ref[:, 1 : n + 1] = h
    assert np.max(np.abs(k - ref)) < 1e-14
    u = np.asarray(_u())
    y_fir = np.stack([np.convolve(u[:, c], np.concatenate([[0.0], h[c]]))[:L] for c in range(H)], axis=1)
    assert np.max(np.abs(np.asarray(_call(layer, jnp.asarray(u))) - (y_fir + np.asarray(layer.D) * u))) < TOL
    # the paper's L-point warped samples at Δ = 1 are the DFT of the same FIR filter
    G = warped_response(layer.h[0], jnp.ones(H), L)
    assert np.max(np.abs(np.fft.ifft(np.asarray(G), axis=-1) - ref)) < 1e-14


@pytest.mark.parametrize("dt", [0.05, 0.4, 2.5])
def test_kernel_is_impulse_response_of_warped_transfer_function(dt):
    """IFFT of the paper's samples Ĝ_k = Σ h_j e^{-ijθ_k} at M points is the impulse response aliased modulo M; with
    M large (|α|^M negligible) its first L taps are our exact kernel."""
    layer = _layer(dt=dt)
    M = 2**14
    G = warped_response(layer.h[0], jnp.full((H,), dt), M)
    k_ref = np.fft.ifft(np.asarray(G), axis=-1)
    assert np.max(np.abs(k_ref.imag)) < 1e-13
    assert np.max(np.abs(np.asarray(_kernel(layer, L)) - k_ref.real[:, :L])) < 1e-12


def test_angle_formula_is_arg_of_mobius_warp():
    dt, M = 0.3, 16
    z = np.exp(2j * np.pi * np.arange(M) / M)
    w = ((1 + dt) * z + (dt - 1)) / ((dt - 1) * z + (dt + 1))
    h = jnp.zeros((1, 1)).at[0, 0].set(1.0)  # G = w^{-1}
    G = np.asarray(warped_response(h, jnp.array([dt]), M))[0]
    assert np.max(np.abs(G - 1 / w)) < 1e-14


def test_realization_matches_reference_shift_mobius_form():
    """HOPE's (Yu, Mahoney, Erichson 2024) G(w(z)) has another n-state realization, the shift register of G
    after the Möbius map: M = (aI - cS)^{-1}, Ā = -M(bI - dS), B̄ = M e₁,
    C̄ = h(cĀ + dI), D̄ = c h M e₁ (a = 1+Δ, b = c = Δ-1, d = Δ+1). Same impulse response."""
    rng = np.random.default_rng(0)
    h = rng.normal(size=n)
    for dt in [0.2, 0.7, 1.9]:
        a, b, c, d = 1 + dt, dt - 1, dt - 1, dt + 1
        S = np.eye(n, k=-1)
        Mi = np.linalg.inv(a * np.eye(n) - c * S)
        A2, B2 = -Mi @ (b * np.eye(n) - d * S), Mi[:, 0]
        C2, D2 = h @ (c * A2 + d * np.eye(n)), c * h @ Mi[:, 0]
        ref = [D2] + [C2 @ np.linalg.matrix_power(A2, k - 1) @ B2 for k in range(1, L)]
        Ab, Bb, C, Dt = (np.asarray(x) for x in hope_realization(jnp.asarray(h), jnp.asarray(dt)))
        ours = [Dt] + [C @ np.linalg.matrix_power(Ab, k - 1) @ Bb for k in range(1, L)]
        assert np.max(np.abs(np.array(ours) - np.array(ref))) < 1e-12
        assert np.allclose(np.linalg.eigvals(Ab), (1 - dt) / (1 + dt), atol=1e-3)


def test_two_level_kernel_equals_explicit_matrix_powers():
    rng = np.random.default_rng(2)
    h, dt = rng.normal(size=(2, n)), np.array([0.15, 1.7])
    Ab, Bb, C, Dt = (np.asarray(x) for x in hope_realization(jnp.asarray(h), jnp.asarray(dt)))
    for Lk in (1, 2, 17, 40):
        K = np.asarray(hope_kernel(jnp.asarray(h), jnp.asarray(dt), Lk))
        for g in range(2):
            ref = [Dt[g]] + [C[g] @ np.linalg.matrix_power(Ab[g], k - 1) @ Bb[g] for k in range(1, Lk)]
            assert np.max(np.abs(K[g] - np.array(ref))) < 1e-13


@pytest.mark.parametrize("dt", [None, 0.3])
def test_step_and_prefill_equal_convolution(dt):
    layer = _layer(dt=dt)
    u = _u()
    y = _call(layer, u, 1.3)
    state = layer.init_state()
    ys = []
    for t in range(L):
        yt, state = _step(layer, u[t], state, 1.3)
        ys.append(yt)
    assert jnp.max(jnp.abs(jnp.stack(ys) - y)) < TOL
    y1, s1 = _prefill(layer, u[:17], rate=1.3)
    y2, s2 = _prefill(layer, u[17:], s1, rate=1.3)
    assert jnp.max(jnp.abs(jnp.concatenate([y1, y2]) - y)) < TOL
    assert jnp.max(jnp.abs(s2 - state)) < TOL


def test_rate_and_causality():
    layer = _layer()
    u = _u(L=12)
    shifted = eqx.tree_at(lambda m: m.log_dt, layer, layer.log_dt + np.log(3.0))
    assert jnp.max(jnp.abs(_call(layer, u, 3.0) - _call(shifted, u))) < TOL
    J = jnp.abs(jax.jit(jax.jacobian(lambda v: layer(v)))(u)).sum(axis=(1, 3))
    # FFT convolution: future inputs leak only at round-off level
    assert jnp.max(jnp.triu(J, 1)) < 1e-14 * jnp.max(J) and jnp.all(jnp.diag(J) > 0.1)


def test_bidirectional_is_forward_plus_reversed_pass():
    bi = _layer(bidirectional=True)
    fwd = eqx.tree_at(lambda m: (m.h, m.log_dt), _layer(), (bi.h[:1], bi.log_dt[:1]))
    fwd = eqx.tree_at(lambda m: m.D, fwd, bi.D)
    back = eqx.tree_at(lambda m: (m.h, m.log_dt), fwd, (bi.h[1:], bi.log_dt[1:]))
    u = _u()
    assert jnp.max(jnp.abs(_call(bi, u) - (_call(fwd, u) + _call(back, u[::-1])[::-1] - bi.D * u))) < TOL
    assert _kernel(bi, L).shape == (2, H, L)
    with pytest.raises(ValueError, match="bidirectional"):
        bi.step(u[0], jnp.zeros((H, n)))


def test_fixed_dt_gets_no_gradient():
    u = _u()
    for train_dt, nonzero in [(True, True), (False, False)]:
        layer = _layer(train_dt=train_dt)
        g = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.mean(m(u) ** 2)))(layer)
        assert bool(jnp.any(g.log_dt != 0)) is nonzero
        assert bool(jnp.any(g.h != 0))


def test_options_and_errors():
    layer = HOPE(4, 16, key=jax.random.key(3), decay_exp=-1.0)
    assert layer.h.shape == (1, 4, 16) and layer.log_dt.shape == (1, 4)
    assert float(jnp.abs(layer.h[..., -1]).mean()) < float(jnp.abs(layer.h[..., 0]).mean())
    mask = ssm.ssm_param_mask(layer)
    assert mask.h is True and mask.log_dt is True and mask.D is False
    for kw, msg in [({"init": "hippo"}, "Unknown HOPE init"), ({"dt_min": 1.0, "dt_max": 0.1}, "dt_min")]:
        with pytest.raises(ValueError, match=msg):
            _layer(**kw)


def test_adamw_reduces_loss():
    teacher = HOPE(2, 8, key=jax.random.key(10), dt_min=0.3, dt_max=1.0)
    student = HOPE(2, 8, key=jax.random.key(11), dt_min=0.3, dt_max=1.0)
    u = jax.random.normal(jax.random.key(12), (4, 32, 2))
    target = jax.vmap(teacher)(u)

    def loss(m):
        return jnp.mean((jax.vmap(m)(u) - target) ** 2)

    opt = optax.adamw(1e-2, weight_decay=0.0)
    params, static = eqx.partition(student, eqx.is_array)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        g = jax.grad(lambda p: loss(eqx.combine(p, static)))(params)
        up, state = opt.update(g, state, params)
        return optax.apply_updates(params, up), state

    l0 = loss(student)
    for _ in range(80):
        params, state = step(params, state)
    assert loss(eqx.combine(params, static)) < 0.2 * l0


def test_gradients_finite_long_sequence():
    layer = HOPE(2, 4, key=jax.random.key(0))
    u = jax.random.normal(jax.random.key(1), (16384, 2))
    g = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.mean(m(u) ** 2)))(layer)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(eqx.filter(g, eqx.is_array)))
