"""Mixed precision of the ssm.nn backbones (ssm.precision, the residual model's policy): float32 models, a bfloat16
forward (Backbone(precision="mixed")) close to the float32 forward of the same parameters for SaShiMi and the
adaptive-softmax LM, its matmuls really in bfloat16, norms and SSM layers in float32, and its recurrent mode."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm
import ssm.nn as nn
from ssm.backbones import Backbone
from ssm.precision import mixed

F32 = jnp.float32
KEY = jax.random.PRNGKey(0)


def _sashimi(layer_cls=ssm.S4):
    kw = dict(d_state=4, n_ssm=1) if layer_cls is ssm.S4 else dict(d_state=4)
    return nn.SaShiMiModel(16, 8, dtype=F32, key=KEY, n_layers=1, pool=(2, 2), expand=2, ff=2, layer_cls=layer_cls,
                           layer_kwargs=kw)  # fmt: skip


def _lm():
    s4d = nn.ssm_sublayer(ssm.S4D, final_act="glu", dtype=F32, d_state=4)
    return nn.AdaptiveLM(24, 16, 1, l_max=16, pattern=[s4d, s4d, nn.ffn_sublayer(4, "gelu", 0.0, F32)],
                         cutoffs=(6, 12), div_val=2, dtype=F32, key=KEY)  # fmt: skip


def _float_leaves(tree):
    return [x for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array)) if jnp.issubdtype(x.dtype, jnp.floating)]


def _rel(a, b):
    return float(jnp.linalg.norm((a - b).ravel()) / jnp.linalg.norm(b.ravel()))


@pytest.mark.parametrize("make,outputs", [(_sashimi, "logits"), (_lm, "log_probs")], ids=["sashimi", "adaptive_lm"])
def test_mixed_forward_is_close_to_float32(make, outputs):
    net = make()
    assert {x.dtype for x in _float_leaves(net)} == {jnp.dtype(F32)}  # a float32 model (x64 is on in the tests)
    full, half = Backbone(net, outputs), Backbone(net, outputs, "mixed")
    tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 16), 0, 16, jnp.int32)
    run = eqx.filter_jit(lambda m, t: jax.vmap(lambda u: m(u, eqx.nn.State(m))[0])(t))
    y_full, y_half = run(full, tokens), run(half, tokens)
    assert y_full.dtype == y_half.dtype == F32  # outputs come back in float32
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation): a few layers give ~1e-2; a wrong
    # cast or a dropped term gives O(1); equality to ~1e-7 would mean nothing ran in bfloat16.
    err = _rel(y_half, y_full)
    assert 1e-5 < err < 3e-2, err
    if outputs == "log_probs":  # the adaptive softmax still normalises: every row sums to one
        np.testing.assert_allclose(np.exp(np.asarray(y_half, np.float64)).sum(-1), 1.0, rtol=1e-5)


def test_mixed_sashimi_matmuls_run_in_bfloat16_and_ssm_in_float32():
    net = _sashimi()
    half = mixed(net)
    is_layer = lambda x: isinstance(x, ssm.AbstractSSMLayer)  # noqa: E731
    layers = [x for x in jax.tree_util.tree_leaves(half, is_leaf=is_layer) if is_layer(x)]
    assert layers and all(x.dtype == F32 for x in _float_leaves(layers))
    assert half.decoder.weight.dtype == half.embedding.weight.dtype == half.backbone.down[0].linear.v.dtype == jnp.bfloat16
    assert half.backbone.norm.weight.dtype == F32
    jaxpr = jax.make_jaxpr(lambda t: Backbone(net, "logits", "mixed")(t, eqx.nn.State(net))[0])(jnp.zeros(16, jnp.int32))
    dots = [e for e in _eqns(jaxpr.jaxpr) if e.primitive.name == "dot_general"]
    ffts = [e for e in _eqns(jaxpr.jaxpr) if e.primitive.name == "fft"]
    assert dots and any(e.invars[0].aval.dtype == jnp.bfloat16 for e in dots)
    assert ffts and all(e.invars[0].aval.dtype in (F32, jnp.complex64) for e in ffts)


def test_mixed_sashimi_generates_through_its_recurrent_mode():
    """Prefill and steps of the bfloat16 model (what ssm.generate calls) follow its forward up to bfloat16 rounding."""
    net = _sashimi(ssm.S4D)  # S4D: a cheaper set-up; the policy is the same for every layer
    half = eqx.nn.inference_mode(Backbone(net, "logits", "mixed"))
    state = eqx.nn.State(half)
    tokens = jax.random.randint(jax.random.PRNGKey(2), (16,), 0, 16, jnp.int32)
    want = eqx.filter_jit(lambda m, t: m(t, state)[0])(half, tokens)
    got, cache = eqx.filter_jit(lambda m, t: m.prefill(t, state))(half, tokens[:8])
    assert got.dtype == F32 and _rel(got, want[:8]) < 3e-2
    jstep = eqx.filter_jit(lambda m, x, c: m.step(x, state, c))  # one compilation for every step
    steps = []
    for t in range(8, 16):
        y, cache = jstep(half, tokens[t], cache)
        steps.append(y)
    assert _rel(jnp.stack(steps), want[8:]) < 3e-2


def _eqns(jp):
    for e in jp.eqns:
        yield e
        for v in e.params.values():
            for sub in v if isinstance(v, (list, tuple)) else [v]:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from _eqns(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from _eqns(sub)


@pytest.mark.parametrize("backbone", ["sashimi", "adaptive_lm", "pooled"])
def test_backbone_configs_declare_the_precision_policy(backbone):
    # --model.precision on a backbone config reaches the Backbone wrapper; an unknown policy is refused by name.
    from ssm.config import AdaptiveLMConfig, PooledConfig, SaShiMiConfig
    from ssm.data.base import DatasetInfo
    from ssm.layer_configs import S4DConfig
    from ssm.model import make_model

    cls, info = {
        "sashimi": (SaShiMiConfig, DatasetInfo("generation", 16, 16, 16, True)),
        "adaptive_lm": (AdaptiveLMConfig, DatasetInfo("lm", 24, 24, 16, True)),
        "pooled": (PooledConfig, DatasetInfo("classification", 3, 4, 16, False)),
    }[backbone]
    small = dict(layer=S4DConfig(d_state=4), d_model=8, n_layers=1)
    if backbone == "adaptive_lm":
        small.update(cutoffs=(6, 12), div_val=2)
    if backbone == "sashimi":
        small.update(pool=(2, 2))
    assert cls(**small).precision == "float32"
    model, _ = make_model(cls(**small, precision="mixed"), info, key=KEY)
    assert isinstance(model, Backbone) and model.precision == "mixed"
    # refused by the config's own check, or first by the annotation checker the test suite installs
    with pytest.raises((ValueError, TypeError), match="precision"):
        cls(**small, precision="bf16")
