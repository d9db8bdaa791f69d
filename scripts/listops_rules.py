#!/usr/bin/env python
"""Accuracy of rule baselines on a ListOps release folder (no learning of the nested structure).

    python scripts/listops_rules.py DATA/listops [--task basic] [--depths 1 2 3]

Prints, for the val and test splits, the prior, the outer-operator rule (most frequent training
label per outermost operator) and the exact evaluation truncated at depth d below the root
(``ssm/data/lra_gen/listops_rules.py``). A model's ListOps accuracy means something only above these.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="folder holding <task>_{train,val,test}.tsv")
    p.add_argument("--task", default="basic", help="file prefix (default: basic)")
    p.add_argument("--depths", type=int, nargs="*", default=[1, 2, 3])
    args = p.parse_args(argv)
    from ssm.data.lra_gen.listops_rules import read_rows, rule_accuracies

    paths = {s: args.folder / f"{args.task}_{s}.tsv" for s in ("train", "val", "test")}
    missing = [str(q) for q in paths.values() if not q.is_file()]
    if missing:
        p.error(f"missing {', '.join(missing)}: generate the data with "
                f"python scripts/prepare_data.py listops --out {args.folder}")  # fmt: skip
    train = read_rows(paths["train"])
    print(f"{'rule':<16}" + "".join(f"{s:>8}" for s in ("val", "test")))
    table = {s: rule_accuracies(train, read_rows(paths[s]), args.depths) for s in ("val", "test")}
    for rule in table["val"]:
        print(f"{rule:<16}" + "".join(f"{100 * table[s][rule]:>7.1f}%" for s in ("val", "test")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
