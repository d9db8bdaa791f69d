"""Config schema, validation messages, and the command line of scripts/train.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

import pytest

import configs
from ssm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig, config_from_dict, replace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_script():
    spec = importlib.util.spec_from_file_location("train_script", os.path.join(REPO, "scripts", "train.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    "make,field,flag",
    [
        (lambda: ModelConfig(d_model=0), "model.d_model", "--model.d-model"),
        (lambda: ModelConfig(n_layers=-1), "model.n_layers", "--model.n-layers"),
        (lambda: ModelConfig(dropout=1.0), "model.dropout", "--model.dropout"),
        (lambda: ModelConfig(dt_min=0.1, dt_max=0.01), "model.dt_min", "--model.dt-min"),
        (lambda: DataConfig(batch_size=0), "data.batch_size", "--data.batch-size"),
        (lambda: DataConfig(val_fraction=1.5), "data.val_fraction", "--data.val-fraction"),
        (lambda: OptimConfig(lr=-1.0), "optim.lr", "--optim.lr"),
        (lambda: OptimConfig(clip_norm=0.0), "optim.clip_norm", "--optim.clip-norm"),
        (lambda: TrainConfig(steps=0), "train.steps", "--train.steps"),
        (lambda: TrainConfig(eval_splits=("dev",)), "train.eval_splits", "--train.eval-splits"),
    ],
)
def test_validation_names_the_field_and_the_flag(make, field, flag):
    with pytest.raises(ValueError) as e:
        make()
    assert field in str(e.value) and flag in str(e.value)


def test_cross_section_validation():
    with pytest.raises(ValueError, match="data.batch_size.*optim.grad_accum"):
        Config(data=DataConfig(batch_size=10), optim=OptimConfig(grad_accum=4))


def test_dict_round_trip_and_replace():
    cfg = replace(configs.get_preset("demo.digits"), model=dict(d_model=16, c_init="lecun_normal"),
                  train=dict(eval_splits=("val",)))  # fmt: skip
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_from_dict(__import__("json").loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        config_from_dict({"model": {"d_modle": 3}})


def test_layer_kwargs_only_pass_set_options():
    assert ModelConfig().layer_kwargs() == {}
    kw = ModelConfig(dt_min=1e-4, bidirectional=True, c_init="lecun_normal").layer_kwargs()
    assert kw == {"dt_min": 1e-4, "bidirectional": True, "C_init": "lecun_normal"}


def test_data_root_defaults_to_data_path(monkeypatch):
    monkeypatch.setenv("DATA_PATH", "/somewhere/data")
    assert DataConfig().root == "/somewhere/data"
    monkeypatch.delenv("DATA_PATH")
    assert DataConfig().root == "./data"


def test_cli_overrides_with_the_required_names():
    name, cfg = _train_script().parse([
        "--cfg", "demo.digits", "--train.steps", "7", "--train.run-dir", "/tmp/x", "--train.seed", "3",
        "--data.root", "/r", "--model.layer", "s4", "--model.d-model", "16", "--model.n-layers", "3",
        "--model.d-state", "8", "--optim.lr", "3e-4",
    ])  # fmt: skip
    assert name == "demo.digits"
    want = configs.get_preset("demo.digits")
    want = dataclasses.replace(
        want,
        model=dataclasses.replace(want.model, layer="s4", d_model=16, n_layers=3, d_state=8),
        data=dataclasses.replace(want.data, root="/r"),
        optim=dataclasses.replace(want.optim, lr=3e-4),
        train=dataclasses.replace(want.train, steps=7, run_dir="/tmp/x", seed=3),
    )
    assert cfg == want


def test_cli_schedule_options_and_json_round_trip():
    _, cfg = _train_script().parse([
        "--cfg", "demo.digits", "--optim.schedule", "multistep", "--optim.milestones", "100", "250",
        "--optim.gamma", "0.5", "--optim.dt-lr", "0.02",
    ])  # fmt: skip
    assert cfg.optim.milestones == (100, 250) and cfg.optim.gamma == 0.5 and cfg.optim.dt_lr == 0.02
    assert config_from_dict(json.loads(cfg.to_json())) == cfg


def test_cli_errors(capsys):
    script = _train_script()
    with pytest.raises(SystemExit) as e:
        script.parse(["--cfg", "demo.nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown preset 'demo.nope'" in err and "demo.digits" in err
    with pytest.raises(SystemExit) as e:
        script.parse(["--model.d-model", "abc"])
    assert e.value.code == 2 and "--model.d-model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        script.parse(["--model.d-model", "0"])
    assert e.value.code == 2 and "model.d_model must be a positive integer" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(SystemExit) as e:
        script.parse(["--model.layer", "s6"])
    assert e.value.code == 2 and "s6" in capsys.readouterr().err


def test_cli_list_and_help_show_presets(capsys):
    script = _train_script()
    with pytest.raises(SystemExit) as e:
        script.parse(["--list"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name, (desc, _) in configs.all_presets().items():
        assert f"{name}  " in out and desc[:40] in out
    with pytest.raises(SystemExit):
        script.parse(["--cfg", "demo.digits", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    steps = configs.get_preset("demo.digits").train.steps
    assert "--train.steps INT" in text and f"(default: {steps})" in text and "demo.digits" in text
