"""ssm.load round trip, batched prediction, and resolution change (rate) against the theory (float64)."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm
import ssm.layers
from _inference_helpers import read_events, trained_gen_run
from ssm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from ssm.data import DATASETS, get_dataset
from ssm.data.base import ArraySource, DatasetInfo
from ssm.inference import AtRate, InferenceModel
from ssm.model import available_layers, make_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory):
    return trained_gen_run(tmp_path_factory)


def _nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of integer targets under per-position logits, in numpy."""
    logits = np.asarray(logits, np.float64)
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], -1).mean())


def _split(cfg, split):
    src = get_dataset(cfg.data.name).load(cfg.data, split)
    return src.arrays["inputs"], src.arrays["targets"]


def test_load_gives_the_trained_model(gen_run):
    model, cfg = ssm.load(gen_run)
    with open(os.path.join(gen_run, "config.json")) as f:
        assert json.loads(cfg.to_json()) == json.load(f)
    assert isinstance(model, InferenceModel) and model.task == "generation"
    events = read_events(gen_run)
    final = max(e["step"] for e in events)
    test = next(e for e in events if e["split"] == "test" and e["step"] == final)
    best = next(e for e in events if e["split"] == "val" and e["step"] == final)  # the loss falls: best = last
    # the best checkpoint reproduces the test loss the training loop measured at that step
    x, y = _split(cfg, "test")
    nll = _nll(model.predict(x, batch_size=8), y)
    assert nll == pytest.approx(test["loss"], rel=1e-10)
    assert nll / math.log(2) == pytest.approx(test["bits_per_dim"], rel=1e-10)
    # a given step: the validation loss recorded at step 3
    early, _ = ssm.load(gen_run, step=3)
    xv, yv = _split(cfg, "val")
    val3 = next(e for e in events if e["split"] == "val" and e["step"] == 3)
    assert _nll(early.predict(xv, batch_size=8), yv) == pytest.approx(val3["loss"], rel=1e-10)
    assert _nll(model.predict(xv, batch_size=8), yv) == pytest.approx(best["loss"], rel=1e-10)
    latest, _ = ssm.load(gen_run, checkpoint="latest")
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(latest, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)), strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    # every array sits on one device, whatever the device count the run was trained with (4 here)
    devices = {d for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)) for d in a.devices()}
    assert devices == {jax.devices()[0]}


def test_predict_chunks_layers_and_kernels(gen_run):
    model, cfg = ssm.load(gen_run)
    x, _ = _split(cfg, "test")
    whole = model.predict(x[:16], batch_size=8)  # two chunks of 8 (compiled in test_load_gives_the_trained_model)
    np.testing.assert_allclose(model.predict(x[:16], batch_size=16), whole, rtol=0, atol=1e-12)
    assert len(model.layers) == cfg.model.n_layers
    assert model.layers[0].kernel(50).shape == (cfg.model.d_model, 50)
    with pytest.raises(ValueError, match="unknown argument"):
        model.predict(x[:2], lenghts=np.ones(2))
    with pytest.raises(ValueError, match="batch axis"):
        model.predict(x[:2], lengths=np.ones(3, np.int32))


def test_load_errors(gen_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        ssm.load(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with open(os.path.join(gen_run, "config.json")) as f:
        (empty / "config.json").write_text(f.read())
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        ssm.load(str(empty))
    with pytest.raises(ValueError, match=r"no checkpoint of step 4 .*saved steps: \[3, 6\]"):
        ssm.load(gen_run, step=4)
    with pytest.raises(ValueError, match="'best' or 'latest'"):
        ssm.load(gen_run, checkpoint="last")


# ----------------------------------------------------------------------------------------------------------------
# Resolution change. ZOH is exact for inputs held constant over each step, so a diagonal ZOH system read at step
# r·Δ on u' equals the system at step Δ read on u' held for r steps (u = repeat(u', r)), at the end of each hold:
#   y'_k = y_{r k + r - 1};  in kernels, K'_m = Σ_{j<r} K_{r m + j}  (since Ā' = Ā^r and B̄' = Σ_{j<r} Ā^j B̄).

H, N = 3, 6


@functools.cache
def _zoh_layers():
    k = jax.random.PRNGKey(0)
    out = {"s4d": ssm.layers.S4D(H, N, key=k, init="lin"), "dss-exp": ssm.layers.DSS(H, N, key=k, kernel_type="exp")}
    if "s5" in available_layers():
        out["s5"] = available_layers()["s5"](H, N, key=k)
    return out


@pytest.mark.parametrize("name", ["s4d", "dss-exp", "s5"])
def test_rate_r_on_a_held_signal_equals_rate_1(name, r=2):
    layers = _zoh_layers()
    if name not in layers:
        pytest.skip(f"{name} not available")
    layer = layers[name]
    u_low = jax.random.normal(jax.random.PRNGKey(1), (20, H))
    call = eqx.filter_jit(lambda lay, u, rate: lay(u, rate=rate))
    low = call(layer, u_low, float(r))
    high = call(layer, jnp.repeat(u_low, r, axis=0), 1.0)
    np.testing.assert_allclose(low, high[r - 1 :: r], rtol=0, atol=1e-10 * float(jnp.max(jnp.abs(high))))


@pytest.mark.parametrize("name", ["s4d", "dss-exp"])
@pytest.mark.parametrize("r", [2, 3])
def test_kernel_at_rate_r_is_the_rate_1_kernel_summed_in_blocks_of_r(name, r):
    layer = _zoh_layers()[name]
    Lr = 40
    k_low = np.asarray(layer.kernel(Lr, rate=float(r)))
    k_high = np.asarray(layer.kernel(r * Lr, rate=1.0))
    want = k_high.reshape(H, Lr, r).sum(-1)
    np.testing.assert_allclose(k_low, want, rtol=0, atol=1e-10 * np.max(np.abs(want)))


def test_classifier_at_rate_2_on_half_rate_signal():
    """A one-block classifier (per-step norms and GLU, last-step pooling) at rate 2 on the half-rate signal gives the
    rate-1 logits of the signal held at full rate; at rate 1 it does not."""
    cfg = ModelConfig(layer="s4d", d_model=H, d_state=N, n_layers=1, pool="last", init="lin")
    model, state = make_model(cfg, DatasetInfo(task="classification", d_input=2, d_output=5, seq_len=64),
                              key=jax.random.PRNGKey(2))  # fmt: skip
    u_low = jax.random.normal(jax.random.PRNGKey(3), (24, 2))
    full, _ = model(jnp.repeat(u_low, 2, axis=0), state)
    at2, _ = model(u_low, state, rate=2.0)
    np.testing.assert_allclose(at2, full, rtol=0, atol=1e-10 * float(jnp.max(jnp.abs(full))))
    at2_wrapped, _ = AtRate(model, 2.0)(u_low, state)
    np.testing.assert_array_equal(at2_wrapped, at2)
    at1, _ = model(u_low, state)
    assert float(jnp.max(jnp.abs(at1 - full))) > 1e-3
    with pytest.raises(ValueError, match="fixed rate"):
        AtRate(model, 2.0)(u_low, state, rate=3.0)


def _held_toy():
    """Classification toy whose full-resolution signals are held pairs: ``data.resolution = 2`` reads every second
    sample (the half-rate signal)."""
    import types

    mod = types.ModuleType("toy_held")

    def info(cfg):
        return DatasetInfo(task="classification", d_input=1, d_output=3, seq_len=-(-32 // (cfg.resolution or 1)))

    def load(cfg, split):
        rng = np.random.default_rng({"train": 0, "val": 1, "test": 2}[split])
        y = rng.integers(0, 3, 16).astype(np.int32)
        low = np.sin((y[:, None] + 1) * np.linspace(0, 3, 16)[None]) + 0.3 * rng.normal(size=(16, 16))
        x = np.repeat(low, 2, axis=1)[:, :: (cfg.resolution or 1), None]
        return ArraySource(inputs=x.astype(np.float64), targets=y)

    mod.info, mod.load = info, load
    return mod


def _evaluate_module():
    spec = importlib.util.spec_from_file_location("evaluate_script", os.path.join(REPO, "scripts", "evaluate.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_evaluate_script_rate(tmp_path, monkeypatch):
    from ssm.train import train

    monkeypatch.setitem(DATASETS, "toy_held", _held_toy())
    cfg = Config(
        model=ModelConfig(layer="s4d", d_model=4, n_layers=1, d_state=4, pool="last", init="lin"),
        data=DataConfig(name="toy_held", root=str(tmp_path), batch_size=8, eval_batch_size=8),
        optim=OptimConfig(lr=1e-2),
        train=TrainConfig(steps=2, run_dir=str(tmp_path / "run"), eval_every=0, save_every=0, progress="none",
                          eval_splits=("val",), async_checkpoint=False),
    )  # fmt: skip
    train(cfg, verbose=False)
    ev = _evaluate_module()
    full = ev.evaluate_run(cfg.train.run_dir, "test")
    half = ev.evaluate_run(cfg.train.run_dir, "test", rate=2.0, resolution=2)
    wrong = ev.evaluate_run(cfg.train.run_dir, "test", rate=1.0, resolution=2)
    assert half["rate"] == 2.0
    assert half["metrics"]["loss"] == pytest.approx(full["metrics"]["loss"], rel=1e-10)
    assert abs(wrong["metrics"]["loss"] - full["metrics"]["loss"]) > 1e-4
    assert ev.main([cfg.train.run_dir, "--rate", "0"]) == 2
    # a dataset whose length does not follow data.resolution has no subsampling option: refused, not ignored
    fixed = _held_toy()
    fixed.info = lambda c: DatasetInfo(task="classification", d_input=1, d_output=3, seq_len=32)
    monkeypatch.setitem(DATASETS, "toy_held", fixed)
    with pytest.raises(ValueError, match="--resolution: dataset 'toy_held' has no subsampling"):
        ev.evaluate_run(cfg.train.run_dir, "test", rate=2.0, resolution=2)


# ----------------------------------------------------------------------------------------------------------------
# scripts/generate.py


def _script(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script", os.path.join(REPO, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generate_script_writes_an_image_grid(gen_run, tmp_path, capsys):
    from PIL import Image

    gen = _script("generate")
    out = str(tmp_path / "samples")
    argv = [gen_run, "--n", "3", "--length", "60", "--prompt-len", "20", "--temperature", "0", "--out", out]
    assert gen.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    tokens = np.load(os.path.join(out, "tokens.npy"))
    assert tokens.shape == (3, 60) and summary["files"][1].endswith("samples.png")
    model, cfg = ssm.load(gen_run)
    _, y = _split(cfg, "test")
    np.testing.assert_array_equal(tokens[:, :20], y[:3, :20])  # the prompts: the first pixels of test images
    # greedy: every new pixel is the arg-max of the model's prediction from the pixels before it (start token 0)
    inputs = np.concatenate([np.zeros((3, 1), np.int32), tokens[:, :-1]], axis=1)
    np.testing.assert_array_equal(np.argmax(np.asarray(model.predict(inputs)), -1)[:, 20:], tokens[:, 20:])
    grid = np.asarray(Image.open(summary["files"][1]))
    assert grid.shape == (2 * 30 + 2, 2 * 30 + 2)  # 2x2 cells of 28 + 2 padding
    np.testing.assert_array_equal(grid[2, 2:30], tokens[0, :28])  # first image row
    np.testing.assert_array_equal(grid[3, 32:60], tokens[1, 28:56])  # second image, second row
    assert grid[2 + 27, 2 + 27] == 0  # pixels past --length stay black
    assert gen.main([gen_run, "--n", "0", "--out", out]) == 2


def test_wav_and_text_writers(tmp_path):
    import wave

    gen = _script("generate")
    levels = np.array([128, 255, 0, 192, 64])
    for quant in ("mulaw", "linear"):
        path = str(tmp_path / f"{quant}.wav")
        gen.write_wav(path, levels, quant)
        with wave.open(path) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        y = levels / 128.0 - 1.0
        # mu-law (mu = 255) inverse: sign(y)((1 + mu)^|y| - 1)/mu; linear: y itself
        amp = np.sign(y) * (256.0 ** np.abs(y) - 1.0) / 255.0 if quant == "mulaw" else y
        np.testing.assert_array_equal(pcm, np.round(amp * 32767).astype(np.int16))
    assert pcm[0] == 0
    with pytest.raises(ValueError, match="quantization"):
        gen.write_wav(str(tmp_path / "x.wav"), levels, "alaw")
    gen.write_text(str(tmp_path / "s.txt"), np.array([[0, 1, 2, 1]]), ["the", "cat", "sat"], prompt_len=2)
    assert "the cat || sat cat" in (tmp_path / "s.txt").read_text()
