"""S4's kernel from FFTs of Vandermonde sequences (``kernel_form="vandermonde"``,
``ssm.kernels.dplr_kernel_vandermonde``): the layer equals the naive dense matrix-power system for every measure,
rank 2, odd lengths, bidirectional layers and C̃ doubling, and its gradients equal those of the Cauchy form; the
option is typed in the layer config and refused when unknown; in float32 the kernel stays close to the float64 one."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_s4 import naive_kernels, naive_output

import ssm
from ssm.layer_configs import S4Config

KEY = jax.random.key(0)
call = eqx.filter_jit(lambda m, u: m(u))


@pytest.mark.parametrize(
    "opts",
    [dict(measure="legs"), dict(measure="lagt", l_max=31), dict(measure="fout"), dict(measure="legt", n_ssm=3),
     dict(measure="legs", rank=2, bidirectional=True, l_max=15), dict(measure="fout", l_max=48)],
    ids=["legs", "lagt-odd", "fout", "legt-nssm3", "legs-r2-bidir", "fout-48"],  # 48 = 6 blocks of 8: ā^48 = (ā^8)^6
)
def test_layer_equals_dense_matrix_powers(opts):
    opts = {"l_max": 32, **opts}
    layer = ssm.S4(d_model=3, d_state=8, key=KEY, kernel_form="vandermonde", **opts)
    if opts.get("rank") == 2:  # a nonzero second low-rank row, so the rank-2 Woodbury is exercised
        layer = eqx.tree_at(lambda m: m.P_re, layer, layer.P_re.at[1].set(0.3))
    L = min(opts["l_max"], 20)
    u = np.random.default_rng(0).normal(size=(L, 3))
    np.testing.assert_allclose(call(layer, jnp.asarray(u)), naive_output(layer, u.copy()), atol=1e-10)


def test_doubled_length_equals_dense_matrix_powers():
    # An input longer than l_max doubles C̃ inside the call: kernel length 2 * l_max.
    layer = ssm.S4(d_model=2, d_state=6, key=KEY, l_max=8, kernel_form="vandermonde")
    u = np.random.default_rng(1).normal(size=(13, 2))
    np.testing.assert_allclose(call(layer, jnp.asarray(u)), naive_output(layer, u.copy()), atol=1e-10)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_equal_the_cauchy_form(bidirectional):
    opts = dict(d_model=4, d_state=8, key=KEY, l_max=64, measure="legt", bidirectional=bidirectional)
    cauchy, vander = ssm.S4(**opts), ssm.S4(**opts, kernel_form="vandermonde")
    u = jnp.asarray(np.random.default_rng(2).normal(size=(64, 4)))
    w = jnp.asarray(np.random.default_rng(3).normal(size=(64, 4)))
    grad = eqx.filter_jit(eqx.filter_grad(lambda m, u: jnp.sum(jax.nn.gelu(m(u)) * w)))
    ga, gb = grad(cauchy, u), grad(vander, u)
    for name in ssm.S4.ssm_param_names + ("C_re", "C_im", "D"):
        a, b = np.asarray(getattr(ga, name)), np.asarray(getattr(gb, name))
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9 * np.abs(a).max(), err_msg=name)


def test_option_is_typed_and_checked():
    cfg = S4Config(d_state=8, l_max=16, kernel_form="vandermonde")
    assert cfg.build(4, key=KEY).kernel_form == "vandermonde"
    with pytest.raises(ValueError, match="kernel_form"):
        ssm.S4(d_model=2, d_state=4, key=KEY, kernel_form="fft")


@pytest.mark.parametrize(
    "measure, bound", [("legs", 1e-5), ("legt", 4e-5), ("lagt", 1.5e-5), ("fout", 8e-5)]
)
def test_float32_kernel_close_to_float64_matrix_powers(measure, bound):
    # The powers ā^l by multiplication (ssm.kernels.expm1_powers), with ā^L from the same products: float32 kernel
    # against the float64 kernel of the same float32 parameters (dense matrix powers, test_s4.naive_kernels).
    # Measured here (2026-12-06): 3.8e-6 LegS, 1.8e-5 LegT, 7.1e-6 LagT, 4.0e-5 FouT; with the powers taken as
    # exp(l log ā) (before): 1.6e-4, 5.6e-4, 7.1e-5, 2.8e-3. The Cauchy form: 1.0e-6, 3.2e-6, 4.6e-6, 1.1e-5.
    L = 1024
    lay32 = ssm.S4(d_model=4, d_state=64, key=KEY, measure=measure, l_max=L, dtype=jnp.float32,
                   kernel_form="vandermonde")
    lay64 = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_array(x) else x, lay32)
    K = eqx.filter_jit(lambda m: m.kernel(L))(lay32)
    assert K.dtype == jnp.float32
    ref = naive_kernels(lay64, L)[0]
    err = float(np.linalg.norm(np.asarray(K, np.float64) - ref) / np.linalg.norm(ref))
    assert err < bound, err
