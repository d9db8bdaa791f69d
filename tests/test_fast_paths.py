"""Fast paths tested equal, in float64, to the computation they replace (outputs, gradients, state)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm import kernels

from ssm.model import Norm


def _vmapped(fn):
    return eqx.filter_vmap(fn, in_axes=(0, None), out_axes=(0, None), axis_name="batch")


def test_batchnorm_in_time_major_layout_equals_equinox_batchnorm_on_the_transpose():
    # Norm("batch") normalises (L, H) directly; the reference is Equinox's BatchNorm on (H, L), as the model did
    # before. Same outputs, input and parameter gradients, running statistics and inference outputs.
    B, L, H, m = 4, 6, 3, 0.8
    norm, state = eqx.nn.make_with_state(Norm)("batch", H, m)
    norm = eqx.tree_at(lambda n: (n.bn.weight, n.bn.bias), norm,
                       (jnp.array([1.5, -0.5, 2.0]), jnp.array([0.1, 0.2, -0.3])))
    bn = norm.bn
    x1 = jax.random.normal(jax.random.PRNGKey(0), (B, L, H)) * jnp.array([1.0, 4.0, 0.2]) + jnp.array([0.0, 3.0, -1.0])
    x2 = 2.0 * jax.random.normal(jax.random.PRNGKey(1), (B, L, H)) + 0.5
    w = jax.random.normal(jax.random.PRNGKey(2), (B, L, H))

    def new(n, x, s):
        return n(x, s)

    def ref(n, x, s):
        y, s = n.bn(x.T, s)
        return y.T, s

    def loss(nx, f, s):
        n, x = nx
        y, s = _vmapped(lambda x, s: f(n, x, s))(x, s)
        return jnp.sum(y * w), (y, s)

    grad = eqx.filter_value_and_grad(loss, has_aux=True)

    s_new = s_ref = state
    for x in (x1, x2):
        (_, (y_new, s_new2)), g_new = grad((norm, x), new, s_new)
        (_, (y_ref, s_ref2)), g_ref = grad((norm, x), ref, s_ref)
        assert y_new.dtype == jnp.float64
        np.testing.assert_allclose(y_new, y_ref, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(g_new[1], g_ref[1], rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(g_new[0].bn.weight, g_ref[0].bn.weight, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(g_new[0].bn.bias, g_ref[0].bn.bias, rtol=1e-11, atol=1e-12)
        assert int(s_new2.get(bn.batch_counter)) == int(s_ref2.get(bn.batch_counter))
        for a, b in zip(s_new2.get(bn.batch_state_index), s_ref2.get(bn.batch_state_index)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
        s_new, s_ref = s_new2, s_ref2
    assert int(s_new.get(bn.batch_counter)) == 2
    # Inference: the running statistics, no batch axis needed.
    inf = eqx.nn.inference_mode(norm)
    x3 = jax.random.normal(jax.random.PRNGKey(3), (L, H))
    np.testing.assert_allclose(inf(x3, s_new)[0], ref(inf, x3, s_ref)[0], rtol=1e-13, atol=1e-13)


def test_batchnorm_keeps_a_low_precision_input_dtype():
    norm, state = eqx.nn.make_with_state(Norm)("batch", 3, 0.9)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3)).astype(jnp.bfloat16)
    y, state = _vmapped(norm)(x, state)
    assert y.dtype == jnp.bfloat16
    assert state.get(norm.bn.batch_state_index)[0].dtype == norm.bn.weight.dtype


# -------------------------------------------------------------------------------------------------------------
# The chunked diagonal convolution (ssm.kernels.diagonal_chunked_conv) against a plain recurrence and the FFT path


def _diagonal_system(H, M, d, seed):
    rng = np.random.default_rng(seed)
    log_z = -rng.uniform(0.01, 0.5, (H, M)) + 1j * rng.normal(size=(H, M))
    c = rng.normal(size=(d, H, M)) + 1j * rng.normal(size=(d, H, M))
    return log_z, c


def _recurrence_output(u, log_z, c, scale):
    # x_t = z x_{t-1} + u_t per mode, y_t = scale · Re Σ_m c_m x_t,m: the recurrence the kernel K_l = scale Re Σ c z^l
    # comes from, stepped one sample at a time in numpy.
    L, H = u.shape
    z = np.exp(log_z)
    x = np.zeros(log_z.shape, complex)
    y = np.zeros((L, H))
    for t in range(L):
        x = z * x + u[t][:, None]
        y[t] = scale * np.sum(c * x, axis=-1).real
    return y


_chunked = jax.jit(kernels.diagonal_chunked_conv, static_argnames=("scale", "chunk"))


@pytest.mark.parametrize("L, M, chunk, d", [(37, 3, 8, 1), (40, 2, 10, 2), (5, 4, 64, 1)])
def test_chunked_diagonal_conv_equals_the_recurrence(L, M, chunk, d):
    H = 3
    log_z, c = _diagonal_system(H, M, d, seed=L)
    rng = np.random.default_rng(100 + L)
    u, D = rng.normal(size=(L, H)), rng.normal(size=(H,))
    y = _chunked(jnp.asarray(u), jnp.asarray(log_z), jnp.asarray(c), jnp.asarray(D), scale=2.0, chunk=chunk)
    assert y.dtype == jnp.float64 and y.shape == (L, H)
    ref = _recurrence_output(u, log_z, c[0], 2.0) + D * u
    if d == 2:  # the backward half: the same recurrence run from the end, c[1] as its output matrix
        ref += _recurrence_output(u[::-1], log_z, c[1], 2.0)[::-1]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_chunked_diagonal_conv_gradients_equal_the_fft_path():
    H, M, L, d = 2, 3, 45, 2  # both halves of a bidirectional convolution; L not a multiple of the chunk
    log_z, c = _diagonal_system(H, M, d, seed=7)
    rng = np.random.default_rng(8)
    u, D, w = rng.normal(size=(L, H)), rng.normal(size=(H,)), rng.normal(size=(L, H))
    args = (jnp.asarray(log_z), jnp.asarray(c), jnp.asarray(u), jnp.asarray(D))

    def chunked(lz, cc, uu, DD):
        return jnp.sum(jnp.sin(kernels.diagonal_chunked_conv(uu, lz, cc, DD, scale=2.0, chunk=8)) * w)

    def fft(lz, cc, uu, DD):
        return jnp.sum(jnp.sin(kernels.fft_conv(uu, 2 * kernels.vandermonde(cc, lz, L), DD)) * w)

    g_chunk = jax.jit(jax.value_and_grad(chunked, argnums=(0, 1, 2, 3)))(*args)
    g_fft = jax.jit(jax.value_and_grad(fft, argnums=(0, 1, 2, 3)))(*args)
    np.testing.assert_allclose(g_chunk[0], g_fft[0], rtol=1e-12)
    g_chunk, g_fft = g_chunk[1], g_fft[1]
    for a, b in zip(g_chunk, g_fft):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)


def test_chunked_diagonal_conv_rejects_bad_shapes():
    log_z, c = _diagonal_system(3, 2, 3, seed=0)
    with pytest.raises(ValueError, match="1\\|2, H, M"):
        kernels.diagonal_chunked_conv(jnp.zeros((8, 3)), jnp.asarray(log_z), jnp.asarray(c))


# -------------------------------------------------------------------------------------------------------------
# A bidirectional diagonal layer's two kernels from one Vandermonde pass


@pytest.mark.parametrize("disc", ["zoh", "bilinear", "dss_exp", "dss_softmax"])
def test_diagonal_kernel_of_stacked_output_matrices_equals_powers(disc):
    # K[d]_l = f · Re Σ_m C[d]_m B̄_m Ā_m^l, written with explicit powers of the discretized modes per output matrix.
    H, M, L = 2, 3, 12  # 12 has a divisor near √12: DSS-softmax takes its one-matmul path
    rng = np.random.default_rng(11)
    dt = rng.uniform(0.05, 0.3, H)
    A = -rng.uniform(0.1, 1.0, (H, M)) + 1j * rng.normal(size=(H, M))
    B = rng.normal(size=(H, M)) + 1j * rng.normal(size=(H, M))
    C = rng.normal(size=(2, H, M)) + 1j * rng.normal(size=(2, H, M))
    if disc == "dss_softmax":
        A[0, 0] = 0.4 + 1j  # a growing mode (allowed in DSS-softmax)
    K = jax.jit(kernels.diagonal_kernel, static_argnums=(4, 5))(
        jnp.asarray(dt), jnp.asarray(A), jnp.asarray(B), jnp.asarray(C), L, disc)
    assert K.shape == (2, H, L)
    dA = dt[:, None] * A
    l = np.arange(L)
    if disc == "bilinear":
        Ab = (1 + dA / 2) / (1 - dA / 2)
        coef, base, f = dt[:, None] / (1 - dA / 2) * B, Ab, 2.0
    else:
        coef, base, f = (np.exp(dA) - 1) / A * B, np.exp(dA), (2.0 if disc == "zoh" else 1.0)
    if disc == "dss_softmax":
        coef = coef / (np.exp(L * dA) - 1)
    for i in range(2):
        ref = f * np.real(np.einsum("hm,hml->hl", C[i] * coef, base[..., None] ** l))
        np.testing.assert_allclose(K[i], ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("precision", ["float32", "mixed"])
def test_one_channel_encoder_equals_the_linear_map_per_step(precision):
    """A one-channel input is encoded as ``x_t·w + b`` by broadcasting (``SequenceModel._encode``): the same numbers
    as ``eqx.nn.Linear`` applied at every step (float32, bitwise; mixed precision in bfloat16), and in float64 the
    same gradients w.r.t. the weight, the bias and the input."""
    from ssm.config import ModelConfig
    from ssm.data.base import DatasetInfo
    from ssm.model import make_model
    from ssm.precision import cast_floats

    info = DatasetInfo(task="classification", d_input=1, d_output=3, seq_len=16)
    cfg = ModelConfig(layer="s4d", d_model=8, n_layers=1, d_state=4, norm="layer", precision=precision)
    model, _ = make_model(cfg, info, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 1))
    y = model._encode(x)
    if precision == "mixed":
        ref = jax.vmap(cast_floats(model.encoder, jnp.bfloat16))(x.astype(jnp.bfloat16))
        assert y.dtype == jnp.bfloat16
    else:
        ref = jax.vmap(model.encoder)(x)
    assert y.shape == (16, 8)
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(ref, np.float32))

    if precision == "mixed":
        return
    with jax.enable_x64():
        m64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)
        x64 = x.astype(jnp.float64)
        w = jax.random.normal(jax.random.PRNGKey(2), (16, 8), jnp.float64)

        def loss(enc, x, fn):
            return jnp.sum(fn(eqx.tree_at(lambda m: m.encoder, m64, enc), x) * w)

        fast = jax.grad(loss, argnums=(0, 1))(m64.encoder, x64, lambda m, x: m._encode(x))
        # the written-out map: y_th = W_h0 x_t0 + b_h, an independent statement of the same linear map
        slow = jax.grad(loss, argnums=(0, 1))(m64.encoder, x64, lambda m, x: x @ m.encoder.weight.T + m.encoder.bias)
        for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(slow)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(np.asarray(fast[0].weight)[:, 0], np.asarray(w.T @ x64[:, 0]), rtol=1e-13)
