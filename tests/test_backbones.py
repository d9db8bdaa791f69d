"""The backbone configs (model:residual, model:sashimi, model:adaptive_lm, model:pooled): config files, command
line, model building through ssm.model.make_model and the trainer's call signature."""

from __future__ import annotations

import importlib.util
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs
from ssm.config import (
    AdaptiveLMConfig,
    Config,
    DataConfig,
    ModelConfig,
    PooledConfig,
    SaShiMiConfig,
    config_from_dict,
)
from ssm.data.base import DatasetInfo
from ssm.layer_configs import S4Config, S4DConfig
from ssm.model import make_model
from ssm.nn import SaShiMiModel, count_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUDIO = DatasetInfo(task="generation", d_input=256, d_output=256, seq_len=32, tokens=True)
TINY_SASHIMI = SaShiMiConfig(layer=S4Config(d_state=4, n_ssm=1), d_model=4, n_layers=1, pool=(2, 2))


def _train_script():
    spec = importlib.util.spec_from_file_location("train_script", os.path.join(REPO, "scripts", "train.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_configs_without_a_backbone_are_the_residual_model():
    """config.json files written before the backbone was recorded (schema 1, and schema 2) mean the residual
    SequenceModel; the backbone is recorded from now on."""
    runs = os.path.join(REPO, "docs", "results", "runs")
    seen = 0
    for row in sorted(os.listdir(runs)):
        with open(os.path.join(runs, row, "config.json")) as f:
            old = json.load(f)
        cfg = config_from_dict(old)
        assert type(cfg.model) is ModelConfig, row
        d = cfg.to_dict()
        assert d["model"]["backbone"] == "residual"
        schema2 = json.loads(json.dumps(d))
        del schema2["model"]["backbone"]
        schema2["schema"] = 2
        assert config_from_dict(schema2) == cfg
        seen += 1
    assert seen >= 9


@pytest.mark.parametrize(
    "model",
    [SaShiMiConfig(pool=(2, 4), layer=S4DConfig(d_state=8)), AdaptiveLMConfig(cutoffs=(10, 20)),
     PooledConfig(pool_kernel=None, norm_strategy="pre")],
)  # fmt: skip
def test_backbone_configs_round_trip_through_json(model):
    cfg = Config(model=model, data=DataConfig(name="sc09"))
    back = config_from_dict(json.loads(cfg.to_json()))
    assert back == cfg and type(back.model) is type(model)
    with pytest.raises(ValueError, match="unknown backbone 'unet'"):
        config_from_dict({**json.loads(cfg.to_json()), "model": {"backbone": "unet"}})


@pytest.mark.parametrize(
    "make,flag",
    [(lambda: SaShiMiConfig(pool=()), "--model.pool"), (lambda: SaShiMiConfig(d_model=0), "--model.d-model"),
     (lambda: AdaptiveLMConfig(dropemb=1.0), "--model.dropemb"),
     (lambda: PooledConfig(pool_kernel=0), "--model.pool-kernel")],
)  # fmt: skip
def test_backbone_validation_names_the_flag(make, flag):
    with pytest.raises(ValueError, match=flag):
        make()


def test_sc09_preset_has_the_official_parameter_count():
    """The SC09 SaShiMi of state-spaces/s4 (configs/experiment/audio/sashimi-sc09.yaml) has 4,751,072 parameters;
    counted on the abstract model (no full build)."""
    cfg = configs.get_preset("audio.sc09")
    assert type(cfg.model) is SaShiMiConfig
    info = DatasetInfo(task="generation", d_input=256, d_output=256, seq_len=cfg.data.seq_len, tokens=True)
    model = eqx.filter_eval_shape(make_model, cfg.model, info, key=jax.random.PRNGKey(0))[0]
    assert isinstance(model.net, SaShiMiModel)
    assert count_params(model) == 4_751_072
    for name in ("audio.youtubemix", "audio.beethoven"):
        other = configs.get_preset(name)
        assert other.model == cfg.model and other.data.seq_len % 16 == 0


def test_help_shows_the_sashimi_options(capsys):
    script = _train_script()
    with pytest.raises(SystemExit):
        script.parse(["--cfg", "audio.sc09", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for want in ("(default: model:sashimi)", "--model.pool [INT [INT ...]]", "(default: 4 4)", "--model.expand INT",
                 "--model.ff INT", "--model.norm {scalar,layer,none}", "(default: scalar)", "--model.weight-norm",
                 "--model.layer.n-ssm INT", "--model.layer.d-state INT", "(default: 64)"):  # fmt: skip
        assert want in text, want


def test_cli_chooses_and_overrides_backbones():
    script = _train_script()
    _, cfg = script.parse(["--cfg", "audio.sc09", "--model.pool", "2", "2", "--model.layer.d-state", "4",
                           "--model.measure", "fout"])  # fmt: skip
    assert cfg.model == SaShiMiConfig(layer=S4Config(d_state=4, measure="fout", n_ssm=1), pool=(2, 2))
    _, cfg = script.parse(["--cfg", "audio.sc09", "model.layer:s4d", "--model.n-layers", "2"])
    assert cfg.model.layer == S4DConfig() and cfg.model.n_layers == 2 and type(cfg.model) is SaShiMiConfig
    _, cfg = script.parse(["--cfg", "audio.sc09", "model:residual", "--model.d-model", "16", "--model.pool", "none"])
    assert type(cfg.model) is ModelConfig and cfg.model.d_model == 16 and cfg.model.layer.n_ssm == 1
    _, cfg = script.parse(["--cfg", "mnist.smnist", "model:pooled", "--model.pool-kernel", "4"])
    assert cfg.model == PooledConfig(layer=configs.get_preset("mnist.smnist").model.layer, pool_kernel=4)
    for spelling in ("model:adaptive_lm", "model:adaptive-lm"):
        _, cfg = script.parse(["--cfg", "lm.wt2", spelling, "--model.div-val", "2"])
        assert type(cfg.model) is AdaptiveLMConfig and cfg.model.div_val == 2 and cfg.model.cutoffs == (2000, 10000)
    with pytest.raises(SystemExit):
        script.parse(["--cfg", "audio.sc09", "model:unet"])


def test_sashimi_through_make_model_is_causal():
    """The wrapped SaShiMi takes the trainer's call (inputs, state) -> (logits (L, V), state); the logits at step t
    depend on the inputs up to t only (the next-sample prediction the loss reads)."""
    model, state = make_model(TINY_SASHIMI, AUDIO, key=jax.random.PRNGKey(0))
    assert count_params(model) == count_params(model.net)
    x = jax.random.randint(jax.random.PRNGKey(1), (32,), 0, 256)
    t = 13

    # One compiled program for the three forward passes: run op by op, the first pass compiled each of the S4
    # kernel's operations on its own (~25 s of a ~40 s test).
    @eqx.filter_jit
    def forwards(model, x, x2):
        y, state2 = model(x, state, key=None, lengths=jnp.asarray(32))
        return y, state2, model.net(x), model(x2, state)[0]

    y, state2, y_net, y2 = forwards(model, x, x.at[t].set((x[t] + 1) % 256))
    assert y.shape == (32, 256) and y.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_net))
    np.testing.assert_allclose(np.asarray(y2[:t]), np.asarray(y[:t]), rtol=0, atol=1e-12)
    assert np.abs(np.asarray(y2[t:] - y[t:])).max() > 1e-6
    with pytest.raises(ValueError, match="rate"):
        model(x, state, rate=0.5)
    with pytest.raises(ValueError, match="must be a multiple of prod"):
        model(x[:30], state)


def test_backbones_refuse_datasets_they_do_not_model():
    classify = DatasetInfo(task="classification", d_input=1, d_output=10, seq_len=32, tokens=False)
    with pytest.raises(ValueError, match="model:sashimi is an autoregressive model"):
        make_model(TINY_SASHIMI, classify, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="model:adaptive_lm is a language model"):
        make_model(AdaptiveLMConfig(d_model=8, n_layers=1), classify, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="model:pooled is a sequence classifier"):
        make_model(PooledConfig(d_model=8, n_layers=1), AUDIO, key=jax.random.PRNGKey(0))


def test_lm_presets_are_the_published_adaptive_model():
    wt103 = configs.get_preset("lm.wt103").model
    assert type(wt103) is AdaptiveLMConfig
    assert (wt103.d_model, wt103.n_layers, wt103.ff, wt103.cutoffs, wt103.div_val) == (1024, 16, 4, (19997, 39997, 199997), 4)
    assert (wt103.dropout, wt103.dropemb, wt103.dropsoft, wt103.layer.n_ssm) == (0.25, 0.25, 0.25, 1)
    wt2 = configs.get_preset("lm.wt2").model
    assert type(wt2) is AdaptiveLMConfig and max(wt2.cutoffs) < 33278  # WikiText-2's vocabulary


def test_adaptive_lm_outputs_give_the_trainers_loss_of_the_adaptive_softmax():
    """The trainer's cross-entropy on the wrapped model's outputs equals -sum log p(target) of the adaptive
    softmax's own per-target path; cutoffs beyond the vocabulary are dropped with a warning."""
    from ssm.train.metrics import example_metrics

    info = DatasetInfo(task="lm", d_input=40, d_output=40, seq_len=12, tokens=True)
    cfg = AdaptiveLMConfig(layer=S4DConfig(d_state=4), d_model=16, n_layers=1, cutoffs=(8, 20, 400), div_val=2)
    with pytest.warns(UserWarning, match=r"clusters end at \[8, 20\]"):
        model, state = make_model(cfg, info, key=jax.random.PRNGKey(0))
    assert model.net.softmax.cutoffs == (8, 20, 40)
    k = jax.random.split(jax.random.PRNGKey(1))
    x, y = jax.random.randint(k[0], (12,), 0, 40), jax.random.randint(k[1], (12,), 0, 40)

    @eqx.filter_jit  # one compiled program, not each operation compiled on its own
    def loss_and_want(model, x, y):
        out, _ = eqx.nn.inference_mode(model)(x, state)
        loss = example_metrics(out, {"targets": y, "lengths": jnp.asarray(12)}, "lm")["loss"]
        return loss, -jnp.sum(eqx.nn.inference_mode(model.net)(x, y))

    (loss, count), want = loss_and_want(model, x, y)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-12)
    assert float(count) == 12


def test_s4torch_presets_follow_its_readme_commands():
    """TariqAHassan/S4Torch README: (d_model, n_blocks, pooling, dropout, lr, batch, epochs) per command."""
    want = {"smnist": (128, 6, 2, 0.2, 1e-2, 16), "pmnist": (128, 6, 2, 0.2, 1e-2, 16),
            "scifar": (1024, 6, 2, 0.25, 1e-2, 32), "sc10": (128, 6, 2, 0.1, 1e-2, 16)}  # fmt: skip
    for name, (h, n, k, p, lr, b) in want.items():
        cfg = configs.get_preset(f"s4torch.{name}")
        assert type(cfg.model) is PooledConfig
        m = cfg.model
        assert (m.d_model, m.n_layers, m.pool_kernel, m.dropout, cfg.optim.lr, cfg.data.batch_size) == (h, n, k, p, lr, b)
        assert cfg.optim.ssm_lr == 1e-3 and cfg.optim.schedule == "plateau" and m.layer.d_state == 64
    assert configs.get_preset("s4torch.pmnist").data.permute and not configs.get_preset("s4torch.smnist").data.permute


def test_pooled_classifier_pools_as_s4torch_and_classifies():
    """sMNIST-like input (L 16, 1 channel): 3 blocks with avg_2 pooling give lengths 16 -> 8 -> 4 and then no more
    pooling (S4Torch's schedule pools only where the next length max(2, l // 2) exceeds the kernel: 4 // 2 = 2 does
    not), and one logit vector per example."""
    info = DatasetInfo(task="classification", d_input=1, d_output=10, seq_len=16, tokens=False)
    model, state = make_model(PooledConfig(layer=S4DConfig(d_state=4), d_model=4, n_layers=3), info,
                              key=jax.random.PRNGKey(0))  # fmt: skip
    pools = [p is not None for p in model.net.backbone.pools]
    assert pools == [True, True, False]
    both = eqx.filter_jit(lambda m: (m.net.backbone(jnp.ones((16, 4))), m(jnp.ones((16, 1)), state)))
    feats, (out, _) = both(model)  # one compiled program, not each operation compiled on its own
    assert feats.shape == (4, 4)
    assert out.shape == (10,) and bool(jnp.all(jnp.isfinite(out)))
