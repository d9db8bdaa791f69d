"""The benchmark harness (scripts/bench.py, scripts/bench_profile.py) on tiny sizes: every suite's worker
returns the fields its table and the JSON promise, the batch it times has the data interface's shapes, and
the tables render results and errors. No timing is asserted (speed is measured by the scripts)."""

from __future__ import annotations

import importlib.util
import math
import os

import jax
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", os.path.join(REPO, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("bench")

# The harness's workers on tiny models: their time is compilation, and no timing is asserted (conftest.py).
quick = pytest.mark.usefixtures("quick_compile")


def _finite_positive(r: dict, *keys: str) -> None:
    for k in keys:
        assert math.isfinite(r[k]) and r[k] > 0, (k, r[k])


@quick
def test_layer_worker_fields():
    r = bench.layer_worker("S4", 32, 2, 4, 4, 1, "float32")  # S4 is built with l_max = the length
    _finite_positive(r, "fwd_ms", "fwd_bwd_ms", "compile_fwd_s", "compile_fwd_bwd_s", "tokens_per_s_fwd_bwd")
    assert r["fwd_bwd_cpu_ms"] >= 0 and r["load_before"] >= 0 and r["load_after"] >= 0
    assert r["layer"] == "S4" and r["L"] == 32 and r["platform"] == "cpu"
    assert r["peak_rss_mib"] >= r["rss_before_compute_mib"] > 0
    line = bench.format_layer_table([r]).splitlines()[-1]
    assert line.split()[:2] == ["S4", "32"]


@quick
def test_model_worker_trains_the_preset_step():
    # The preset's structure (norm, pooling, task, sequence length 784) with a tiny S4D backbone.
    over = dict(layer="s4d", d_model=4, n_layers=1, d_state=2, measure=None)
    r = bench.model_worker("mnist.smnist", batch=2, steps=1, overrides=over, precision="float32", compile_only=False)
    assert (r["preset"], r["batch"], r["L"], r["n_layers"], r["d_model"]) == ("mnist.smnist", 2, 784, 1, 4)
    _finite_positive(r, "compile_s", "step_ms", "examples_per_s", "tokens_per_s", "params")
    assert r["tokens_per_s"] == pytest.approx(r["examples_per_s"] * 784)
    assert len(r["step_all_ms"]) == 1 and r["step_mean_ms"] == pytest.approx(r["step_all_ms"][0]) == r["step_ms"]
    assert math.isfinite(r["loss"])
    assert "mnist.smnist" in bench.format_model_table([r]).splitlines()[-1]
    assert r["grad_accum"] == 1
    r = bench.model_worker("mnist.smnist", batch=4, steps=1, overrides=over, precision="float32", compile_only=False,
                           grad_accum=2)
    assert r["grad_accum"] == 2 and r["batch"] == 4 and math.isfinite(r["loss"])
    assert "[2 micro-batches]" in bench.format_model_table([r]).splitlines()[-1]


def test_model_set_parses_overrides_and_names_bad_fields():
    got = bench.parse_model_set(["dropout=0", "layer=s4d", "measure=None", "prenorm=false", "d-model=32"])
    assert got == {"dropout": 0, "layer": "s4d", "measure": None, "prenorm": False, "d_model": 32}
    with pytest.raises(SystemExit, match="unknown model field 'width'.*d_model"):
        bench.parse_model_set(["width=3"])
    with pytest.raises(SystemExit, match="expected FIELD=VALUE"):
        bench.parse_model_set(["dropout"])


@quick
def test_generation_worker_reports_the_ratio():
    r = bench.generation_worker("s4d", 64, 4, 4, 1, 4, 1)
    _finite_positive(r, "recurrent_tokens_per_s", "conv_tokens_per_s", "ratio")
    assert r["ratio"] == pytest.approx(r["recurrent_tokens_per_s"] / r["conv_tokens_per_s"])
    assert bench.format_generation_table([r]).splitlines()[-1].startswith("s4d")


@pytest.mark.parametrize("task,tokens,pool", [("classification", False, "mean"), ("lm", True, "none"),
                                              ("retrieval", True, "mean"), ("regression", False, "none")])
def test_synthetic_batch_matches_the_data_interface(task, tokens, pool):
    from ssm.data.base import DatasetInfo

    info = DatasetInfo(task=task, d_input=5, d_output=3, seq_len=7, tokens=tokens)
    b = bench.synthetic_batch(info, 2, pool, np.random.default_rng(0))
    assert b["inputs"].shape == ((2, 7) if tokens else (2, 7, 5))
    assert b["inputs"].dtype == (np.int32 if tokens else np.float32)
    if tokens:
        assert b["inputs"].min() >= 0 and b["inputs"].max() < 5
    expected = {"classification": (2,), "retrieval": (2,), "lm": (2, 7), "regression": (2, 7, 3)}[task]
    assert b["targets"].shape == expected
    if task == "retrieval":
        assert b["inputs2"].shape == b["inputs"].shape and b["lengths2"].shape == (2,)


def test_tables_show_errors():
    assert "error: boom" in bench.format_layer_table([{"layer": "S5", "L": 8, "error": "boom"}])
    assert "error: boom" in bench.format_model_table([{"preset": "lra.pathx", "error": "boom"}])
    assert "error: boom" in bench.format_generation_table([{"layer": "s4d", "length": 8, "error": "boom"}])


@quick
def test_profile_parts_and_memory():
    prof = _load("bench_profile")
    layer = prof.make_layer("S4D", 4, 4, 16)
    u = jax.random.normal(jax.random.key(0), (2, 16, 4))
    times = prof.time_round_robin(prof.parts(layer, u), 1)
    assert {"layer fwd+bwd", "kernel fwd+bwd", "conv fwd+bwd"} <= set(times)
    assert all(w > 0 and c >= 0 for w, c in times.values())
    mem = prof.memory_analysis(layer, 2, 16, 4)
    assert mem["argument_mib"] > 0 and mem["temp_mib"] >= 0


# ------------------------------------------------------------------------- the step suite and its floor

floor = _load("bench_floor")
TINY = dict(layer="s4d", d_model=4, n_layers=2, d_state=4, measure=None)


def _naive_conv(u, k, D, bidirectional):
    """Direct sums (float64): ``y_t = sum_{s<=t} k0[t-s] u_s (+ sum_{s>=t} k1[s-t] u_s) + D u_t`` per channel,
    the bidirectional kernel given as its circular form ``k (H, 2L)`` = lags 0..L-1, then lag -(2L-j) at j."""
    B, H, L = u.shape
    y = D[None, :, None] * u
    for t in range(L):
        for s in range(L):
            if s <= t:
                y[:, :, t] += k[:, t - s] * u[:, :, s]
            if bidirectional and s > t:
                y[:, :, t] += k[:, 2 * L - (s - t)] * u[:, :, s]
    return y


@pytest.mark.parametrize("bidirectional", [False, True])
def test_conv_floor_is_the_convolution_the_model_needs(bidirectional):
    rng = np.random.default_rng(0)
    B, H, L = 2, 3, 9
    u, D = rng.standard_normal((B, H, L)), rng.standard_normal(H)
    k = rng.standard_normal((H, 2 * L if bidirectional else L))
    if bidirectional:
        k[:, L] = 0.0  # lag +-L cannot occur in a length-L sequence
    w = rng.standard_normal((B, H, L))
    expected = np.sum(_naive_conv(u, k, D, bidirectional) * w)
    got = floor.conv_loss(jax.numpy.asarray(u), jax.numpy.asarray(k), jax.numpy.asarray(D), jax.numpy.asarray(w))
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)
    fn, args = floor.conv_floor(2, B, H, L, bidirectional, jax.random.key(0))
    value, (gu, gk, gD) = fn(*args)
    assert len(gu) == len(gk) == 2 and gk[0].shape == (H, 2 * L if bidirectional else L)
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(g)) for g in gu + gk + gD)
    # The kernel's spectrum given (numpy's FFT of it), as the floor of a step in micro-batches takes it.
    got = floor.conv_loss(jax.numpy.asarray(u), jax.numpy.asarray(np.fft.rfft(k, n=2 * L)), jax.numpy.asarray(D),
                          jax.numpy.asarray(w))
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)
    convs = [("a", B, H, L, bidirectional)]
    fn, args = floor.conv_floor_shapes(convs, jax.random.key(0), spectra=True)
    _, (gu, gk, gD) = fn(*args)
    assert gk[0].shape == (H, L + 1) and np.iscomplexobj(gk[0]) and gu[0].shape == (B, H, L)
    fn, (ks, ws) = floor.kernel_fft_floor(convs, jax.random.key(0))
    value, gk = fn(ks, ws)
    assert gk[0].shape == ks[0].shape == (H, 2 * L if bidirectional else L)
    np.testing.assert_allclose(float(value), np.sum(np.real(np.fft.rfft(np.asarray(ks[0]), n=2 * L) * np.asarray(ws[0]))),
                               rtol=1e-5)


def test_matmul_shapes_follow_the_model():
    import dataclasses

    import configs
    from ssm.data.base import DatasetInfo

    cfg = configs.get_preset("mnist.smnist")
    info = DatasetInfo(task="classification", d_input=1, d_output=10, seq_len=784)
    shapes = floor.matmul_shapes(cfg, info, 50)
    assert shapes[0] == ("encoder", 50 * 784, 1, 256, True, False)
    assert [s[1:4] for s in shapes[1:5]] == [(50 * 784, 256, 512)] * 4 and len(shapes) == 6
    assert shapes[-1] == ("decoder", 50, 256, 10, True, True)
    # a residual token LM with a tied decoder (the lm.wt2 preset of 2026-12-06 before it became the adaptive LM)
    from ssm.config import ModelConfig

    lm = dataclasses.replace(cfg, model=ModelConfig(layer="s4", n_layers=12, d_model=512, pool="none",
                                                    tie_embeddings=True))
    info = DatasetInfo(task="lm", d_input=100, d_output=100, seq_len=16, tokens=True)
    shapes = floor.matmul_shapes(lm, info, 2)
    assert shapes[0][0].startswith("block") and len(shapes) == 13  # token inputs: a gather, no encoder matmul
    assert shapes[-1] == ("decoder (tied)", 32, 512, 100, False, True)
    fn, args = floor.matmul_floor(floor.matmul_shapes(cfg, DatasetInfo("classification", 1, 10, 8), 2),
                                  jax.random.key(0))
    value, (gw, gx) = fn(*args)
    assert np.isfinite(float(value)) and len(gw) == 6 and len(gx) == 5  # no input gradient for the encoder


def test_without_ssm_replaces_only_the_ssm_layers():
    import dataclasses

    import configs
    from ssm.data.base import DatasetInfo
    from ssm.model import make_model

    cfg = dataclasses.replace(configs.get_preset("mnist.smnist").model, **TINY)
    info = DatasetInfo(task="classification", d_input=1, d_output=10, seq_len=8)
    model, state = make_model(cfg, info, key=jax.random.key(0))
    bare = floor.without_ssm(model)
    assert len(floor.ssm_layers(model)) == 2 and floor.ssm_layers(bare) == []
    assert bare.blocks[1].out.weight is model.blocks[1].out.weight and bare.encoder.weight is model.encoder.weight
    # Identity SSM: a pre-norm block is x + GLU(out(GELU(LayerNorm(x)))); check block 0 by hand.
    x = jax.random.normal(jax.random.key(1), (8, 4))
    b = model.blocks[0]
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    z = (x - mu) / np.sqrt(var + b.norm.ln.eps) * b.norm.ln.weight + b.norm.ln.bias
    z = jax.nn.gelu(z, approximate=False) @ b.out.weight.T + b.out.bias
    expected = x + z[:, :4] * jax.nn.sigmoid(z[:, 4:])
    got, _ = bare.blocks[0](x, state)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-10, atol=1e-12)


def test_dataset_info_without_the_files(monkeypatch, tmp_path):
    import configs

    monkeypatch.setenv("DATA_PATH", str(tmp_path))  # empty: the vocabulary files are not there
    info = bench.dataset_info(configs.get_preset("lra.listops"))
    assert (info.task, info.d_input, info.d_output, info.seq_len, info.tokens) == ("classification", 18, 10, 2048, True)
    info = bench.dataset_info(configs.get_preset("lm.wt2"))
    assert (info.task, info.d_input, info.d_output, info.seq_len) == ("lm", 33278, 33278, 1024)


@quick
def test_step_worker_and_table():
    # The demo preset (L = 64, no data needed), made bidirectional with dropout and BatchNorm post-norm (the LRA
    # block), tiny.
    over = dict(TINY, n_layers=1, bidirectional=True, dropout=0.1, norm="batch", prenorm=False)
    r = bench.step_worker("demo.digits", batch=2, rounds=1, overrides=over)
    names = {"step", "no-SSM step", "SSM layers", "SSM kernels", "floor: FFT convolutions", "floor: dense matmuls",
             "floor: elementwise", "floor: optimizer update"}
    assert set(r["times"]) == names and set(r["compile"]) == names
    assert r["bidirectional"] and (r["batch"], r["L"], r["n_layers"]) == (2, 64, 1)
    floor_ms = sum(v["ms"] for n, v in r["times"].items() if n.startswith("floor:"))
    assert r["floor_ms"] == pytest.approx(floor_ms) and floor_ms > 0
    assert r["step_over_floor"] == pytest.approx(r["times"]["step"]["ms"] / floor_ms)
    assert r["ssm_part_ms"] == pytest.approx(r["times"]["step"]["ms"] - r["times"]["no-SSM step"]["ms"])
    nossm, conv = r["times"]["no-SSM step"]["ms"], r["times"]["floor: FFT convolutions"]["ms"]
    conservative = r["times"]["step"]["ms"] / (conv + min(nossm, floor_ms - conv))
    assert r["step_over_conservative_floor"] == pytest.approx(conservative)
    assert conservative >= r["step_over_floor"] * (1 - 1e-12)
    assert r["rewarm"] is True and "timed cold" not in bench.format_step_table(r)
    for v in r["times"].values():  # every round's call is kept, the median is theirs
        assert len(v["calls"]) == 1 and v["ms"] == v["calls"][0]["ms"] == v["min_ms"]
    r["command"] = "python scripts/bench.py --suites step --cfg demo.digits"
    table = bench.format_step_table(r)
    print(table)
    for text in ("step / floor", "step / conservative floor", "SSM part", "commit ", "load ",
                 "command: python scripts/bench.py", "bidirectional",
                 "floor: optimizer update", "step, every round: ", "sys ms", "steal ms"):
        assert text in table
    assert "error: boom" in bench.format_step_table({"preset": "x", "error": "boom"})


def test_step_worker_with_micro_batches():
    """``--grad-accum``: the step beside the same step with kernels per micro-batch; the batch-proportional floor
    rows timed at the micro-batch and counted ``grad_accum`` times, the optimizer update once."""
    r = bench.step_worker("demo.digits", batch=4, rounds=1, overrides=dict(TINY, n_layers=1), grad_accum=2)
    assert r["grad_accum"] == 2 and r["batch"] == 4
    assert {"step", "step, kernels per micro-batch"} <= set(r["times"]) and "SSM layers" not in r["times"]
    scaled = {n for n, v in r["times"].items() if "per_micro_batch_ms" in v}
    assert scaled == {"floor: FFT convolutions", "floor: dense matmuls", "floor: elementwise"}
    for n in scaled:
        v = r["times"][n]
        assert v["ms"] == pytest.approx(2 * v["per_micro_batch_ms"]) and v["per_micro_batch_ms"] == v["calls"][0]["ms"]
    assert r["convs"][0][1] == 2  # the floor's convolutions at the micro-batch
    # the kernels' FFTs, once per step as the step takes them, in the SSM part's floor
    kfft = r["times"]["floor: kernel FFTs"]
    assert "per_micro_batch_ms" not in kfft and kfft["ms"] > 0
    assert r["ssm_part_floor_ms"] == pytest.approx(r["times"]["floor: FFT convolutions"]["ms"] + kfft["ms"])
    assert r["floor_ms"] == pytest.approx(sum(v["ms"] for n, v in r["times"].items() if n.startswith("floor:")))
    table = bench.format_step_table(r)
    assert "batch 4 in 2 micro-batches" in table and "timed at the micro-batch (2), counted 2 times" in table


def test_interleave_keeps_every_call_and_what_disturbed_it():
    import jax.numpy as jnp

    bf = _load("bench_floor")
    seen = []
    x = jnp.ones((64, 64))
    f = jax.jit(lambda a: a @ a)
    rewarmed = []
    comps = {"a": bf.Timed(lambda a: f(a), lambda: x),
             "b": bf.Timed(lambda i: (seen.append(i), f(x))[1], lambda: len(seen)),
             "c": bf.Timed(lambda i: (rewarmed.append(i), f(x))[1], lambda: len(rewarmed), rewarm=True)}
    times = bf.interleave(comps, 3)
    assert seen == [0, 1, 2, 3]  # one warm-up call, then one per round, each with freshly prepared arguments
    assert rewarmed == list(range(7))  # and an untimed call before each timed one of a rewarm component
    for v in times.values():
        ms = [c["ms"] for c in v["calls"]]
        assert len(ms) == 3 and v["ms"] == sorted(ms)[1] and v["min_ms"] == min(ms)
        for c in v["calls"]:
            assert c["cpu_ms"] >= c["sys_ms"] >= 0 and c["minflt"] >= 0
            if bf.machine_cpu() is not None:  # Linux: other processes' CPU and steal are measured, never negative
                assert c["other_cpu_ms"] >= 0 and c["steal_ms"] >= 0
    # A result without per-call records (older JSON) renders as "-".
    assert bench._calls_median({"ms": 1.0}, "sys_ms") == "-"
    assert bench._calls_median({"calls": [{"sys_ms": 1.0}, {"sys_ms": 5.0}, {"sys_ms": 2.0}]}, "sys_ms") == "2"


@quick
def test_layer_floor_worker_and_table():
    r = bench.layer_floor_worker(["S4D", "S5"], 32, 2, 4, 4, 1)
    assert [x["layer"] for x in r["rows"]] == ["S4D", "S5"] and r["floor_ms"] > 0
    for x in r["rows"]:
        assert x["ratio"] == pytest.approx(x["ms"] / r["floor_ms"])
    table = bench.format_layer_floor_table(r)
    print(table)
    assert "S5" in table.splitlines()[-1] and "commit" in table


@quick
@pytest.mark.parametrize("preset,over", [
    ("audio.sc09", dict(d_model=4, n_layers=1, pool=(4,), expand=2)),
    ("lm.wt2", dict(d_model=64, n_layers=1)),
])
def test_model_worker_times_the_nn_backbones(preset, over):
    """``--suites models`` on the ssm.nn backbones (SaShiMi, the adaptive LM): their configs have no residual-stack
    fields (``norm``, ``scan_layers``); the row is filled from ``bench_floor.describe``."""
    r = bench.model_worker(preset, batch=1, steps=1, overrides=over, precision="float32", compile_only=False)
    assert (r["preset"], r["n_layers"], r["d_model"]) == (preset, 1, over["d_model"])
    _finite_positive(r, "compile_s", "step_ms", "step_mean_ms", "params")
    assert preset in bench.format_model_table([r]).splitlines()[-1]


def test_malloc_modes_set_the_workers_environment(monkeypatch):
    """``--malloc``: glibc passes the environment on untouched (a GLIBC_TUNABLES prefix included); hugepages and keep
    add the training programs' tunables (scripts/host_memory.py) where this platform has them."""
    import host_memory

    monkeypatch.setattr(host_memory.sys, "platform", "linux")
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    base = {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.check=0"}
    assert bench.worker_env("glibc", base) == base
    assert bench.worker_env("hugepages", base)["GLIBC_TUNABLES"] == "glibc.malloc.check=0:glibc.malloc.hugetlb=1"
    keep = bench.worker_env("keep", {"PATH": "/bin"})["GLIBC_TUNABLES"]
    assert keep == ":".join(host_memory.MODES["keep"]) and "glibc.malloc.arena_max=1" in keep
    # the user's own setting of one of the tunables wins
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert bench.worker_env("keep", mine) == mine
    assert bench._parser().parse_args([]).malloc == host_memory.DEFAULT == "hugepages"
