"""Config schema, validation messages, and the command line of scripts/train.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

import pytest

import configs
from ssm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig, config_from_dict, replace
from ssm.layer_configs import LAYER_CONFIGS, S4Config, S4DConfig, S5Config

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
        (lambda: ModelConfig(dt_min=0.1, dt_max=0.01), "model.layer.dt_min", "--model.layer.dt-min"),
        (lambda: S4Config(d_state=0), "model.layer.d_state", "--model.layer.d-state"),
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
    cfg = replace(configs.get_preset("demo.digits"), model=dict(d_model=16, init="lin"),
                  train=dict(eval_splits=("val",)))  # fmt: skip
    assert cfg.model.layer == S4DConfig(d_state=32, init="lin")
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_from_dict(__import__("json").loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        config_from_dict({"model": {"d_modle": 3}})


def test_flat_keywords_build_the_typed_layer_config():
    # The flat form of earlier versions: layer name + layer options as keywords (None: the layer's default).
    m = ModelConfig(layer="s5", dt_min=1e-4, bidirectional=True, c_init="lecun_normal", rank=None)
    assert m.layer == S5Config(d_state=64, dt_min=1e-4, bidirectional=True, c_init="lecun_normal")
    assert m.layer_kwargs()["C_init"] == "lecun_normal" and "c_init" not in m.layer_kwargs()
    assert m.d_state == 64 and m.bidirectional  # read-through to the layer's options
    assert ModelConfig(layer=S5Config(c_init="lecun_normal"), d_model=8).layer.c_init == "lecun_normal"
    with pytest.raises(ValueError, match=r"\['c_init'\].*'s4d' layer"):
        ModelConfig(layer="s4d", c_init="lecun_normal")
    with pytest.raises(ValueError, match="unknown layer 's6'"):
        ModelConfig(layer="s6")


def test_layer_configs_carry_the_constructor_defaults():
    """Every option of a layer config is a keyword of its layer's constructor, with the same default, except
    the ones documented as filled from the data (S4's l_max)."""
    import inspect

    for c in LAYER_CONFIGS:
        params = inspect.signature(c().cls().__init__).parameters
        for k, v in c().options().items():
            p = params[c.keywords.get(k, k)]
            if k in c.from_seq_len:
                assert v is None
            else:
                assert p.default == v, (c.__name__, k)
        # dtype is the parameters' dtype, set by the model's precision, not a layer option
        kw_only = {k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("key", "dtype")}
        assert kw_only | {"d_state"} == {c.keywords.get(k, k) for k in c().options()}, c.__name__


def test_dataset_options_are_typed_and_refused_by_name():
    from ssm.data import mnist

    d = DataConfig(name="mnist", permute=True)
    assert d.options == mnist.Options(permute=True) and d.permute and d.val_fraction == 0.1
    assert DataConfig(name="mnist", options=mnist.Options(permute=True)) == d
    assert DataConfig(name="sc09").seq_len == 16000 and DataConfig(name="wt2").seq_len == 512
    assert DataConfig(name="weather").target == "WetBulbCelsius"
    for name, opt in (("mnist", "seq_len"), ("mnist", "pred_len"), ("cifar10", "resolution"), ("fsdd", "resolution")):
        with pytest.raises(ValueError) as e:
            DataConfig(name=name, **{opt: 2})
        msg = str(e.value)
        assert f"data.{opt}" in msg and f"'{name}' dataset" in msg and f"--data.{opt.replace('_', '-')}" in msg
    with pytest.raises(ValueError, match="takes"):
        DataConfig(name="cifar10", options=mnist.Options())


def test_data_root_defaults_to_data_path(monkeypatch):
    monkeypatch.setenv("DATA_PATH", "/somewhere/data")
    assert DataConfig().root == "/somewhere/data"
    monkeypatch.delenv("DATA_PATH")
    assert DataConfig().root == "./data"


def test_cli_overrides_with_the_required_names():
    name, cfg = _train_script().parse([
        "--cfg", "demo.digits", "--train.steps", "7", "--train.run-dir", "/tmp/x", "--train.seed", "3",
        "--data.root", "/r", "model.layer:s4", "--model.d-model", "16", "--model.n-layers", "3",
        "--model.layer.d-state", "8", "--model.layer.measure", "fout", "--optim.lr", "3e-4",
    ])  # fmt: skip
    assert name == "demo.digits"
    want = configs.get_preset("demo.digits")
    want = dataclasses.replace(
        want,
        model=dataclasses.replace(want.model, layer=S4Config(d_state=8, measure="fout"), d_model=16, n_layers=3),
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
    # an option the dataset (layer) does not have: named with the dataset (layer)
    for argv, words in (
        (["--cfg", "mnist.smnist", "--data.seq-len", "8"], ["--data.seq-len", "'mnist' dataset"]),
        (["--cfg", "mnist.smnist", "--data.pred-len", "8"], ["--data.pred-len", "'mnist' dataset"]),
        (["--cfg", "cifar.scifar", "--data.resolution", "2"], ["--data.resolution", "'cifar10' dataset"]),
        (["--cfg", "audio.sc09", "--data.resolution", "2"], ["--data.resolution", "'sc09' dataset"]),
        (["--data.name", "nope"], ["unknown dataset 'nope'"]),
        (["--cfg", "demo.digits", "--model.layer.measure", "fout"], ["measure", "'s4d' layer"]),
        (["--cfg", "demo.digits", "model.layer:s5", "--model.layer.init", "lin", "--model.layer.kernel-type", "exp"],
         ["kernel", "'s5' layer"]),
    ):
        with pytest.raises(SystemExit) as e:
            script.parse(argv)
        err = " ".join(capsys.readouterr().err.split())
        assert e.value.code == 2 and all(w in err for w in words), (argv, err)


def test_cli_layer_and_dataset_options():
    script = _train_script()
    _, cfg = script.parse(["--cfg", "mnist.smnist", "--model.layer.measure", "fout", "--data.permute"])
    assert cfg.model.layer == S4Config(measure="fout") and cfg.data.options.permute
    _, cfg = script.parse(["--cfg", "mnist.smnist", "model.layer:s4d", "--model.layer.init", "lin", "--model.d-model", "8"])
    assert cfg.model.layer == S4DConfig(init="lin") and cfg.model.d_model == 8
    # the flat syntax of earlier versions
    _, old = script.parse(["--cfg", "mnist.smnist", "--model.layer", "s4d", "--model.init", "lin", "--model.d-model", "8"])
    assert old == cfg
    # another dataset: its own options, the preset's batch sizes
    _, cfg = script.parse(["--cfg", "mnist.smnist", "--data.name", "fsdd", "--data.seq-len", "64"])
    assert cfg.data.name == "fsdd" and cfg.data.seq_len == 64 and cfg.data.batch_size == 50


def test_help_shows_the_layer_and_dataset_defaults(capsys):
    script = _train_script()
    for preset, wants in (
        ("synthetic.copying", ["--model.layer.measure STR", "(default: fout)", "--model.layer.rank", "(default: 2)",
                               "--data.n-memorize INT", "(default: 1024)", "--data.n-tokens INT", "(default: 64)"]),
        ("fsdd.digits", ["--model.layer.init STR", "(default: legs)", "--data.seq-len INT", "(default: 6400)",
                         "--data.normalize", "--data.split-seed INT"]),
    ):
        with pytest.raises(SystemExit):
            script.parse(["--cfg", preset, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for w in wants:
            assert w in text, (preset, w)


def test_flat_run_configs_migrate(recwarn):
    """config.json of run directories written before the typed configs (schema 1) load to the same layer and
    dataset options."""
    runs = os.path.join(REPO, "docs", "results", "runs")
    seen = 0
    for row in sorted(os.listdir(runs)):
        with open(os.path.join(runs, row, "config.json")) as f:
            flat = json.load(f)
        assert "schema" not in flat
        cfg = config_from_dict(flat)
        m, d = flat["model"], flat["data"]
        assert cfg.model.layer.name == m["layer"] and cfg.model.d_state == m["d_state"]
        for k, v in cfg.model.layer.options().items():
            if m.get(k) is not None:
                assert v == m[k], (row, k)
        assert cfg.model.d_model == m["d_model"] and cfg.data.name == d["name"] and cfg.data.root == d["root"]
        for k, v in cfg.data.options.to_dict().items():
            if d.get(k) is not None:
                assert v == d[k], (row, k)
        assert config_from_dict(json.loads(cfg.to_json())) == cfg
        seen += 1
    assert seen >= 9
    flat = {"model": {"layer": "s4d", "d_state": 8, "init": "lin", "measure": None},
            "data": {"name": "mnist", "permute": True, "seq_len": 784}}  # fmt: skip
    with pytest.warns(UserWarning, match="data.seq_len=784 is not an option of the 'mnist' dataset"):
        cfg = config_from_dict(flat, where="run/config.json")
    assert cfg.model.layer == S4DConfig(d_state=8, init="lin") and cfg.data.permute
    with pytest.raises(ValueError, match="schema 9 is newer"):
        config_from_dict({"schema": 9})


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


def _readme_commands() -> dict[str, list[str]]:
    """The training commands of README's Results section, by row name (L expanded per layer)."""
    import shlex

    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("python scripts/train.py"):
            continue
        argv = shlex.split(line.split("#")[0])[2:]
        if "--train.run-dir" not in argv:
            continue
        run = argv[argv.index("--train.run-dir") + 1]
        row = os.path.basename(run)
        if row.endswith("-L"):
            for layer in ("s4d", "s5", "s4", "dss", "hope"):
                out[row[:-1] + layer] = [layer if a == "L" else a for a in argv]
        else:
            out[row] = argv
    return out


def test_readme_commands_rebuild_the_recorded_runs():
    """Each README Results command, parsed by today's CLI, gives the config its committed run directory
    recorded (written by the flat config of earlier versions): the same layer, options, data and training."""
    script = _train_script()
    runs = os.path.join(REPO, "docs", "results", "runs")
    rename = {"fsdd-digits-14": "fsdd-digits", "listops-bn-dtlr": "listops"}
    checked = 0
    for row, argv in _readme_commands().items():
        d = os.path.join(runs, rename.get(row, row))
        if not os.path.isdir(d):
            continue
        with open(os.path.join(d, "config.json")) as f:
            recorded = config_from_dict(json.load(f))
        _, cfg = script.parse(argv)
        # (the optimizer and loop sections of some presets changed since; the model and data are what the
        # typed configs could change)
        assert cfg.model == recorded.model, row
        assert cfg.data == recorded.data, row
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("error, code", [(KeyboardInterrupt(), 130), (ValueError("bad input"), 2)])
def test_train_main_handles_errors_raised_while_parsing(monkeypatch, capsys, error, code):
    """An interrupt or bad input during parsing (before ``ssm.train`` is imported) ends with its exit code and
    message, not with an error about the handler itself."""
    script = _train_script()

    def parse(argv):
        raise error

    monkeypatch.setattr(script, "parse", parse)
    assert script.main([]) == code
    if code == 2:
        assert "error: bad input" in capsys.readouterr().err
