"""The step floor's bookkeeping for the ssm.nn backbones (scripts/bench_floor.py ``step_plan``): SaShiMi
(``audio.sc09``), the adaptive-softmax LM (``lm.wt2``) and the pooled S4Torch classifier (``s4torch.smnist``). The
expected convolutions and matmuls are written out by hand from each preset's config (the papers' architectures, see
the comments), not read from the code; the elementwise executor is checked against a numpy re-statement; the step
suite runs end to end on a tiny SaShiMi. No timing is asserted."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import jax
import numpy as np
import pytest

from test_bench import _load, quick  # the scripts loaded as modules, as tests/test_bench.py does

floor = _load("bench_floor")


def _mm(shapes):
    """Multiset of ``(rows, d_in, d_out, bias, needs dx)``, names dropped."""
    return Counter(tuple(s[1:]) for s in shapes)


def _info(task, vocab, L, tokens=True, d_output=None):
    from ssm.data.base import DatasetInfo

    return DatasetInfo(task=task, d_input=vocab, d_output=d_output or vocab, seq_len=L, tokens=tokens)


def test_sashimi_plan_by_hand():
    import configs

    cfg = configs.get_preset("audio.sc09")  # d_model 64, 8 x [S4, FFN x2] per stage, pool [4, 4], expand 2
    B, L = 2, 16000
    plan = floor.step_plan(cfg, _info("generation", 256, L), B)
    # Levels: (L, 64), (L/4, 128), (L/16, 256). The model's fields: centre, then up stage 0 (outer), up stage 1.
    assert [c[1:] for c in plan.convs] == ([(B, 256, 1000, False)] * 8 + [(B, 64, 16000, False)] * 8
                                           + [(B, 128, 4000, False)] * 8)
    expected = Counter()
    for rows, h in ((B * 1000, 256), (B * 4000, 128), (B * 16000, 64)):
        expected[(rows, h, 2 * h, True, True)] += 8 * 2  # the S4 block's Linear(h, 2h) (GLU) and the FFN's first
        expected[(rows, 2 * h, h, True, True)] += 8  # the FFN's second
    expected[(B * 4000, 4 * 64, 128, True, True)] += 1  # DownPool 0: 4 steps x 64 channels -> 128
    expected[(B * 1000, 4 * 128, 256, True, True)] += 1  # DownPool 1
    expected[(B * 1000, 256, 4 * 128, True, True)] += 1  # UpPool 1: 256 -> 4 steps x 128
    expected[(B * 4000, 128, 4 * 64, True, True)] += 1  # UpPool 0
    expected[(B * L, 64, 256, True, True)] += 1  # decoder to the 256 mu-law classes
    assert _mm(plan.matmuls) == expected
    groups = Counter((shape, ops) for _, shape, ops in plan.groups)
    assert groups[((B, 1000, 256), (("scalarnorm",),))] == 16  # pre-norm of 8 S4 + 8 FFN blocks, centre
    assert groups[((B, 16000, 64), (("gelu",),))] == 8  # after each outer S4 (dropout 0: no mask)
    assert groups[((B, 4000, 2 * 128), (("glu",), ("add",)))] == 8
    assert groups[((B, 16000, 64), (("layernorm",),))] == 1 and groups[((B * L, 256), (("xent",),))] == 1
    assert groups[((256, 64), (("gather", B * L),))] == 1
    assert sum(1 for _, _, ops in plan.groups if ops == (("rownorm",),)) == 4  # weight-normed pooling linears


def test_sashimi_plan_matches_the_model():
    """Every weight matrix of a small SaShiMi is one matmul of the plan (nothing tied), and the plan's convolutions
    are its SSM layers in order (widths), with the no-SSM model keeping everything else."""
    import configs
    from ssm.model import make_model
    from ssm.layer_configs import S4DConfig

    base = configs.get_preset("audio.sc09")
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, d_model=4, n_layers=1, pool=(2, 2),
                                                              layer=S4DConfig(d_state=4)))
    info = _info("generation", 256, 16)
    model, _ = make_model(cfg.model, info, key=jax.random.key(0))
    plan = floor.step_plan(cfg, info, 1)
    layers = floor.ssm_layers(model)
    assert [l_.d_model for l_ in layers] == [c[2] for c in plan.convs] == [16, 4, 8]
    net = model.net
    weights = [net.decoder.weight] + [lin.linear.v for lin in net.backbone.down + net.backbone.up]
    for stack in (net.backbone.center, *net.backbone.up_stacks):
        for block in stack.blocks:
            sub = block.sublayer
            weights += [sub.out.weight] if hasattr(sub, "out") else [sub.linear1.weight, sub.linear2.weight]
    assert sorted(math.prod(w.shape) for w in weights) == sorted(s[2] * s[3] for s in plan.matmuls)
    bare = floor.without_ssm(model)  # (its step runs in test_step_worker_on_a_tiny_sashimi)
    assert floor.ssm_layers(bare) == [] and bare.net.decoder.weight is net.decoder.weight
    assert bare.net.backbone.down[1].linear.v is net.backbone.down[1].linear.v


def test_adaptive_lm_plan_by_hand():
    import configs

    cfg = configs.get_preset("lm.wt2")  # 6 x [S4, S4, FFN x4] x 512, cutoffs 2000/10000, div_val 4, tied
    B, L, V = 1, 1024, 33278
    n = B * L
    plan = floor.step_plan(cfg, _info("lm", V, L), B)
    assert [c[1:] for c in plan.convs] == [(B, 512, L, False)] * 12
    # Clusters [0, 2000), [2000, 10000), [10000, 33278) embed in 512, 128, 32 dimensions.
    expected = Counter({(n, 512, 1024, True, True): 12, (n, 512, 2048, True, True): 6, (n, 2048, 512, True, True): 6})
    for d, size in ((512, 2000), (128, 8000), (32, 23278)):
        expected[(n, d, 512, False, True)] += 1  # input embedding: every cluster projected at every position
        expected[(n, 512, d, False, True)] += 1  # softmax: h P_i
        expected[(n, d, size, True, True)] += 1  # the cluster's logits, every row of its table once
    expected[(n, 512, 2, True, True)] += 1  # the head's two tail-cluster logits
    assert _mm(plan.matmuls) == expected
    lse = sorted(shape for _, shape, ops in plan.groups if ops == (("lse",),))
    assert lse == sorted([(n, 2000), (n, 8000), (n, 23278), (n, 2)])
    drops = Counter(shape for _, shape, ops in plan.groups if ("dropout", 0.3) in ops)
    # dropout 0.3 after every S4's GELU (12) and the FFN's GELU (6, width 2048), on the 18 residual branches (the
    # 12 S4 ones before the GLU halves the width), on the three embedding lookups (tables (size, d)) and the three
    # softmax projections (h P_i)
    assert drops[(B, L, 512)] == 12 + 6 + 1 and drops[(B, L, 1024)] == 12 and drops[(B, L, 2048)] == 6
    assert drops[(2000, 512)] == drops[(8000, 128)] == drops[(23278, 32)] == 1
    assert drops[(B, L, 128)] == drops[(B, L, 32)] == 1 and sum(drops.values()) == 12 + 6 + 1 + 12 + 6 + 3 + 2


def test_pooled_plan_by_hand():
    import configs

    cfg = configs.get_preset("s4torch.smnist")  # 6 blocks x 128, avg_2 pooling, dropout 0.2, post-norm
    B = 16
    plan = floor.step_plan(cfg, _info("classification", 1, 784, tokens=False, d_output=10), B)
    lengths = [784, 392, 196, 98, 49, 24]  # halved after every block (S4Torch: pool while max(2, l//2) > 2)
    assert [c[1:] for c in plan.convs] == [(B, 128, n, False) for n in lengths]
    expected = Counter([(B * 784, 1, 128, True, False), (B, 128, 10, True, True)]
                       + [(B * n, 128, 128, True, True) for n in lengths])
    assert _mm(plan.matmuls) == expected
    post = [(shape, ops) for name, shape, ops in plan.groups if name.endswith("residual")]
    assert post == [((B, n, 128), (("add",), ("layernorm",), ("avgpool", 2), ("dropout", 0.2))) for n in lengths]
    assert ("mean over time", (B, 12, 128), (("mean_time",),)) in plan.groups


def test_pooled_plan_matches_the_model():
    import configs
    from ssm.model import make_model

    base = configs.get_preset("s4torch.smnist")
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, d_model=4, n_layers=5))
    info = _info("classification", 1, 20, tokens=False, d_output=10)
    model, _ = make_model(cfg.model, info, key=jax.random.key(0))
    plan = floor.step_plan(cfg, info, 1)
    # S4 is built for the length it sees: pooled after blocks 0 and 1 (20 -> 10 -> 5); from block 2 on S4Torch's
    # schedule stops pooling (max(2, 5 // 2) = 2 is not above the kernel 2)
    assert [l_.l_max for l_ in floor.ssm_layers(model)] == [c[3] for c in plan.convs] == [20, 10, 5, 5, 5]


def _naive_group(x, ops, params, consts):
    """numpy re-statement of the groups' ops (no dropout)."""
    from math import erf

    for op, p, c in zip(ops, params, consts):
        k = op[0]
        if k == "layernorm":
            mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
            x = (x - mu) / np.sqrt(var + 1e-5) * p[0] + p[1]
        elif k == "scalarnorm":
            mu, sd = x.mean(-1, keepdims=True), x.std(-1, keepdims=True)
            x = p[1] / sd * (x - mu + p[0])
        elif k == "gelu":
            x = 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))
        elif k == "glu":
            h = x.shape[-1] // 2
            x = x[..., :h] / (1 + np.exp(-x[..., h:]))
        elif k == "add":
            x = x + p
        elif k == "avgpool":
            n = x.shape[-2] // op[1]
            x = x[..., : n * op[1], :].reshape(*x.shape[:-2], n, op[1], x.shape[-1]).mean(-2)
        elif k == "mean_time":
            x = x.mean(-2)
        elif k == "rownorm":
            x = p[:, None] * x / np.sqrt((x**2).sum(1, keepdims=True))
        elif k == "gather":
            x = x[c]
        elif k in ("xent", "lse"):
            m = x.max(-1)
            lse = m + np.log(np.exp(x - m[:, None]).sum(-1))
            zt = x[np.arange(len(c)), c]
            x = lse - zt + (m if k == "lse" else (x.argmax(-1) == c))
    return x


def test_groups_floor_computes_the_stated_ops():
    groups = [
        ("a", (2, 6, 4), (("layernorm",), ("gelu",), ("add",), ("avgpool", 2))),
        ("b", (2, 5, 6), (("glu",), ("scalarnorm",), ("mean_time",))),
        ("c", (7, 3), (("gather", 5), ("rownorm",))),
        ("d", (4, 9), (("xent",),)),
        ("e", (4, 9), (("lse",),)),
    ]
    fn, (xs, params, consts, ws, k) = floor.groups_floor(groups, jax.random.key(0))
    params = jax.tree_util.tree_map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(3), a.shape), params)
    value, (gx, gp) = fn(xs, params, consts, ws, k)
    np_ = lambda t: jax.tree_util.tree_map(np.asarray, t)  # noqa: E731
    expected = sum(np.sum(_naive_group(np.asarray(x), ops, np_(p), np_(c)) * np.asarray(w))
                   for x, (_, _, ops), p, c, w in zip(xs, groups, params, consts, ws))
    np.testing.assert_allclose(float(value), expected, rtol=1e-10)
    assert [g.shape for g in gx] == [x.shape for x in xs] and len(gp) == len(groups)


def test_groups_floor_dropout_keeps_the_rate():
    fn, (xs, params, consts, ws, k) = floor.groups_floor([("d", (1000, 64), (("dropout", 0.25),))],
                                                         jax.random.key(0))
    _, (gx, _) = fn(xs, params, consts, ws, k)
    kept = np.asarray(gx[0]) != 0  # d/dx of w * mask * x / (1 - p) is 0 where dropped
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(np.asarray(gx[0])[kept], np.asarray(ws[0])[kept] / 0.75, rtol=1e-12)


@quick
def test_step_worker_on_a_tiny_sashimi(monkeypatch):
    import configs
    from ssm.layer_configs import S4DConfig

    bench = _load("bench")
    get = configs.get_preset

    def short(name):  # the SC09 preset at 32 samples
        cfg = get(name)
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seq_len=32))

    monkeypatch.setattr(configs, "get_preset", short)
    over = dict(d_model=4, n_layers=1, pool=(2,), ff=0, layer=S4DConfig(d_state=4))
    r = bench.step_worker("audio.sc09", batch=2, rounds=1, overrides=over)
    assert r["backbone"] == "sashimi" and (r["batch"], r["L"]) == (2, 32)
    assert [c[1:] for c in r["convs"]] == [[2, 8, 16, False], [2, 4, 32, False]]
    floor_ms = sum(v["ms"] for n, v in r["times"].items() if n.startswith("floor:"))
    assert r["floor_ms"] == pytest.approx(floor_ms) and "SSM kernels" in r["times"] and "no-SSM step" in r["times"]
    table = bench.format_step_table(r)
    assert "SaShiMi d_model 4, pool [2]" in table and "step / floor" in table


def test_model_setup_builds_every_backbone_batch():
    """The step suite's set-up on the backbones whose configs have no ``model.pool`` (adaptive LM, pooled)."""
    bench = _load("bench")
    *_, batch = bench._model_setup("s4torch.smnist", batch=2, overrides=dict(d_model=4, n_layers=1),
                                   precision="float32")
    assert batch["inputs"].shape == (2, 784, 1) and batch["targets"].shape == (2,)


@pytest.mark.parametrize("preset", ["audio.sc09", "lm.wt2", "s4torch.smnist"])
def test_describe_every_backbone(preset):
    import json

    import configs

    d = floor.describe(configs.get_preset(preset))
    assert d["size"] and d["d_state"] == 64 and d["norm"] in ("scalar", "layer") and json.dumps(d)
