"""S5 (and S5-PTD) against independent mathematics, float64."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import ssm
from ssm import hippo
from ssm.layers.s5 import S5, linear_recurrence, s5_eigenbasis

H, P, L = 3, 8, 24
TOL = 1e-10


def _u(L=L, H=H, seed=1):
    return jax.random.normal(jax.random.key(seed), (L, H))


def _layer(**kw):
    return S5(H, P, key=jax.random.key(0), **kw)


@eqx.filter_jit
def _call(layer, u, rate=1.0):
    return layer(u, rate=rate)


@eqx.filter_jit
def _step(layer, u_t, state, rate=1.0):
    return layer.step(u_t, state, rate=rate)


@eqx.filter_jit
def _prefill(layer, u, state=None, rate=1.0):
    return layer.prefill(u, state, rate=rate)


def _run_steps(layer, u, state=None, rate=1.0):
    state = layer.init_state() if state is None else state
    ys = []
    for t in range(u.shape[0]):
        y_t, state = _step(layer, u[t], state, rate)
        ys.append(y_t)
    return jnp.stack(ys), state


def _naive(layer, u, rate=1.0):
    """y_t = Σ_{s<=t} scale·Re(C̃ Λ̄^{t-s} B̄) u_s + D u_t with Λ̄^k from explicit matrix powers of diag(Λ̄)."""
    Lb, Bb = (np.asarray(a) for a in layer.discrete(rate=rate))
    C = np.asarray(layer.C_re[0]) + 1j * np.asarray(layer.C_im[0])
    scale = 2.0 if layer.conj_sym else 1.0
    Ab = np.diag(Lb)
    n = u.shape[0]
    K = [scale * (C @ np.linalg.matrix_power(Ab, k) @ Bb).real for k in range(n)]  # (H, H) per lag
    u = np.asarray(u)
    y = np.stack([sum(K[t - s] @ u[s] for s in range(t + 1)) for t in range(n)])
    return y + np.asarray(layer.D) * u


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"disc": "bilinear"},
        {"conj_sym": False},
        {"blocks": 2, "C_init": "lecun_normal"},
        {"C_init": "complex_normal", "init": "legs-ptd", "blocks": 2},
    ],
)
def test_scan_equals_sequential_and_naive_kernel(kw):
    layer = _layer(**kw)
    u = _u()
    y = _call(layer, u)
    Lb, Bb = layer.discrete()
    Bu = u @ Bb.T
    xs = jax.lax.scan(lambda x, b: (Lb * x + b,) * 2, jnp.zeros_like(Lb), Bu)[1]
    scale = 2.0 if layer.conj_sym else 1.0
    y_seq = scale * (xs @ (layer.C_re[0] + 1j * layer.C_im[0]).T).real + layer.D * u
    assert jnp.max(jnp.abs(y - y_seq)) < TOL
    assert np.max(np.abs(np.asarray(y) - _naive(layer, u))) < TOL


def test_linear_recurrence_reverse():
    a = jnp.array([0.9 - 0.2j, 0.5 + 0.1j])
    b = jax.random.normal(jax.random.key(3), (7, 2)) + 1j * jax.random.normal(jax.random.key(4), (7, 2))
    x = np.zeros(2, complex)
    ref = []
    for k in range(6, -1, -1):
        x = np.asarray(a) * x + np.asarray(b[k])
        ref.append(x)
    assert np.max(np.abs(np.asarray(linear_recurrence(a, b, reverse=True)) - np.stack(ref[::-1]))) < 1e-14


@pytest.mark.parametrize("reverse", [False, True])
def test_linear_recurrence_gradient_equals_sequential_scan_gradient(reverse):
    """The custom VJP (adjoint = opposite-direction scan) against autodiff through a sequential lax.scan."""
    k = jax.random.split(jax.random.key(7), 5)
    a_re, a_im = jnp.array([-0.1, -0.5, 0.3]), jnp.array([0.9, 0.2, -0.6])
    b_re, b_im = jax.random.normal(k[0], (11, 3)), jax.random.normal(k[1], (11, 3))
    w = jax.random.normal(k[2], (11, 3)) + 1j * jax.random.normal(k[3], (11, 3))

    def sequential(a, b):
        bb = b[::-1] if reverse else b
        xs = jax.lax.scan(lambda x, bk: (a * x + bk,) * 2, jnp.zeros_like(a), bb)[1]
        return xs[::-1] if reverse else xs

    def loss(f, ar, ai, br, bi):
        x = f(ar + 1j * ai, br + 1j * bi)
        return jnp.sum(jnp.abs(w * x) ** 2) + jnp.sum((w * x).real)

    args = (a_re, a_im, b_re, b_im)
    g = jax.grad(lambda *p: loss(lambda a, b: linear_recurrence(a, b, reverse=reverse), *p), argnums=(0, 1, 2, 3))(*args)
    g_ref = jax.grad(lambda *p: loss(sequential, *p), argnums=(0, 1, 2, 3))(*args)
    for x, y in zip(g, g_ref):
        assert jnp.max(jnp.abs(x - y)) < 1e-11


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_discretization_closed_forms(disc):
    """ZOH == blocks of expm(Δ[[Λ, B̃],[0, 0]]) per mode; bilinear == (I - Δ/2 A)^{-1}(I + Δ/2 A), (I - Δ/2 A)^{-1}ΔB."""
    layer = _layer(disc=disc)
    Lb, Bb = (np.asarray(a) for a in layer.discrete(rate=1.7))
    Lam = np.asarray(layer.Lambda_re) + 1j * np.asarray(layer.Lambda_im)
    Bt = np.asarray(layer.B[..., 0]) + 1j * np.asarray(layer.B[..., 1])
    dt = 1.7 * np.exp(np.asarray(layer.log_step))
    for m in range(Lam.shape[0]):
        if disc == "zoh":
            M = np.zeros((1 + H, 1 + H), complex)
            M[0, 0], M[0, 1:] = Lam[m], Bt[m]
            E = scipy.linalg.expm(dt[m] * M)
            ref_a, ref_b = E[0, 0], E[0, 1:]
        else:
            inv = 1 / (1 - dt[m] / 2 * Lam[m])
            ref_a, ref_b = inv * (1 + dt[m] / 2 * Lam[m]), inv * dt[m] * Bt[m]
        assert abs(Lb[m] - ref_a) < 1e-13 and np.max(np.abs(Bb[m] - ref_b)) < 1e-13


def test_dense_real_space_system_expm():
    """Without conjugate symmetry and with one shared Δ, S5 is the dense system (V Λ V^{-1}, V B̃, C̃ V^{-1})
    discretized by expm in the original (non-diagonal) coordinates."""
    layer = _layer(conj_sym=False, blocks=2)
    layer = eqx.tree_at(lambda m: m.log_step, layer, jnp.full_like(layer.log_step, np.log(0.05)))
    Lam, V, Vinv = s5_eigenbasis("hippo", P, 2, conj_sym=False)
    A = V @ np.diag(Lam) @ Vinv
    A_legs = hippo.transition("legs", P // 2)[0]
    p = hippo.rank_correction("legs", P // 2, 1)
    assert np.max(np.abs(A - np.kron(np.eye(2), A_legs + p.T @ p))) < 1e-12  # block-diagonal HiPPO-N
    Bt = np.asarray(layer.B[..., 0]) + 1j * np.asarray(layer.B[..., 1])
    C = (np.asarray(layer.C_re[0]) + 1j * np.asarray(layer.C_im[0])) @ Vinv
    Bf = V @ Bt
    M = np.zeros((P + H, P + H), complex)
    M[:P, :P], M[:P, P:] = A, Bf
    E = scipy.linalg.expm(0.05 * M)
    Ab, Bb = E[:P, :P], E[:P, P:]
    u = np.asarray(_u())
    x = np.zeros(P, complex)
    ys = []
    for t in range(L):
        x = Ab @ x + Bb @ u[t]
        ys.append((C @ x).real + np.asarray(layer.D) * u[t])
    assert np.max(np.abs(np.asarray(_call(layer, jnp.asarray(u))) - np.stack(ys))) < TOL


def test_zoh_matches_diffrax_ode():
    """The continuous system under piecewise-constant input, sampled at the step times, equals the ZOH recurrence.

    Each mode has its own Δ_m: in the time τ = t/Δ_m every mode sees u_k on τ ∈ [k, k+1), so one ODE
    dx/dτ = Δ ∘ (Λ ∘ x + B̃ u(τ)) covers all modes; x(k+1) is the state after input u_k."""
    layer = _layer()
    n = 6
    u = _u(L=n)
    Lam = layer.Lambda_re + 1j * layer.Lambda_im
    Bt = layer.B[..., 0] + 1j * layer.B[..., 1]
    dt = jnp.exp(layer.log_step)
    ts = jnp.arange(n + 1, dtype=jnp.float64)

    def u_of(t):
        return u[jnp.clip(jnp.searchsorted(ts, t, side="right") - 1, 0, n - 1)]

    def f(t, y, args):
        x = y[0] + 1j * y[1]
        dx = dt * (Lam * x + Bt @ u_of(t))
        return jnp.stack([dx.real, dx.imag])

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(f), diffrax.Dopri8(), t0=0.0, t1=float(n), dt0=0.1,
        y0=jnp.zeros((2, Lam.shape[0])), saveat=diffrax.SaveAt(ts=ts[1:]),
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12, jump_ts=ts), max_steps=100_000,
    )
    x_ode = sol.ys[:, 0] + 1j * sol.ys[:, 1]
    _, xL = layer.prefill(u)
    state = layer.init_state()
    for t in range(n):
        _, state = _step(layer, u[t], state)
        assert jnp.max(jnp.abs(state - x_ode[t])) < 1e-10
    assert jnp.max(jnp.abs(xL - x_ode[-1])) < 1e-10


def test_bidirectional_is_forward_plus_reversed_pass():
    bi = _layer(bidirectional=True)
    uni = _layer()
    uni = eqx.tree_at(
        lambda m: (m.Lambda_re, m.Lambda_im, m.B, m.log_step, m.D, m.C_re, m.C_im),
        uni,
        (bi.Lambda_re, bi.Lambda_im, bi.B, bi.log_step, bi.D, bi.C_re[:1], bi.C_im[:1]),
    )
    back = eqx.tree_at(lambda m: (m.C_re, m.C_im), uni, (bi.C_re[1:], bi.C_im[1:]))
    u = _u()
    ref = _call(uni, u) + _call(back, u[::-1])[::-1] - bi.D * u
    y_bi = _call(bi, u)
    assert jnp.max(jnp.abs(y_bi - ref)) < TOL
    # and the explicit double sum: Σ_{s>=t} 2Re(C̃₂ Λ̄^{s-t} B̄) u_s includes the current input
    Lb, Bb = (np.asarray(a) for a in bi.discrete())
    C2 = np.asarray(bi.C_re[1]) + 1j * np.asarray(bi.C_im[1])
    un = np.asarray(u)
    anti = np.stack([sum(2 * (C2 @ (Lb ** (s - t) * (Bb @ un[s]))).real for s in range(t, L)) for t in range(L)])
    assert np.max(np.abs(np.asarray(y_bi) - (_naive(uni, u) + anti))) < TOL
    with pytest.raises(ValueError, match="bidirectional"):
        bi.init_state()


@pytest.mark.parametrize("kw", [{}, {"disc": "bilinear", "conj_sym": False}])
def test_step_and_prefill_equal_scan(kw):
    layer = _layer(**kw)
    u = _u()
    y = _call(layer, u, 0.7)
    ys, state = _run_steps(layer, u, rate=0.7)
    assert jnp.max(jnp.abs(ys - y)) < TOL
    # prefill from a non-zero state == continuing to step
    yp, sp = _prefill(layer, u[:10], rate=0.7)
    assert jnp.max(jnp.abs(yp - y[:10])) < TOL
    y2, s2 = _prefill(layer, u[10:], sp, rate=0.7)
    assert jnp.max(jnp.abs(y2 - y[10:])) < TOL
    assert jnp.max(jnp.abs(s2 - state)) < TOL


def test_rate_rescales_step():
    layer = _layer()
    u = _u()
    shifted = eqx.tree_at(lambda m: m.log_step, layer, layer.log_step + np.log(2.5))
    assert jnp.max(jnp.abs(_call(layer, u, 2.5) - _call(shifted, u))) < TOL
    # ZOH: rate r gives Λ̄' = Λ̄^r exactly
    Lb1, _ = layer.discrete()
    Lb2, _ = layer.discrete(rate=2.0)
    assert jnp.max(jnp.abs(Lb2 - Lb1**2)) < 1e-14


def test_causality():
    layer = _layer()
    J = jax.jit(jax.jacobian(lambda u: layer(u)))(_u(L=10))  # (L, H, L, H)
    J = jnp.abs(J).sum(axis=(1, 3))
    assert jnp.all(jnp.triu(J, 1) == 0)
    assert jnp.all(jnp.diag(J) > 0)
    bi = _layer(bidirectional=True)
    Jb = jnp.abs(jax.jit(jax.jacobian(lambda u: bi(u)))(_u(L=10))).sum(axis=(1, 3))
    assert jnp.all(Jb[jnp.triu_indices(10, 1)] > 0)


def test_ptd_eigenbasis_reconstructs_perturbed_blocks():
    from ssm.ptd import legs_ptd_system

    Lam, V, Vinv = s5_eigenbasis("legs-ptd", P, 2, conj_sym=False)
    s = legs_ptd_system(P // 2)
    At = hippo.transition("legs", P // 2)[0] + s.E
    assert np.max(np.abs(V @ np.diag(Lam) @ Vinv - np.kron(np.eye(2), At))) < 1e-10
    Lh, Vh, Vih = s5_eigenbasis("legs-ptd", P, 2, conj_sym=True)
    assert Lh.shape == (P // 2,) and Vh.shape == (P, P // 2) and Vih.shape == (P // 2, P)
    assert np.all(Lh.real < 0) and np.all(Lh.imag < 0)


def test_init_options_and_errors():
    layer = _layer()
    assert layer.Lambda_re.shape == (P // 2,) and layer.B.shape == (P // 2, H, 2) and layer.C_re.shape == (1, H, P // 2)
    np.testing.assert_allclose(np.asarray(layer.Lambda_re), -0.5)  # HiPPO-N: Re Λ = -1/2
    mask = ssm.ssm_param_mask(layer)
    assert mask.B is True and mask.log_step is True and mask.C_re is False and mask.D is False
    for kw, msg in [
        ({"blocks": 3}, "blocks must divide"),
        ({"blocks": 8}, "must be even"),
        ({"init": "lin"}, "Unknown S5 init"),
        ({"C_init": "normal"}, "Unknown S5 C_init"),
        ({"disc": "euler"}, "disc"),
        ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min"),
    ]:
        with pytest.raises(ValueError, match=msg):
            _layer(**kw)
    # C init scales (the "trunc_standard_normal" quirk: LeCun variance 1/P per component, not 1)
    big = S5(64, 64, key=jax.random.key(5), conj_sym=False, C_init="complex_normal")
    assert 0.4 < float(jnp.var(big.C_re)) < 0.6
    tsn = S5(64, 64, key=jax.random.key(5), conj_sym=False)
    C = (tsn.C_re[0] + 1j * tsn.C_im[0]) @ jnp.asarray(s5_eigenbasis("hippo", 64, 1, False)[2])  # back to C = C̃ V^{-1}
    assert 0.5 / 64 < float(jnp.var(C.real)) < 1.5 / 64


def test_vmap_jit_compose():
    layer = _layer()
    u = jax.random.normal(jax.random.key(2), (4, L, H))
    y = eqx.filter_jit(jax.vmap(layer))(u)
    assert y.shape == (4, L, H)
    assert jnp.max(jnp.abs(y[2] - layer(u[2]))) < TOL


def test_adamw_reduces_loss():
    """A student S5 learns a teacher S5's input-output map; SSM parameters train (real pairs, no conjugation bug)."""
    teacher = S5(2, 8, key=jax.random.key(10))
    student = S5(2, 8, key=jax.random.key(11))
    u = jax.random.normal(jax.random.key(12), (4, 32, 2))
    target = jax.vmap(teacher)(u)

    def loss(m):
        return jnp.mean((jax.vmap(m)(u) - target) ** 2)

    opt = optax.adamw(1e-2, weight_decay=0.0)
    params, static = eqx.partition(student, eqx.is_array)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        l, g = jax.value_and_grad(lambda p: loss(eqx.combine(p, static)))(params)
        up, state = opt.update(g, state, params)
        return optax.apply_updates(params, up), state, l

    params, state, l0 = step(params, state)
    for _ in range(80):
        params, state, l1 = step(params, state)
    assert l1 < 0.2 * l0
    assert not jnp.allclose(params.Lambda_im, student.Lambda_im)  # the SSM parameters moved


@pytest.mark.slow  # ~10 s of CPU, mostly compiling the 16384-long scan and its transpose
def test_gradients_finite_long_sequence():
    layer = S5(2, 4, key=jax.random.key(0))
    u = jax.random.normal(jax.random.key(1), (16384, 2))
    g = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.mean(m(u) ** 2)))(layer)
    leaves = jax.tree.leaves(eqx.filter(g, eqx.is_array))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert float(jnp.abs(g.log_step).sum()) > 0
