#!/usr/bin/env python
"""Evaluate a run: ``python scripts/evaluate.py RUN_DIR [--split test] [--checkpoint best|latest]``.

``--rate R`` evaluates at another sampling rate (every layer's Δ multiplied by R, ssm-math.md §1.3), e.g. a
Speech Commands model trained at 16 kHz tested at 8 kHz: ``--rate 2 --resolution 2``.

Restores the best checkpoint (by validation metric; the latest if there is no best one) and prints
``{"run_dir": .., "step": .., "split": .., "metrics": {..}}`` as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def evaluate_run(run_dir: str, split: str = "test", checkpoint: str = "best", data_root: str | None = None,
                 rate: float = 1.0, resolution: int | None = None) -> dict:  # fmt: skip
    import dataclasses

    from ssm.config import config_from_dict
    from ssm.train.checkpoint import Checkpoints
    from ssm.train.loop import build

    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {run_dir!r} a run directory of scripts/train.py?")
    with open(path) as f:
        cfg = config_from_dict(json.load(f))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_devices=None, run_dir=run_dir))
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    if resolution is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, resolution=resolution))
    if not rate > 0:
        raise ValueError(f"--rate must be positive (got {rate})")
    run = build(cfg)
    ckpt = Checkpoints(run_dir, keep=cfg.train.keep, async_save=False)
    try:
        order = [checkpoint] + (["latest"] if checkpoint == "best" else [])
        restored = None
        for which in order:
            restored = ckpt.restore(run.abstract, sharding=run.replicated, which=which)
            if restored is not None:
                used = which
                break
        if restored is None:
            raise FileNotFoundError(f"no readable checkpoint in {run_dir}")
        state, _, meta = restored
        if rate != 1.0:
            import equinox as eqx

            from ssm.inference import AtRate

            state = eqx.tree_at(lambda s: s.model, state, AtRate(state.model, float(rate)))
        metrics = run.evaluate(state, split)
    finally:
        ckpt.close()
    return {"run_dir": run_dir, "checkpoint": used, "step": int(meta["step"]), "split": split, "rate": rate,
            "metrics": metrics}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    p.add_argument("--data-root", default=None, help="override data.root of the saved config")
    p.add_argument("--rate", type=float, default=1.0, help="relative sampling rate: every layer's step is rate x Δ")
    p.add_argument("--resolution", type=int, default=None, help="override data.resolution (subsampling factor)")
    a = p.parse_args(argv)
    try:
        out = evaluate_run(a.run_dir, a.split, a.checkpoint, a.data_root, a.rate, a.resolution)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
