#!/usr/bin/env python
"""Evaluate a run: ``python scripts/evaluate.py RUN_DIR [--split test] [--checkpoint best|latest]``.

``--rate R`` evaluates at another sampling rate (every layer's Δ multiplied by R, as state-spaces/s4's ``rate`` and
lindermanlab/S5's ``step_rescale``), e.g. a
Speech Commands model trained at 16 kHz tested at 8 kHz: ``--rate 2 --resolution 2``. The model is always
rebuilt with its training-time sizes (S4's ``l_max`` stays the training sequence length, the length its
``C̃`` is defined for); ``--resolution`` only changes how the data are read, and is refused for a dataset
whose ``data.resolution`` is not a subsampling factor.

Restores the best checkpoint (by validation metric; the latest if there is no readable best one) without
building an optimizer, and prints ``{"run_dir": .., "step": .., "split": .., "weights": .., "metrics": {..}}``
as JSON on stdout. A run trained with ``--optim.ema-decay`` is evaluated with its moving average of the
weights (what its validation used); ``--weights raw`` evaluates the trained weights instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _subsampling(dataset, data_cfg, resolution: int) -> bool:
    """Whether ``data.resolution`` of this dataset keeps every r-th step (its length becomes ⌈L/r⌉)."""
    import dataclasses

    try:
        full = dataset.info(dataclasses.replace(data_cfg, resolution=1)).seq_len
        sub = dataset.info(dataclasses.replace(data_cfg, resolution=resolution)).seq_len
    except (ValueError, TypeError, AttributeError):
        return False
    return sub == -(-full // resolution) and (resolution == 1 or sub != full)


def evaluate_run(run_dir: str, split: str = "test", checkpoint: str = "best", data_root: str | None = None,
                 rate: float = 1.0, resolution: int | None = None, weights: str | None = None) -> dict:  # fmt: skip
    import dataclasses

    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from ssm.data import get_dataset
    from ssm.inference import AtRate, read_config, restore
    from ssm.train.evaluation import evaluate
    from ssm.train.loop import make_mesh

    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"--rate must be a positive number (got {rate})")
    if resolution is not None and resolution < 1:
        raise ValueError(f"--resolution must be a positive integer (got {resolution})")
    if split not in ("train", "val", "test"):
        raise ValueError(f"--split must be train, val or test (got {split!r})")
    cfg = read_config(run_dir)
    # Every device that divides the evaluation batch (the run may have trained on another device count).
    n_dev = math.gcd(cfg.data.eval_batch_size, jax.device_count()) if jax.process_count() == 1 else None
    mesh = make_mesh(n_dev)
    replicated, sharded = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    model, model_state, cfg, info, meta, which = restore(run_dir, checkpoint=checkpoint, data_root=data_root,
                                                         sharding=replicated, cfg=cfg, weights=weights)  # fmt: skip
    dataset = get_dataset(cfg.data.name)
    data_cfg = cfg.data
    # A dataset without a resolution option (typed per-dataset options) reads as resolution 1.
    if resolution is not None and resolution != (getattr(cfg.data, "resolution", None) or 1):
        if not _subsampling(dataset, cfg.data, resolution):
            raise ValueError(f"--resolution: dataset {cfg.data.name!r} has no subsampling resolution option "
                             "(it only applies to datasets read every r-th sample, e.g. Speech Commands)")  # fmt: skip
        data_cfg = dataclasses.replace(cfg.data, resolution=resolution)
    if rate != 1.0:
        model = AtRate(model, float(rate))

    def to_global(batch):
        return {k: jax.make_array_from_process_local_data(sharded, np.asarray(v)) for k, v in batch.items()}

    metrics = evaluate(model, model_state, dataset.load(data_cfg, split), task=info.task,
                       batch_size=cfg.data.eval_batch_size, to_global=to_global, max_batches=cfg.train.eval_batches,
                       bucket=cfg.data.length_bucket)  # fmt: skip
    return {"run_dir": run_dir, "checkpoint": which, "step": int(meta["step"]), "split": split, "weights": meta["weights"], "rate": rate,
            "resolution": getattr(data_cfg, "resolution", None), "metrics": metrics}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    p.add_argument("--data-root", default=None, help="override data.root of the saved config")
    p.add_argument("--rate", type=float, default=1.0, help="relative sampling rate: every layer's step is rate x Δ")
    p.add_argument("--resolution", type=int, default=None, help="override data.resolution (subsampling factor)")
    p.add_argument("--weights", default=None, choices=["ema", "raw"],
                   help="ema: the moving average of the weights (the default when the run kept one); "
                   "raw: the trained weights")  # fmt: skip
    a = p.parse_args(argv)
    try:
        out = evaluate_run(a.run_dir, a.split, a.checkpoint, a.data_root, a.rate, a.resolution, a.weights)
    except (FileNotFoundError, ValueError) as e:  # RunError (a damaged run directory) is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    import host_memory  # scripts/host_memory.py: glibc's malloc in the SSM_MALLOC mode

    host_memory.reexec_with_tuned_malloc()
    sys.exit(main())
