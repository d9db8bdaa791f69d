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
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    from ssm.config import Config

    try:
        cfg = tyro.cli(
            Config,
            default=preset,
            args=rest,
            prog=f"train.py --cfg {known.cfg}",
            description=f"Preset {known.cfg!r}: {configs.describe(known.cfg)}. "
            "Select another preset with --cfg GROUP.NAME (list them with --list).",
        )
    except ValueError as e:  # raised by the config's own validation
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return known.cfg, cfg


def main(argv: list[str] | None = None) -> int:
    name, cfg = parse(argv)
    from ssm.train import TrainingDiverged, train

    print(f"[ssm] preset {name}; run dir {cfg.train.run_dir}", flush=True)
    try:
        train(cfg)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("[ssm] stopped by Ctrl-C; rerun the same command to resume", file=sys.stderr)
        return 130
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
