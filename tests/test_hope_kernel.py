"""HOPE's kernel by power-series doubling (``ssm.layers.hope.hope_kernel``) against its dense realization stepped one
sample at a time: ``K_0 = D̃``, ``K_k = C̃ x_{k-1}``, ``x_k = Ā x_{k-1}``, ``x_0 = B̄`` (numpy, float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm.layers import hope
from ssm.layers.hope import hope_kernel, hope_realization


def _dense_kernel(h, dt, L):
    Ab, Bb, C, Dt = (np.asarray(x, np.float64) for x in hope_realization(jnp.asarray(h), jnp.asarray(dt)))
    out = np.zeros(h.shape[:-1] + (L,))
    for g in range(h.shape[0]):
        x, out[g, 0] = Bb[g].copy(), Dt[g]
        for k in range(1, L):
            out[g, k] = C[g] @ x
            x = Ab[g] @ x
    return out


@pytest.mark.parametrize("L", [2, 3, 300, 2200])
def test_kernel_equals_stepped_realization(L):
    """L = 2200: T = 64, 35 row blocks, so both products of ``_series_mul`` run (FFTs for the early doubling steps,
    the Toeplitz matmul once a block has ``_MATMUL_MIN_ROWS`` rows: Q's last step, R's step from 16 to 32 rows)."""
    rng = np.random.default_rng(3)
    h, dt = rng.normal(size=(3, 4)), np.array([0.002, 0.15, 1.7])
    ref = _dense_kernel(h, dt, L)
    K = np.asarray(jax.jit(hope_kernel, static_argnums=2)(jnp.asarray(h), jnp.asarray(dt), L))
    assert K.shape == (3, L)
    assert np.max(np.abs(K - ref)) < 1e-13 * np.max(np.abs(ref))


def test_series_mul_both_paths_equal_toeplitz_product():
    rng = np.random.default_rng(4)
    n = 6
    p = rng.normal(size=(2, n))
    Tp = np.stack([np.array([[p[g, i - j] if i >= j else 0.0 for j in range(n)] for i in range(n)]) for g in range(2)])
    for rows in (1, hope._MATMUL_MIN_ROWS - 1, hope._MATMUL_MIN_ROWS):
        x = rng.normal(size=(2, rows, n))
        y = np.asarray(hope._series_mul(jnp.asarray(p), jnp.asarray(x)))
        assert np.max(np.abs(y - np.einsum("gij,gcj->gci", Tp, x))) < 1e-13


def test_float32_kernel_at_small_dt():
    """``1 - α²`` in closed form: at Δ = 1e-4 the float32 kernel is within a few float32 roundings of the float64
    one (written as ``1 - α·α`` it was 1.5e-5 here)."""
    rng = np.random.default_rng(5)
    h, dt, L = rng.normal(size=(4, 16)) / 4, np.array([1e-4, 1e-3, 0.1, 2.0]), 1100
    ref = _dense_kernel(h, dt, L)
    K = np.asarray(jax.jit(hope_kernel, static_argnums=2)(jnp.asarray(h, jnp.float32), jnp.asarray(dt, jnp.float32), L))
    assert K.dtype == np.float32
    assert np.all(np.linalg.norm(K - ref, axis=-1) / np.linalg.norm(ref, axis=-1) < 5e-6)


def test_float32_step_and_prefill_at_small_dt():
    """``hope_realization`` forms ``1 - α²`` as ``4Δ/(1+Δ)²`` too: at Δ = 1e-4 the float32 recurrence (``step`` and
    ``prefill``) follows the float64 convolution of the same parameters within a few float32 roundings (2.6e-7
    relative; the float32 convolution: 2.6e-7). Formed as ``αT + ST`` and ``e₁ - αĀe₁`` (``1 - α·α`` inside), the
    recurrence's error was 1.8e-6 here."""
    Hs, ns, Ls = 3, 16, 200
    layer = hope.HOPE(Hs, ns, key=jax.random.key(7))
    dt = np.array([1e-4, 3e-4, 1e-3])
    layer = eqx.tree_at(lambda m: m.log_dt, layer, jnp.asarray(np.log(dt))[None])
    u = np.asarray(jax.random.normal(jax.random.key(8), (Ls, Hs)))
    ref = np.asarray(jax.jit(lambda m, x: m(x))(layer, jnp.asarray(u)))  # float64 convolution
    f32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x) else x, layer)
    uf = jnp.asarray(u, jnp.float32)

    def run_steps(m, x):
        return jax.lax.scan(lambda s, ut: m.step(ut, s)[::-1], m.init_state(), x)[1]

    y_step = np.asarray(jax.jit(run_steps)(f32, uf))
    y_pre = np.asarray(jax.jit(lambda m, x: m.prefill(x)[0])(f32, uf))
    for y in (y_step, y_pre):
        assert y.dtype == np.float32
        assert np.all(np.linalg.norm(y - ref, axis=0) / np.linalg.norm(ref, axis=0) < 6e-7)
