"""Mixed precision (``model.precision``): bfloat16 residual stream and matmuls, SSM layers, norms and FFTs in
(at least) float32, float32 parameters. A mixed-precision forward agrees with the full-precision forward of the
same parameters to bfloat16 accuracy, its matmuls really run in bfloat16, and training through it works."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.model import make_model, resolve_precision

INFO = DatasetInfo(task="classification", d_input=3, d_output=5, seq_len=32)
LM = DatasetInfo(task="lm", d_input=11, d_output=11, seq_len=32, tokens=True)


def _pair(info, **kw):
    cfg = ModelConfig(layer="s4d", d_model=16, n_layers=2, d_state=8, **kw)
    full, state = make_model(cfg, info, key=jax.random.PRNGKey(0))
    mixed, _ = make_model(dataclasses.replace(cfg, precision="mixed"), info, key=jax.random.PRNGKey(0))
    return full, mixed, state


def _inputs(info, n=4):
    rng = np.random.default_rng(0)
    if info.tokens:
        return jnp.asarray(rng.integers(0, info.d_input, (n, info.seq_len)), jnp.int32)
    return jnp.asarray(rng.standard_normal((n, info.seq_len, info.d_input)))


def _forward(model, state, x):
    return eqx.filter_vmap(lambda xi: model(xi, state)[0], in_axes=0)(x)


@pytest.mark.parametrize("info,kw", [(INFO, {}), (INFO, dict(prenorm=False, scan_layers=True)),
                                     (LM, dict(pool="none", tie_embeddings=True)), (INFO, dict(norm="batch"))])
def test_mixed_forward_matches_full_precision(info, kw):
    full, mixed, state = _pair(info, **kw)
    # Same parameters: precision is a static choice of how to compute, not of the initial values.
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(full, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(mixed, eqx.is_array))):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    x = _inputs(info)
    if kw.get("norm") == "batch":
        f = lambda m: eqx.filter_vmap(lambda xi, s: m(xi, s), in_axes=(0, None), out_axes=(0, None),  # noqa: E731
                                      axis_name="batch")(x, state)[0]
    else:
        f = lambda m: _forward(m, state, x)  # noqa: E731
    y_full, y_mixed = f(full), f(mixed)
    assert y_mixed.dtype == y_full.dtype  # logits come back in the parameters' dtype
    err = float(jnp.linalg.norm(y_mixed - y_full) / jnp.linalg.norm(y_full))
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 ≈ 2e-3 per operation): a few layers of it
    # give ~1e-2; a bug (wrong cast, dropped term) gives O(1).
    assert err < 3e-2, err
    assert err > 1e-5, "the mixed-precision forward computed in full precision"


def test_mixed_matmuls_run_in_bfloat16_and_ssm_in_float32():
    _, mixed, state = _pair(INFO)
    jaxpr = jax.make_jaxpr(lambda x: mixed(x, state)[0])(_inputs(INFO, 1)[0])

    def eqns(jp):
        for e in jp.eqns:
            yield e
            for v in e.params.values():
                subs = v if isinstance(v, (list, tuple)) else [v]
                for sub in subs:
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        yield from eqns(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        yield from eqns(sub)

    all_eqns = list(eqns(jaxpr.jaxpr))
    dots = [e for e in all_eqns if e.primitive.name == "dot_general"]
    ffts = [e for e in all_eqns if e.primitive.name == "fft"]
    assert any(e.outvars[0].aval.dtype == jnp.bfloat16 for e in dots)
    assert ffts and all(e.invars[0].aval.dtype != jnp.bfloat16 for e in ffts)
    assert all(e.outvars[0].aval.dtype in (jnp.complex64, jnp.complex128, jnp.float32, jnp.float64) for e in ffts)


def test_mixed_gradients_are_full_precision_and_close():
    full, mixed, state = _pair(INFO)
    x = _inputs(INFO)
    t = jnp.arange(4) % INFO.d_output

    def loss(m):
        logits = _forward(m, state, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), t[:, None], axis=1))

    g_full = eqx.filter_grad(loss)(full)
    g_mixed = eqx.filter_grad(loss)(mixed)
    leaves_f = jax.tree_util.tree_leaves(g_full)
    leaves_m = jax.tree_util.tree_leaves(g_mixed)
    assert [a.dtype for a in leaves_m] == [a.dtype for a in leaves_f]  # master weights keep their dtype
    flat_f = jnp.concatenate([a.ravel() for a in leaves_f])
    flat_m = jnp.concatenate([a.ravel() for a in leaves_m])
    assert bool(jnp.all(jnp.isfinite(flat_m)))
    assert float(jnp.linalg.norm(flat_m - flat_f) / jnp.linalg.norm(flat_f)) < 5e-2


def test_precision_option_validation_and_auto():
    # ValueError naming model.precision (or, under the test suite's run-time type checks, the Literal's error).
    with pytest.raises(Exception, match="precision"):
        ModelConfig(precision="bf16")
    assert resolve_precision("auto") == ("float32" if jax.default_backend() == "cpu" else "mixed")
    assert resolve_precision("mixed") == "mixed"
    model, _ = make_model(ModelConfig(layer="s4d", d_model=4, n_layers=1, d_state=2, precision="auto"), INFO,
                          key=jax.random.PRNGKey(0))
    assert model.precision == resolve_precision("auto")
