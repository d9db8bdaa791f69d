#!/usr/bin/env python
"""Accuracy of rule baselines on a ListOps split (no learning of the nested structure).

    python scripts/listops_rules.py DATA [--depths 1 2 3]

``DATA`` is what ``--data.root`` takes for ``lra.listops`` (``DATA/listops/basic_*.tsv`` or the
release layouts). Prints, for the val and test splits, the prior, the outer-operator rule (most
frequent training label per outermost operator) and the exact evaluation truncated at depth d
below the root (``ssm/data/lra_gen/listops_rules.py``). A model's ListOps accuracy means
something only above these.
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
    args = p.parse_args(argv)
    from ssm.data import listops
    from ssm.data._files import DatasetNotFoundError
    from ssm.data.lra_gen.listops_rules import rule_accuracies

    try:
        folder = listops.find(args.root)
    except DatasetNotFoundError as e:
        print(e, file=sys.stderr)
        return 2

    def rows(split: str) -> list[tuple[str, int]]:
        texts, labels = listops.read_tsv(folder / listops.FILES[split])
        return list(zip(texts, labels.tolist()))

    train = rows("train")
    table = {s: rule_accuracies(train, rows(s), args.depths) for s in ("val", "test")}
    print(f"{'rule':<16}" + "".join(f"{s:>8}" for s in table))
    for rule in table["val"]:
        print(f"{rule:<16}" + "".join(f"{100 * table[s][rule]:>7.1f}%" for s in table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
