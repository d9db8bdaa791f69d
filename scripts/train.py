#!/usr/bin/env python
"""Train a model: ``python scripts/train.py --cfg GROUP.NAME [--section.field VALUE ...]``.

``--list`` prints every preset; ``--cfg NAME --help`` shows that preset's values as defaults.
Rerunning the same command on an existing ``--train.run-dir`` resumes from its newest checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_PRESET = "demo.digits"


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _option_names(obj) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(obj)}


def _flag_name(arg: str, prefix: str) -> str | None:
    """``--data.no-seq-len=3`` -> ``no_seq_len`` for prefix ``--data.`` (None if ``arg`` is not such a flag)."""
    if not arg.startswith(prefix):
        return None
    return arg[len(prefix):].split("=", 1)[0].replace("-", "_")


def _translate(preset, rest: list[str]):
    """The preset's defaults and the arguments for tyro, after checking the options that tyro would only
    call "unrecognized": a layer or dataset option the chosen layer or dataset does not have is refused
    with its name and the layer's or dataset's. The flat syntax of earlier versions still works:
    ``--model.layer NAME`` selects the layer (``model.layer:NAME``) and ``--model.OPTION`` sets a layer
    option (``--model.layer.OPTION``)."""
    import dataclasses

    from ssm.config import DataConfig
    from ssm.data import get_dataset
    from ssm.layer_configs import LAYER_CONFIGS, layer_config_class

    from ssm.config import BACKBONE_CONFIGS

    args = list(rest)
    backbones = {c.name: c for c in BACKBONE_CONFIGS}
    for a in args:  # another backbone (model:NAME): its defaults, with the preset's layer
        if a.startswith("model:"):
            name = a.split(":", 1)[1].replace("-", "_")  # tyro's help spells it model:adaptive-lm
            if name not in backbones:
                _fail(f"unknown backbone {name!r} in {a}; choose one of {sorted(backbones)}")
            if backbones[name] is not type(preset.model):
                try:
                    preset = dataclasses.replace(preset, model=backbones[name](layer=preset.model.layer))
                except ValueError as e:
                    _fail(str(e))
    args = [a for a in args if not a.startswith("model:")]
    layer = preset.model.layer
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--model.layer" or a.startswith("--model.layer="):
            if "=" in a:
                name = a.split("=", 1)[1]
            elif i + 1 < len(args):
                name, i = args[i + 1], i + 1
            else:
                _fail("--model.layer needs a layer name, e.g. model.layer:s4d")
            a = f"model.layer:{name}"
        if a.startswith("model.layer:"):
            try:
                cls = layer_config_class(a.split(":", 1)[1])
            except ValueError as e:
                _fail(str(e))
            i += 1
            if cls is not type(layer):
                layer = _switch_layer(preset.model.layer, cls)
            continue  # the chosen layer becomes the default subcommand: its options need no selector
        out.append(a)
        i += 1
    preset = dataclasses.replace(preset, model=dataclasses.replace(preset.model, layer=layer))
    model_fields, layer_fields = _option_names(preset.model), _option_names(layer)
    data = preset.data
    for i, a in enumerate(out):
        if a == "--data.name" and i + 1 < len(out) or a.startswith("--data.name="):
            name = a.split("=", 1)[1] if "=" in a else out[i + 1]
            if name != data.name:  # another dataset: its own options, the preset's pipeline settings
                common = {f.name: getattr(data, f.name) for f in dataclasses.fields(DataConfig) if f.name != "options"}
                try:
                    get_dataset(name)
                    data = DataConfig(**{**common, "name": name})
                except ValueError as e:
                    _fail(str(e))
    data_fields, option_fields = _option_names(DataConfig), _option_names(data.options)
    any_layer_fields = set().union(*(_option_names(c()) for c in LAYER_CONFIGS))
    for i, a in enumerate(out):
        k = _flag_name(a, "--model.")
        if k is not None and "." not in k and k not in model_fields:
            base = k[3:] if k.startswith("no_") and k[3:] in layer_fields else k
            if base in layer_fields:  # the flat syntax: a layer option
                out[i] = "--model.layer." + a[len("--model."):]
            elif k in any_layer_fields and i + 1 < len(out) and out[i + 1] == "None":
                out[i] = out[i + 1] = ""  # the flat syntax's "unset another layer's option": nothing to unset
        k = _flag_name(out[i], "--model.layer.")
        if k is not None and k not in layer_fields and not (k.startswith("no_") and k[3:] in layer_fields):
            _fail(f"--model.layer.{k.replace('_', '-')}: the {layer.name!r} layer has no option {k!r} (its options: "
                  f"{', '.join(sorted(layer_fields))})")
        k = _flag_name(a, "--data.")
        if k is not None and k not in data_fields | option_fields:
            if not (k.startswith("no_") and k[3:] in option_fields):
                _fail(f"--data.{k.replace('_', '-')}: the {data.name!r} dataset has no option {k!r} (its options: "
                      f"{', '.join(sorted(option_fields)) or 'none'})")
    return dataclasses.replace(preset, data=data), [a for a in out if a]


def _switch_layer(old, cls):
    """A ``cls`` layer config for a preset made with the layer config ``old``: the options the preset set
    (those that differ from ``old``'s defaults) and the state size carry over where ``cls`` has them, as
    the flat configs of earlier versions did (``--cfg fsdd.digits --model.layer s4`` stays bidirectional)."""
    import dataclasses

    defaults = type(old)()
    names = {f.name for f in dataclasses.fields(cls)}
    carried = {k: v for k, v in old.options().items()
               if k in names and (k == "d_state" or v != getattr(defaults, k))}  # fmt: skip
    try:
        return cls(**carried)
    except ValueError as e:
        _fail(str(e))


def parse(argv: list[str] | None = None):
    """``(preset name, Config)`` from the command line (exits with a message on bad input)."""
    import tyro

    import configs

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--cfg", default=DEFAULT_PRESET)
    pre.add_argument("--list", action="store_true")
    known, rest = pre.parse_known_args(argv)
    if known.list:
        presets = configs.all_presets()
        width = max(map(len, presets))
        for name, (desc, _) in sorted(presets.items()):
            print(f"{name:<{width}}  {desc}")
        raise SystemExit(0)
    try:
        preset = configs.get_preset(known.cfg)
    except ValueError as e:
        _fail(str(e))
    from ssm.config import Config

    default, args = _translate(preset, rest)
    try:
        cfg = tyro.cli(
            Config,
            default=default,
            args=args,
            prog=f"train.py --cfg {known.cfg}",
            description=f"Preset {known.cfg!r}: {configs.describe(known.cfg)}. "
            "Select another preset with --cfg GROUP.NAME (list them with --list); another layer with "
            "model.layer:NAME (its options start from that layer's defaults).",
            # Options of the preset's layer are set without naming it (--model.layer.init lin), and stay
            # valid after another layer is chosen (model.layer:s4 --model.d-model 8).
            config=(tyro.conf.CascadeSubcommandArgs,),
        )
    except ValueError as e:  # raised by the config's own validation
        _fail(str(e))
    return known.cfg, cfg


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C anywhere (parsing, imports, start-up) ends with exit 130; inside train() the loop saves first.
    diverged: type[Exception] | tuple = ()  # ssm.train.TrainingDiverged once imported; () catches nothing before
    try:
        name, cfg = parse(argv)
        from ssm.train import TrainingDiverged, train

        diverged = TrainingDiverged
        print(f"[ssm] preset {name}; run dir {cfg.train.run_dir}", flush=True)
        train(cfg)
    except diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("[ssm] stopped by Ctrl-C (or SIGTERM); rerun the same command to resume", file=sys.stderr)
        return 130
    except ValueError as e:
        # Expected failures carry their own exit code (ssm.train.errors: 4 another run's config, 5 unusable run
        # directory, 6 missing data); other bad input is 2.
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    return 0

if __name__ == "__main__":
    import host_memory  # scripts/host_memory.py: glibc's malloc in the SSM_MALLOC mode

    host_memory.reexec_with_tuned_malloc()
    sys.exit(main())
