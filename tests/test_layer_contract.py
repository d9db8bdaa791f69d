"""The contract every SSM layer keeps (ssm.layers.base), checked for every layer and its main options, in float64
with tight tolerances and in float32 with float32 tolerances:

- convolution/scan mode == ``step`` run L times == ``prefill`` (whole, and in two halves chained through the state),
  all at the same ``rate`` (2 in the float64 cases, 1 in the float32 ones);
- causality: changing the input at t changes no output before t;
- bidirectional == a causal pass + a causal pass on the reversed sequence, each built as its own causal layer from
  the bidirectional layer's parameters (one output matrix each), with the skip term counted once;
- parameter groups: ``ssm_param_names`` / ``dt_param_names`` name float array fields, dt ⊆ ssm, and
  ``ssm_param_mask`` marks exactly those;
- finite, nonzero gradients for every parameter;
- ``dtype``: the parameters, outputs and states are in that dtype (float32 under ``jax_enable_x64`` too), and the
  float32 layer equals the float64 layer with the same (float32-representable) parameters to float32 accuracy;
- ``init_state(rate=...)`` has one signature; a concrete layer without ``ssm_param_names`` fails when defined.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

import ssm
from ssm.layers.base import AbstractConvSSMLayer, AbstractSSMLayer

H, N, L = 3, 4, 12
KEY = jax.random.key(3)

# (id, class, options). S4 is built with l_max = 2L, so that at rate 2 an L-long input is within ceil(l_max/rate) (its
# longer-input path, C̃ doubling, is tested in test_s4.py).
CAUSAL = [
    ("s4-legs", ssm.S4, dict(l_max=2 * L)),
    ("s4-legt", ssm.S4, dict(l_max=2 * L, measure="legt")),
    ("s4-lagt", ssm.S4, dict(l_max=2 * L, measure="lagt")),
    ("s4-fout", ssm.S4, dict(l_max=2 * L, measure="fout")),
    ("s4d-zoh", ssm.S4D, dict()),
    ("s4d-lin-bilinear", ssm.S4D, dict(init="lin", disc="bilinear")),
    ("dss-exp", ssm.DSS, dict(kernel_type="exp")),
    ("s5", ssm.S5, dict()),
    ("s5-no-conj-sym", ssm.S5, dict(conj_sym=False, disc="bilinear")),
    ("hope", ssm.HOPE, dict()),
]
# Convolution-only (no recurrent mode): DSS-softmax and every bidirectional layer.
BIDIRECTIONAL = [
    ("s4", ssm.S4, dict(l_max=2 * L)),
    ("s4d", ssm.S4D, dict()),
    ("dss-softmax", ssm.DSS, dict()),
    ("dss-exp", ssm.DSS, dict(kernel_type="exp")),
    ("s5", ssm.S5, dict()),
    ("hope", ssm.HOPE, dict()),
]
# Fields with a leading direction axis (size 2 when bidirectional): the output matrices (HOPE: all its filters).
DIRECTION_FIELDS = {ssm.S4: ("C_re", "C_im"), ssm.S4D: ("C_re", "C_im"), ssm.DSS: ("W_re", "W_im"),
                    ssm.S5: ("C_re", "C_im"), ssm.HOPE: ("h", "log_dt")}
# float32: the least accurate path is the S4-FouT convolution (Cauchy sums + Woodbury at the roots of unity, ~1e-5).
DTYPES = {"float64": (jnp.float64, 1e-11), "float32": (jnp.float32, 2e-5)}
# float32 runs a subset (each case costs a compilation): every layer class once, and S4 with the measure whose float32
# recurrence is the hardest (FouT: barely decaying modes); options that only change values share the float64 checks.
FLOAT32_CAUSAL = ("s4-legs", "s4-fout", "s4d-zoh", "dss-exp", "s5", "hope")
FLOAT32_BIDIRECTIONAL = ("s4", "s5")


def _cases(cases, float32_ids):
    return [pytest.param(c, d, id=f"{c[0]}-{d}") for c in cases for d in DTYPES if d == "float64" or c[0] in float32_ids]


def _build(cls, opts, dtype):
    return cls(H, N, key=KEY, dtype=dtype, **opts)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


_call = eqx.filter_jit(lambda m, x: m(x))  # one compilation per layer structure, shared by the tests


@eqx.filter_jit
def _all_modes(layer, u, rate):
    """conv, stepped, prefilled (whole and in two halves), the states, and the gradient of a loss of the conv."""
    conv = layer(u, rate=rate)
    state0 = layer.init_state(rate=rate)
    s_end, stepped = jax.lax.scan(lambda s, x: layer.step(x, s, rate=rate)[::-1], state0, u)
    pre, p_end = layer.prefill(u, rate=rate)
    h = u.shape[0] // 2
    y1, s1 = layer.prefill(u[:h], rate=rate)
    y2, _ = layer.prefill(u[h:], s1, rate=rate)
    grad = eqx.filter_grad(lambda m: jnp.sum(m(u) ** 2))(layer)
    return conv, stepped, pre, jnp.concatenate([y1, y2]), (state0, s_end, p_end), grad


def _inputs(dtype):
    return jax.random.normal(jax.random.key(5), (L, H)).astype(dtype)


@pytest.mark.parametrize("case,dtype_name", _cases(CAUSAL, FLOAT32_CAUSAL))
def test_causal_layer_contract(case, dtype_name):
    _, cls, opts = case
    dtype, tol = DTYPES[dtype_name]
    layer = _build(cls, opts, dtype)
    params = jax.tree.leaves(eqx.filter(layer, eqx.is_array))
    assert params and all(p.dtype == dtype for p in params)
    u = _inputs(dtype)
    rate = 2.0 if dtype == jnp.float64 else 1.0
    conv, stepped, pre, halves, states, grad = _all_modes(layer, u, rate)

    # conv == step == prefill, all in the layer's dtype
    for y in (conv, stepped, pre, halves):
        assert y.dtype == dtype and y.shape == (L, H)
    for y in (stepped, pre, halves):
        assert _rel(y, conv) < tol, _rel(y, conv)
    for s in jax.tree.leaves(states):
        assert s.dtype in (dtype, jnp.complex64 if dtype == jnp.float32 else jnp.complex128)
    np.testing.assert_allclose(jax.tree.leaves(states[1])[0], jax.tree.leaves(states[2])[0],
                               atol=tol * float(jnp.abs(jax.tree.leaves(states[1])[0]).max()))

    # float32 is the float64 layer with the same parameters, to float32 accuracy
    if dtype == jnp.float32:
        lay64 = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_array(x) else x, layer)
        assert _rel(conv, _call(lay64, u.astype(jnp.float64))) < tol  # (rate 1)

    # causality: a change at t0 moves nothing before t0, and something at t0
    t0 = 7
    y = _call(layer, u)
    bumped = _call(layer, u.at[t0].add(1.0))
    scale = float(jnp.abs(y).max())
    assert float(jnp.abs(bumped[:t0] - y[:t0]).max()) <= tol * scale
    assert float(jnp.abs(bumped[t0] - y[t0]).max()) > 1e-3 * scale

    # finite gradients, nonzero for every parameter field
    for name, g in zip(_field_names(layer), jax.tree.leaves(eqx.filter(grad, eqx.is_array))):
        assert bool(jnp.all(jnp.isfinite(g))), name
        assert float(jnp.abs(g).max()) > 0, name


def _field_names(layer):
    return [n for n in layer.__dataclass_fields__ if eqx.is_array(getattr(layer, n))]


@pytest.mark.parametrize("case,dtype_name", _cases(BIDIRECTIONAL, FLOAT32_BIDIRECTIONAL))
def test_bidirectional_is_forward_plus_reversed_causal_pass(case, dtype_name):
    _, cls, opts = case
    dtype, tol = DTYPES[dtype_name]
    bi = _build(cls, dict(opts, bidirectional=True), dtype)
    fields = _field_names(bi)

    def causal(direction: int):
        # A causal layer holding the bidirectional layer's parameters, with the output matrix of one direction.
        one = _build(cls, opts, dtype)
        values = [getattr(bi, n)[direction : direction + 1] if n in DIRECTION_FIELDS[cls] else getattr(bi, n)
                  for n in fields]
        return eqx.tree_at(lambda m: [getattr(m, n) for n in fields], one, values)

    u = _inputs(dtype)
    run = _call
    y = run(bi, u)
    assert y.dtype == dtype
    ref = run(causal(0), u) + run(causal(1), u[::-1])[::-1] - bi.D * u
    assert _rel(y, ref) < tol, _rel(y, ref)
    with pytest.raises(ValueError, match="bidirectional"):
        bi.init_state(rate=1.0)


@pytest.mark.parametrize("case", CAUSAL + [("dss-softmax", ssm.DSS, {})], ids=[c[0] for c in CAUSAL] + ["dss-softmax"])
def test_parameter_groups(case):
    _, cls, opts = case
    layer = _build(cls, opts, None)
    names, dt_names = type(layer).ssm_param_names, type(layer).dt_param_names
    assert names and dt_names and set(dt_names) <= set(names)
    for n in names:
        assert eqx.is_inexact_array(getattr(layer, n)), n
    mask = ssm.ssm_param_mask(layer)
    dt_mask = ssm.ssm_param_mask(layer, dt_only=True)
    for n in _field_names(layer):
        assert all(jax.tree.leaves(getattr(mask, n))) == (n in names), n
        assert all(jax.tree.leaves(getattr(dt_mask, n))) == (n in dt_names), n
    assert isinstance(layer, AbstractSSMLayer)
    assert isinstance(layer, AbstractConvSSMLayer) == (cls is not ssm.S5)


def test_layer_without_parameter_names_fails_at_class_creation():
    class AbstractPartial(AbstractConvSSMLayer):  # abstract classes may leave them for their subclasses
        pass

    with pytest.raises(TypeError, match="ssm_param_names"):

        class Forgetful(AbstractPartial):
            d_model: int = 1
            bidirectional: bool = False
            D: Float[Array, " H"]
            dt_param_names: ClassVar[tuple[str, ...]] = ()

    with pytest.raises(TypeError, match="dt_param_names"):

        class NotASubset(AbstractPartial):
            d_model: int = 1
            bidirectional: bool = False
            D: Float[Array, " H"]
            ssm_param_names: ClassVar[tuple[str, ...]] = ("D",)
            dt_param_names: ClassVar[tuple[str, ...]] = ("log_dt",)


def test_bad_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype"):
        ssm.S4D(H, N, key=KEY, dtype=jnp.int32)
