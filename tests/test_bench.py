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


def _finite_positive(r: dict, *keys: str) -> None:
    for k in keys:
        assert math.isfinite(r[k]) and r[k] > 0, (k, r[k])


def test_layer_worker_fields():
    r = bench.layer_worker("S4", 32, 2, 4, 4, 1, "float32")  # S4 is built with l_max = the length
    _finite_positive(r, "fwd_ms", "fwd_bwd_ms", "compile_fwd_s", "compile_fwd_bwd_s", "tokens_per_s_fwd_bwd")
    assert r["fwd_bwd_cpu_ms"] >= 0 and r["load_before"] >= 0 and r["load_after"] >= 0
    assert r["layer"] == "S4" and r["L"] == 32 and r["platform"] == "cpu"
    assert r["peak_rss_mib"] >= r["rss_before_compute_mib"] > 0
    line = bench.format_layer_table([r]).splitlines()[-1]
    assert line.split()[:2] == ["S4", "32"]


def test_model_worker_trains_the_preset_step():
    # The preset's structure (norm, pooling, task, sequence length 784) with a tiny S4D backbone.
    over = dict(layer="s4d", d_model=4, n_layers=1, d_state=2, measure=None)
    r = bench.model_worker("mnist.smnist", batch=2, steps=1, overrides=over, precision="float32", compile_only=False)
    assert (r["preset"], r["batch"], r["L"], r["n_layers"], r["d_model"]) == ("mnist.smnist", 2, 784, 1, 4)
    _finite_positive(r, "compile_s", "step_ms", "examples_per_s", "tokens_per_s", "params")
    assert r["tokens_per_s"] == pytest.approx(r["examples_per_s"] * 784)
    assert math.isfinite(r["loss"])
    assert "mnist.smnist" in bench.format_model_table([r]).splitlines()[-1]


def test_model_set_parses_overrides_and_names_bad_fields():
    got = bench.parse_model_set(["dropout=0", "layer=s4d", "measure=None", "prenorm=false", "d-model=32"])
    assert got == {"dropout": 0, "layer": "s4d", "measure": None, "prenorm": False, "d_model": 32}
    with pytest.raises(SystemExit, match="unknown model field 'width'.*d_model"):
        bench.parse_model_set(["width=3"])
    with pytest.raises(SystemExit, match="expected FIELD=VALUE"):
        bench.parse_model_set(["dropout"])


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


def test_profile_parts_and_memory():
    prof = _load("bench_profile")
    layer = prof.make_layer("S4D", 4, 4, 16)
    u = jax.random.normal(jax.random.key(0), (2, 16, 4))
    times = prof.time_round_robin(prof.parts(layer, u), 1)
    assert {"layer fwd+bwd", "kernel fwd+bwd", "conv fwd+bwd"} <= set(times)
    assert all(w > 0 and c >= 0 for w, c in times.values())
    mem = prof.memory_analysis(layer, 2, 16, 4)
    assert mem["argument_mib"] > 0 and mem["temp_mib"] >= 0
