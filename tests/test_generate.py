"""Autoregressive generation: one-call prefill and recurrent stepping against the convolution mode
(float64), greedy decoding, temperature and top-p sampling."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssm.layers
from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.generate import bench_generation, generate, init_cache, prefill, sample_token, step, top_p_filter
from ssm.layers.base import AbstractSSMLayer
from ssm.model import available_layers, make_model

V, H, N, L = 7, 4, 4, 12
# Every layer with a recurrence (DSS only in its exp form: DSS-softmax has none).
RECURRENT = ["s4", "s4d", "dss-exp", "s5"]


def _model(name: str, seed: int = 0, **over):
    layer = {"dss-exp": "s4d", "s4": "s4d"}.get(name, name)  # swapped below
    if layer not in available_layers():
        pytest.skip(f"layer {layer} is not available in ssm.layers")
    m = dict(layer=layer, d_model=H, d_state=N, n_layers=2, pool="none", norm="layer", prenorm=True)
    m.update(over)
    info = DatasetInfo(task="generation", d_input=V, d_output=V, seq_len=32, tokens=True)
    model, state = make_model(ModelConfig(**m), info, key=jax.random.PRNGKey(seed))
    # Layers the config cannot express: DSS in its exp form; S4 set up for short kernels (l_max 32, fast).
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 100), 8))
    swap = {
        "dss-exp": lambda: ssm.layers.DSS(H, N, key=next(keys), kernel_type="exp"),
        "s4": lambda: ssm.layers.S4(H, N, key=next(keys), l_max=32),
    }.get(name)
    if swap is not None:
        model = _swap_layers(model, swap)
    return eqx.nn.inference_mode(model), state


def _swap_layers(model, make):
    is_layer = lambda x: isinstance(x, AbstractSSMLayer)  # noqa: E731
    return jax.tree_util.tree_map(lambda x: make() if is_layer(x) else x, model, is_leaf=is_layer)


def _tokens(n: int, seed: int = 1) -> jax.Array:
    return jax.random.randint(jax.random.PRNGKey(seed), (n,), 0, V, jnp.int32)


def _close(a, b, tol=1e-10):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape
        scale = max(1.0, float(np.max(np.abs(y))))
        np.testing.assert_allclose(x, y, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("name", RECURRENT)
def test_prefill_and_steps_equal_convolution_mode(name):
    model, state = _model(name)
    u = _tokens(L)
    conv, _ = eqx.filter_jit(model)(u, state)  # whole-sequence (convolution / scan) logits, (L, V)
    jprefill = eqx.filter_jit(prefill)
    logits, cache = jprefill(model, state, u)
    _close(logits, conv)
    # stepping token by token from the zero state: same logits, and the same final state as the prefill
    c = init_cache(model)
    stepped = []
    jstep = eqx.filter_jit(step)
    for t in range(L):
        lt, c = jstep(model, state, u[t], c)
        stepped.append(lt)
    _close(jnp.stack(stepped), conv)
    _close(c, cache)
    # prefill continued from a cache: (first 5 tokens, then the rest) == all at once
    _, c5 = jprefill(model, state, u[:5])
    rest, c_all = jprefill(model, state, u[5:], c5)
    _close(rest, conv[5:])
    _close(c_all, cache)


@pytest.mark.parametrize(
    "over", [dict(scan_layers=True), pytest.param(dict(norm="batch", prenorm=False), marks=pytest.mark.slow)]
)
def test_scan_layers_and_batchnorm_backbones(over):
    model, state = _model("s4d", **over)
    u = _tokens(L, seed=3)
    conv, _ = eqx.filter_jit(model)(u, state)
    logits, cache = eqx.filter_jit(prefill)(model, state, u[:-1])
    _close(logits, conv[:-1])
    last, _ = eqx.filter_jit(step)(model, state, u[-1], cache)
    _close(last, conv[-1])


@pytest.mark.parametrize("name", RECURRENT)
def test_greedy_decoding_is_argmax_of_convolution_mode(name):
    model, state = _model(name, seed=2)
    P, total, start = 3, 16, 5
    prompt = jnp.stack([_tokens(P, seed=4), _tokens(P, seed=5)])
    out = generate(model, state, prompt, length=total, key=jax.random.PRNGKey(0), temperature=0.0, start_token=start)
    assert out.shape == (2, total) and out.dtype == jnp.int32
    np.testing.assert_array_equal(out[:, :P], prompt)
    conv_mode = eqx.filter_jit(lambda m, x: jax.vmap(lambda r: m(r, state)[0])(x))
    inputs = jnp.concatenate([jnp.full((2, 1), start, jnp.int32), out[:, :-1]], axis=1)  # the shifted sequence
    np.testing.assert_array_equal(np.argmax(np.asarray(conv_mode(model, inputs)), axis=-1)[:, P:], out[:, P:])
    if name == "s4d":  # without a start token (language model): the prompt itself is the first input
        out = generate(model, state, prompt, length=total, key=jax.random.PRNGKey(0), temperature=0.0)
        conv = conv_mode(model, out[:, :-1])
        np.testing.assert_array_equal(np.argmax(np.asarray(conv), axis=-1)[:, P - 1 :], np.asarray(out[:, P:]))


def test_top_p_filter_keeps_the_smallest_nucleus():
    p = np.array([0.15, 0.5, 0.05, 0.3])
    logits = jnp.log(jnp.asarray(p))
    kept = lambda q: set(np.flatnonzero(np.isfinite(np.asarray(top_p_filter(logits, q)))))  # noqa: E731
    assert kept(0.4) == {1}
    assert kept(0.7) == {1, 3}
    assert kept(0.8) == {1, 3}  # 0.5 + 0.3 reaches 0.8: the next token is not needed
    assert kept(0.81) == {0, 1, 3}
    assert kept(1.0) == {0, 1, 2, 3}
    np.testing.assert_array_equal(top_p_filter(logits, 0.7)[np.array([1, 3])], logits[np.array([1, 3])])


def test_sampling_distribution_temperature_and_top_p():
    p = np.array([0.15, 0.5, 0.05, 0.3])
    logits = jnp.log(jnp.asarray(p))
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    n = len(keys)

    def freqs(t, q):
        s = np.asarray(jax.vmap(lambda k: sample_token(k, logits, t, q))(keys))
        return np.bincount(s, minlength=4) / n

    def check(f, want):
        sigma = np.sqrt(want * (1 - want) / n)
        assert np.all(np.abs(f - want) <= 5 * sigma + 1e-12), (f, want)

    check(freqs(1.0, 1.0), p)
    check(freqs(1.0, 0.7), np.array([0, 0.5, 0, 0.3]) / 0.8)  # renormalised over the nucleus
    q = p**2 / np.sum(p**2)  # temperature 0.5 squares the probabilities
    check(freqs(0.5, 1.0), q)
    assert int(sample_token(keys[0], logits, 0.0, 0.5)) == 1  # greedy


def test_samples_are_reproducible_and_differ_across_the_batch():
    model, state = _model("s4d")
    prompt = jnp.zeros((4, 0), jnp.int32)
    a = generate(model, state, prompt, length=20, key=jax.random.PRNGKey(7), temperature=1.0, top_p=0.9, start_token=0)
    b = generate(model, state, prompt, length=20, key=jax.random.PRNGKey(7), temperature=1.0, top_p=0.9, start_token=0)
    np.testing.assert_array_equal(a, b)
    assert len({tuple(r) for r in np.asarray(a)}) > 1
    assert int(a.min()) >= 0 and int(a.max()) < V


def test_bad_input_errors():
    model, state = _model("s4d")
    prompt = jnp.zeros((1, 3), jnp.int32)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="start_token"):
        generate(model, state, jnp.zeros((1, 0), jnp.int32), length=5, key=key)
    with pytest.raises(ValueError, match="length"):
        generate(model, state, prompt, length=3, key=key)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, state, prompt, length=5, key=key, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, state, prompt, length=5, key=key, temperature=-1.0)
    with pytest.raises(ValueError, match=r"\(batch, P\)"):
        generate(model, state, jnp.zeros((3,), jnp.int32), length=5, key=key)
    pooled, s = make_model(
        ModelConfig(layer="s4d", d_model=H, d_state=N, n_layers=1, pool="mean"),
        DatasetInfo(task="classification", d_input=V, d_output=3, seq_len=8, tokens=True),
        key=key,
    )
    with pytest.raises(ValueError, match="pool"):
        generate(pooled, s, prompt, length=5, key=key)
    softmax_dss, s = _model("s4d")
    softmax_dss = _swap_layers(softmax_dss, lambda: ssm.layers.DSS(H, N, key=key))
    with pytest.raises(ValueError, match="DSS-softmax has no recurrent mode"):
        generate(softmax_dss, s, prompt, length=5, key=key)


def test_bench_generation_reports_both_rates():
    r = bench_generation("s4d", length=64, d_model=4, d_state=4, n_layers=1, vocab=V, naive_tokens=4, repeats=1)
    assert r["length"] == 64 and r["recurrent_tokens_per_s"] > 0 and r["conv_tokens_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["recurrent_tokens_per_s"] / r["conv_tokens_per_s"])


SASHIMI_INFO = DatasetInfo(task="generation", d_input=16, d_output=16, seq_len=16, tokens=True)


def _tiny_sashimi():
    from ssm.config import SaShiMiConfig
    from ssm.layer_configs import S4Config

    cfg = SaShiMiConfig(layer=S4Config(d_state=4, n_ssm=1), d_model=4, n_layers=1, pool=(2, 2))
    return make_model(cfg, SASHIMI_INFO, key=jax.random.PRNGKey(3))


def test_sashimi_greedy_generation_is_the_argmax_path_of_its_forward():
    """A SaShiMi run generates through its own recurrent step (pooling buffers included): greedy tokens from the
    start token equal, at every position, the argmax of the convolutional forward over the tokens before it
    (float64), through the InferenceModel API that scripts/generate.py calls."""
    from ssm.inference import InferenceModel

    model, state = _tiny_sashimi()
    net = eqx.nn.inference_mode(model)
    inference = InferenceModel(net, state, "generation")
    length, start = 24, 5  # the convolutional forward below needs a multiple of prod(pool) = 4
    tokens = inference.generate(np.zeros((2, 0), np.int32), length=length, key=jax.random.PRNGKey(0),
                                temperature=0.0, start_token=start)  # fmt: skip
    assert tokens.shape == (2, length)
    inputs = jnp.concatenate([jnp.full((2, 1), start, jnp.int32), tokens[:, :-1]], axis=1)  # the shifted sequence
    logits = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(net.net, inputs)
    np.testing.assert_array_equal(np.asarray(jnp.argmax(logits, axis=-1)), np.asarray(tokens))
    # with a prompt, the prompt comes back first and the continuation follows the forward's argmax
    prompt = np.asarray(tokens[:, :7])
    again = generate(net, state, prompt, length=length, key=jax.random.PRNGKey(1), temperature=0.0, start_token=start)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(tokens))
    with pytest.raises(ValueError, match="training rate"):
        generate(net, state, prompt, length=length, key=jax.random.PRNGKey(1), start_token=start, rate=2.0)


def test_pooled_classifier_cannot_generate():
    from ssm.config import PooledConfig
    from ssm.layer_configs import S4DConfig

    info = DatasetInfo(task="classification", d_input=3, d_output=4, seq_len=8, tokens=False)
    model, state = make_model(PooledConfig(d_model=4, n_layers=1, layer=S4DConfig(d_state=4)), info, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="no recurrent mode"):
        generate(model, state, np.zeros((1, 1), np.int32), length=4, key=jax.random.PRNGKey(0))


@pytest.mark.slow
def test_scripts_train_and_generate_a_sashimi_run(tmp_path):
    """`scripts/train.py --cfg audio.sc09` trains two steps on a tiny SC09 folder and `scripts/generate.py RUN`
    samples it through SaShiMi's recurrent step into 16 kHz WAVs (subprocesses, as a user runs them; ~40 s)."""
    import os
    import subprocess
    import sys
    import wave

    from test_presets_train import _sc09

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _sc09(tmp_path / "data")
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": repo}
    train = [sys.executable, os.path.join(repo, "scripts", "train.py"), "--cfg", "audio.sc09", "--data.root",
             str(tmp_path / "data"), "--data.seq-len", "64", "--data.batch-size", "2", "--data.eval-batch-size", "2",
             "--model.d-model", "4", "--model.n-layers", "1", "--model.layer.d-state", "4", "--train.steps", "2",
             "--train.eval-every", "2", "--train.save-every", "0", "--train.eval-batches", "1", "--train.progress",
             "none", "--train.run-dir", str(run)]  # fmt: skip
    out = subprocess.run(train, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "parameters" in out.stdout
    gen = [sys.executable, os.path.join(repo, "scripts", "generate.py"), str(run), "--n", "2", "--length", "40"]
    out = subprocess.run(gen, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    tokens = np.load(run / "samples" / "tokens.npy")
    assert tokens.shape == (2, 40) and tokens.min() >= 0 and tokens.max() < 256
    for i in range(2):
        with wave.open(str(run / "samples" / f"sample_{i:03d}.wav")) as w:
            assert (w.getnframes(), w.getframerate(), w.getsampwidth()) == (40, 16000, 2)


def test_adaptive_lm_greedy_generation_is_the_argmax_path_of_its_forward():
    """An adaptive-softmax LM (no start token: the prompt is the first input) generates through its own step; the
    greedy continuation is the argmax of its whole-sequence log-probabilities (float64)."""
    from ssm.config import AdaptiveLMConfig
    from ssm.layer_configs import S4DConfig

    info = DatasetInfo(task="lm", d_input=20, d_output=20, seq_len=16, tokens=True)
    cfg = AdaptiveLMConfig(layer=S4DConfig(d_state=4), d_model=8, n_layers=1, cutoffs=(5, 10), div_val=2)
    model, state = make_model(cfg, info, key=jax.random.PRNGKey(4))
    model = eqx.nn.inference_mode(model)
    prompt = jnp.asarray([[3, 7, 1]], jnp.int32)
    out = generate(model, state, prompt, length=12, key=jax.random.PRNGKey(0), temperature=0.0)
    np.testing.assert_array_equal(np.asarray(out[:, :3]), np.asarray(prompt))
    logp = model.net.log_probs(out[0, :-1])
    np.testing.assert_array_equal(np.asarray(jnp.argmax(logp, axis=-1))[2:], np.asarray(out[0, 3:]))
