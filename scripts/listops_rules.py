#!/usr/bin/env python
"""Accuracy of rule baselines on a ListOps split (no learning of the nested structure).

    python scripts/listops_rules.py DATA [--depths 1 2 3] [--run RUN_DIR [--checkpoint best|latest]]

``DATA`` is what ``--data.root`` takes for ``lra.listops`` (``DATA/listops/basic_*.tsv`` or the
release layouts). Prints, for the val and test splits, the prior, the outer-operator rule (most
frequent training label per outermost operator) and the exact evaluation truncated at depth d
below the root (``ssm/data/lra_gen/listops_rules.py``). A model's ListOps accuracy means
something only above these.

With ``--run``, a trained ``lra.listops`` model (its best or latest checkpoint) answers the same rows:
the script adds its accuracy and, per rule, the fraction of rows where it answers as the rule does. A
model that agrees with the outer-operator rule on ~95% of the rows has learned that rule, whatever
its accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="the data root (as --data.root)")
    p.add_argument("--depths", type=int, nargs="*", default=[1, 2, 3])
    p.add_argument("--run", help="a trained lra.listops run directory: add its accuracy and agreement with each rule")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    args = p.parse_args(argv)
    from ssm.data import listops
    from ssm.data._files import DatasetNotFoundError
    from ssm.data.lra_gen.listops_rules import agreement, rule_predictions

    try:
        folder = listops.find(args.root)
    except DatasetNotFoundError as e:
        print(e, file=sys.stderr)
        return 2

    def rows(split: str) -> list[tuple[str, int]]:
        texts, labels = listops.read_tsv(folder / listops.FILES[split])
        return list(zip(texts, labels.tolist()))

    train = rows("train")
    splits = ("val", "test")
    labelled = {s: rows(s) for s in splits}
    answers = {s: rule_predictions(train, [src for src, _ in labelled[s]], args.depths) for s in splits}
    labels = {s: [y for _, y in labelled[s]] for s in splits}
    print(f"{'rule':<24}" + "".join(f"{s:>8}" for s in splits))
    for rule in answers["val"]:
        print(f"{rule:<24}" + "".join(f"{100 * agreement(answers[s][rule], labels[s]):>7.1f}%" for s in splits))
    if args.run:
        model_answers = {s: _model_answers(args.run, args.checkpoint, args.root, s) for s in splits}
        print(f"\nmodel {args.run} ({args.checkpoint} checkpoint)")
        print(f"{'accuracy':<24}" + "".join(f"{100 * agreement(model_answers[s], labels[s]):>7.1f}%" for s in splits))
        for rule in answers["val"]:
            print(f"{'agrees ' + rule:<24}"
                  + "".join(f"{100 * agreement(model_answers[s], answers[s][rule]):>7.1f}%" for s in splits))  # fmt: skip
    return 0


def _model_answers(run_dir: str, checkpoint: str, root: Path, split: str, batch: int = 64) -> list[int]:
    """The run's predicted class per row of ``split``, in file order. Rows are sorted by length and each
    batch is cut to a multiple of 256 steps past its longest row (exact for a model trained with
    ``mask_padding``, the only kind that length buckets train)."""
    import numpy as np

    from ssm.data import get_dataset
    from ssm.inference import load

    model, cfg = load(run_dir, checkpoint=checkpoint, data_root=str(root))
    if cfg.data.name != "listops":
        raise SystemExit(f"error: {run_dir} is a {cfg.data.name!r} run, not a ListOps one")
    arrays = get_dataset("listops").load(cfg.data, split).arrays
    x, n = arrays["inputs"], arrays["lengths"]
    order = np.argsort(n, kind="stable")
    out = np.zeros(len(n), np.int64)
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        cut = x.shape[1] if not cfg.model.mask_padding else min(x.shape[1], -(-int(n[idx].max()) // 256) * 256)
        logits = model.predict(x[idx, :cut], lengths=n[idx], batch_size=batch)
        out[idx] = np.asarray(logits).argmax(-1)
    return out.tolist()


if __name__ == "__main__":
    sys.exit(main())
