"""S4 (DPLR) layer: convolution == O(N) Woodbury step == naive dense matrix-power kernel for every measure, C̃
semantics, length extension (C̃ doubling) == a layer built for the longer length == dense matrix powers, S4 with
P = 0 == S4D, prefill, rate (ceil(l_max/rate)), bidirectional, causality, gradients at L = 16384, float32 recurrence
against float64 for every measure, training."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ssm

KEY = jax.random.key(0)
# Jitted entry points: one compilation per shape instead of one per eager primitive keeps the file fast.
call = eqx.filter_jit(lambda m, u, rate=1.0: m(u, rate=rate))
kernel = eqx.filter_jit(lambda m, L: m.kernel(L))
prefill = eqx.filter_jit(lambda m, u, s=None, rate=1.0: m.prefill(u, s, rate=rate))


def full(x):
    return np.concatenate([x, np.conj(x)], axis=-1)


def dense_system(layer, rate=1.0):
    """Numpy per-channel dense (Ā, B̄, C_f) of the full N-state bilinear system; C_f = C̃_f (I - Ā^{L0})^{-1}."""
    reps = layer.d_model // layer.n_ssm
    dt = rate * np.exp(np.asarray(layer.log_dt))
    Lam = np.tile(-np.exp(np.asarray(layer.log_A_re)) + 1j * np.asarray(layer.A_im), (reps, 1))
    P = np.tile(np.asarray(layer.P_re) + 1j * np.asarray(layer.P_im), (1, reps, 1))
    B = np.tile(np.asarray(layer.B_re) + 1j * np.asarray(layer.B_im), (reps, 1))
    Ct = np.asarray(layer.C_re) + 1j * np.asarray(layer.C_im)
    L0 = math.ceil(layer.l_max / rate)
    out = []
    for h in range(layer.d_model):
        Pf = full(P[:, h])
        A = np.diag(full(Lam[h])) - Pf.T @ Pf.conj()
        N = A.shape[0]
        I = np.eye(N)
        Ab = np.linalg.solve(I - dt[h] / 2 * A, I + dt[h] / 2 * A)
        Bb = np.linalg.solve(I - dt[h] / 2 * A, dt[h] * full(B[h]))
        Cf = np.stack([np.linalg.solve((I - np.linalg.matrix_power(Ab, L0)).T, full(c[h])) for c in Ct])
        out.append((Ab, Bb, Cf))
    return out


def naive_kernels(layer, L, rate=1.0):
    sys = dense_system(layer, rate)
    K = np.zeros((sys[0][2].shape[0], layer.d_model, L))
    for h, (Ab, Bb, Cf) in enumerate(sys):
        x = Bb
        for k in range(L):
            K[:, h, k] = np.real(Cf @ x)
            x = Ab @ x
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


@eqx.filter_jit
def run_steps(layer, u, state=None, rate=1.0):
    state = layer.init_state(rate=rate) if state is None else state
    state, ys = jax.lax.scan(lambda s, x: layer.step(x, s, rate=rate)[::-1], state, u)
    return ys, state


@pytest.mark.parametrize(
    "opts",
    [dict(measure="legs"), dict(measure="lagt"), dict(measure="fout"), dict(measure="legt", n_ssm=3),
     dict(measure="legs", rank=2, n_ssm=3)],
    ids=["legs", "lagt", "fout", "legt-nssm3", "legs-r2-nssm3"],
)
def test_conv_equals_step_equals_naive_kernel(opts):
    opts = {"l_max": 32, **opts}
    layer = ssm.S4(d_model=3, d_state=8, key=KEY, **opts)
    if opts.get("rank") == 2:  # make the extra low-rank row nonzero so it is exercised
        layer = eqx.tree_at(lambda m: m.P_re, layer, layer.P_re.at[1].set(0.3))
    u = np.random.default_rng(0).normal(size=(20, 3))
    ref = naive_output(layer, u.copy())
    np.testing.assert_allclose(call(layer, jnp.asarray(u)), ref, atol=1e-10)
    ys, _ = run_steps(layer, jnp.asarray(u))
    np.testing.assert_allclose(ys, ref, atol=1e-10)
    yp, _ = prefill(layer, jnp.asarray(u))
    np.testing.assert_allclose(yp, ref, atol=1e-10)


def test_ctilde_parameterization():
    # At init C̃ = C (I - Ā^{l_max}) for a complex normal C; the kernel is the l_max-length kernel truncated.
    layer = ssm.S4(d_model=2, d_state=6, key=KEY, l_max=16)
    K16 = naive_kernels(layer, 16)[0]
    np.testing.assert_allclose(kernel(layer, 16), K16, atol=1e-10)
    np.testing.assert_allclose(kernel(layer, 9), K16[:, :9], atol=1e-10)
    with pytest.raises(TypeError):  # rate sets a static length: a traced rate is refused
        jax.jit(lambda r: layer.kernel(8, rate=r))(1.0)


def test_zero_low_rank_equals_s4d_bilinear():
    s4 = ssm.S4(d_model=3, d_state=8, key=KEY, n_ssm=3, l_max=24)
    s4 = eqx.tree_at(lambda m: (m.P_re, m.P_im), s4, (jnp.zeros_like(s4.P_re), jnp.zeros_like(s4.P_im)))
    s4d = ssm.S4D(d_model=3, d_state=8, key=KEY, disc="bilinear")
    C = dense_system(s4)  # true output matrix of the (now diagonal) S4 system
    Cm = np.stack([c[2][0, :4] for c in C])[None]
    s4d = eqx.tree_at(
        lambda m: (m.log_dt, m.log_A_re, m.A_im, m.B_re, m.B_im, m.C_re, m.C_im, m.D),
        s4d,
        (s4.log_dt, s4.log_A_re, s4.A_im, s4.B_re, s4.B_im, jnp.asarray(Cm.real), jnp.asarray(Cm.imag), s4.D),
    )
    u = jax.random.normal(KEY, (24, 3))
    np.testing.assert_allclose(call(s4, u), call(s4d, u), atol=1e-10)


def test_prefill_state_equals_stepped_state_and_rate():
    # rate 2: Δ doubled and C̃ read as the kernel of length ceil(l_max/2) = 20 (rate 1 is covered above).
    layer = ssm.S4(d_model=2, d_state=8, key=KEY, l_max=40)
    u = jnp.asarray(np.random.default_rng(1).normal(size=(20, 2)))
    ys, s_step = run_steps(layer, u, rate=2.0)
    np.testing.assert_allclose(ys, naive_output(layer, np.asarray(u).copy(), 2.0), atol=1e-10)
    np.testing.assert_allclose(call(layer, u, 2.0), ys, atol=1e-10)
    # two prefills chained through a nonzero state == one stepped run (equal halves: one compilation)
    y1, s1 = prefill(layer, u[:10], rate=2.0)
    y2, s2 = prefill(layer, u[10:], s1, rate=2.0)
    np.testing.assert_allclose(jnp.concatenate([y1, y2]), ys, atol=1e-10)
    np.testing.assert_allclose(s2["x"], s_step["x"], atol=1e-11)


def test_rate_length_is_ceil_so_subsampled_inputs_fit():
    # A length-16 signal subsampled by 3 (x[::3]) has ceil(16/3) = 6 samples: the kernel at rate 3 is read at length 6
    # (round would give 5 and refuse, or double the length); the naive reference uses L0 = ceil(l_max/rate) = 6.
    layer = ssm.S4(d_model=2, d_state=4, key=KEY, l_max=16)
    x = np.random.default_rng(7).normal(size=(16, 2))
    u = x[::3]
    assert u.shape[0] == 6
    ref = naive_output(layer, u.copy(), 3.0)
    np.testing.assert_allclose(call(layer, jnp.asarray(u), 3.0), ref, atol=1e-10)
    ys, _ = run_steps(layer, jnp.asarray(u), rate=3.0)
    np.testing.assert_allclose(ys, ref, atol=1e-10)


def test_length_extension_equals_layer_built_for_the_longer_length():
    # l_max = 8 asked for L = 40: C̃ is doubled 3 times (C̃ ← C̃(I + Ā^l), l = 8, 16, 32) to the length 64. The output
    # matrix C is unchanged, so the result is the layer built with l_max = 64 from the same draw of C (same key), and
    # the dense kernel C Ā^k B̄ with C = C̃(I - Ā^8)^{-1} from matrix powers (naive_kernels).
    short = ssm.S4(d_model=2, d_state=6, key=KEY, l_max=8, measure="legt")
    long = ssm.S4(d_model=2, d_state=6, key=KEY, l_max=64, measure="legt")
    K = kernel(short, 40)
    np.testing.assert_allclose(K, kernel(long, 40), atol=1e-10)
    np.testing.assert_allclose(K, naive_kernels(short, 40)[0], atol=1e-10)
    u = np.random.default_rng(8).normal(size=(40, 2))
    ref = naive_output(short, u.copy())
    np.testing.assert_allclose(call(short, jnp.asarray(u)), ref, atol=1e-10)
    ys, _ = run_steps(short, jnp.asarray(u))  # the recurrence runs past l_max unchanged
    np.testing.assert_allclose(ys, ref, atol=1e-10)
    # rate 2: doubled at rate 1 (as the official code), read at ceil(64/2) = 32 >= 20 > ceil(8/2) = 4
    np.testing.assert_allclose(call(short, jnp.asarray(u[:20]), 2.0), call(long, jnp.asarray(u[:20]), 2.0), atol=1e-10)
    # differentiable through the doubling
    g = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(m(jnp.asarray(u)) ** 2)))(short)
    leaves = jax.tree.leaves(eqx.filter(g, eqx.is_array))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves) and float(jnp.abs(g.log_A_re).max()) > 0
    # bidirectional: both output matrices are doubled
    bi = ssm.S4(d_model=2, d_state=6, key=KEY, l_max=8, measure="legt", bidirectional=True)
    np.testing.assert_allclose(kernel(bi, 40), naive_kernels(bi, 40), atol=1e-10)


def test_default_constructor_runs_at_path_x_length():
    # No l_max given (default 1024): L = 16384 doubles C̃ four times; same kernel as a layer built for 16384.
    layer = ssm.S4(2, 8, key=KEY, dt_min=1e-4)
    assert layer.l_max == 1024
    built = ssm.S4(2, 8, key=KEY, dt_min=1e-4, l_max=16384)
    K = kernel(layer, 16384)
    np.testing.assert_allclose(K, kernel(built, 16384), atol=1e-9 * float(jnp.abs(K).max()))
    y = call(layer, jax.random.normal(KEY, (16384, 2)))
    assert y.shape == (16384, 2) and bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize("measure", ["legs", "legt", "lagt", "fout"])
def test_float32_recurrence_matches_float64(measure):
    # The step's constants (C = C̃(I - Ā^L)^{-1}, Woodbury coefficients) are computed in float64 on the host, and the
    # step is in increment form: float32 stepping stays within ~1e-6 of the float64 system with the same (float32)
    # parameters. Forming C in float32 gave 1e-5 (LagT) to 1e-4 (FouT) here. The float32 convolution itself (Cauchy
    # sums + Woodbury at the roots of unity) is only good to ~1e-5 for FouT, which bounds step vs conv: its float32
    # error is the rounding of near-pole Cauchy terms that the Woodbury correction then cancels (ssm.kernels).
    L = 256
    lay32 = ssm.S4(d_model=4, d_state=16, key=KEY, measure=measure, l_max=L, dtype=jnp.float32)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(eqx.filter(lay32, eqx.is_array)))
    lay64 = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_array(x) else x, lay32)
    u = jax.random.normal(jax.random.key(1), (L, 4), jnp.float32)
    ref = np.asarray(call(lay64, u.astype(jnp.float64)))

    def rel(y):
        assert y.dtype == jnp.float32
        return float(np.linalg.norm(np.asarray(y, np.float64) - ref) / np.linalg.norm(ref))

    ys, state = run_steps(lay32, u)
    assert state["x"].dtype == jnp.complex64
    conv = call(lay32, u)
    # Measured here (2026-12-06): step 1.6e-7..2.7e-7, prefill 3.7e-7..1.0e-6, conv 2.1e-7 (LegS), 9.6e-7 (LegT),
    # 4.6e-7 (LagT), 6.9e-6 (FouT).
    assert rel(ys) < 5e-7, rel(ys)
    assert rel(prefill(lay32, u)[0]) < 2e-6
    assert rel(conv) < (1e-5 if measure == "fout" else 2e-6), rel(conv)
    assert float(np.linalg.norm(np.asarray(ys - conv, np.float64)) / np.linalg.norm(ref)) < rel(conv) + 5e-7


def test_precision_suite_rows():
    # scripts/bench_precision.py on a tiny shape: both modes in float64 are one system, float32 is float32-close.
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "bench_precision.py")
    spec = importlib.util.spec_from_file_location("bench_precision_script", path)
    bp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bp)
    rows = bp.measure(["S4 fout", "S4D"], d_model=2, d_state=8, length=32)
    assert [r["layer"] for r in rows] == ["S4 fout", "S4D"]
    for r in rows:
        assert r["step64-conv64"] < 1e-11, r
        assert all(0 < r[c] < 1e-4 for c in ("conv32-conv64", "step32-conv32", "step32-conv64")), r
    table = bp.format_table(rows, "abc1234")
    assert "commit abc1234" in table and table.splitlines()[-1].split()[0] == "S4D"


def test_bidirectional_is_forward_plus_reversed_pass():
    layer = ssm.S4(d_model=2, d_state=6, key=KEY, l_max=15, bidirectional=True)
    u = np.random.default_rng(2).normal(size=(15, 2))
    y = call(layer, jnp.asarray(u))
    np.testing.assert_allclose(y, naive_output(layer, u.copy()), atol=1e-10)
    k = kernel(layer, 15)
    fwd = ssm.kernels.fft_conv(jnp.asarray(u), k[0])
    bwd = ssm.kernels.fft_conv(jnp.asarray(u[::-1]), k[1])[::-1]
    np.testing.assert_allclose(y, fwd + bwd + layer.D * u, atol=1e-12)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(jnp.zeros(2), None)


def test_causality():
    layer = ssm.S4(d_model=2, d_state=4, key=KEY, l_max=12)
    u = jnp.asarray(np.random.default_rng(3).normal(size=(12, 2)))
    Jts = np.asarray(jax.jit(jax.jacrev(layer))(u)).transpose(0, 2, 1, 3)
    upper = np.triu(np.ones((12, 12)), 1).astype(bool)
    assert np.abs(Jts[upper]).max() < 1e-14 * np.abs(Jts).max()
    assert np.abs(Jts[~upper]).max() > 0.1


def test_gradients_finite_at_path_x_length_all_layers():
    # One small-H run per convolutional layer at L = 16384 (frequency blocks and lax.map under grad for S4).
    u = jax.random.normal(KEY, (16384, 2))
    layers = [
        ssm.S4(d_model=2, d_state=8, key=KEY, l_max=16384, dt_min=1e-4),
        ssm.S4D(d_model=2, d_state=8, key=KEY, dt_min=1e-4),
        ssm.DSS(d_model=2, d_state=8, key=KEY, dt_min=1e-4),
    ]
    for layer in layers:
        g = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.mean(m(u) ** 2)))(layer)
        leaves = jax.tree.leaves(eqx.filter(g, eqx.is_array))
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves), type(layer).__name__
        assert all(float(jnp.abs(x).max()) > 0 for x in leaves), type(layer).__name__


def test_adamw_reduces_regression_loss():
    rng = np.random.default_rng(5)
    u = jnp.asarray(rng.normal(size=(4, 32, 3)))
    teacher = ssm.S4(d_model=3, d_state=8, key=jax.random.key(7), l_max=32)
    y_true = jax.vmap(teacher)(u)
    layer = ssm.S4(d_model=3, d_state=8, key=KEY, l_max=32)
    params, static = eqx.partition(layer, eqx.is_array)
    opt = optax.adamw(3e-2, weight_decay=0.0)
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(lambda p: jnp.mean((jax.vmap(eqx.combine(p, static))(u) - y_true) ** 2))(p)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    losses = []
    for _ in range(60):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    trained = eqx.combine(params, static)
    assert float(jnp.abs(trained.P_im - layer.P_im).max()) > 0  # the complex low-rank factor does train


def test_vmap_jit_and_param_mask():
    layer = ssm.S4(d_model=2, d_state=4, key=KEY, l_max=10)
    u = jax.random.normal(KEY, (3, 10, 2))
    yb = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(layer, u)
    np.testing.assert_allclose(yb, jnp.stack([call(layer, x) for x in u]), atol=1e-12)
    mask = ssm.ssm_param_mask(layer)
    assert all(getattr(mask, n) is True for n in ("log_dt", "log_A_re", "A_im", "P_re", "P_im", "B_re", "B_im"))
    assert mask.C_re is False and mask.D is False


def test_bad_options():
    with pytest.raises(ValueError, match="bilinear"):
        ssm.S4(d_model=2, d_state=4, key=KEY, disc="zoh")
    with pytest.raises(ValueError, match="rank >= 2"):
        ssm.S4(d_model=2, d_state=4, key=KEY, measure="legt", rank=1)
    with pytest.raises(ValueError, match="n_ssm"):
        ssm.S4(d_model=4, d_state=4, key=KEY, n_ssm=3)
    with pytest.raises(ValueError, match="Unknown HiPPO measure"):
        ssm.S4(d_model=2, d_state=4, key=KEY, measure="legx")


def test_host_setup_under_vmap_and_grad():
    # init_state's float64 host set-up (jax.pure_callback) works for a vmapped stack of layers (scan_layers) and is
    # differentiable (custom JVP from the same formulas): the gradient through prefill equals the convolution's.
    layers = [ssm.S4(2, 4, key=k, l_max=8) for k in jax.random.split(jax.random.key(4), 3)]
    stack = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    states = eqx.filter_jit(eqx.filter_vmap(lambda m: m.init_state(rate=1.0)))(stack)
    one = layers[1]
    np.testing.assert_array_equal(states["C"][1], one.init_state()["C"])
    u = jax.random.normal(KEY, (8, 2))
    g_pre = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(m.prefill(u)[0] ** 2)))(one)
    g_conv = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(m(u) ** 2)))(one)
    for a, b in zip(jax.tree.leaves(eqx.filter(g_pre, eqx.is_array)), jax.tree.leaves(eqx.filter(g_conv, eqx.is_array))):
        np.testing.assert_allclose(a, b, atol=1e-11 * float(jnp.abs(b).max()))
