#!/usr/bin/env python
"""Training curves: ``python scripts/plot.py RUN_DIR [RUN_DIR ...] --out curves.png``.

One panel per quantity found in the runs' ``metrics.jsonl`` (training loss, every validation/test
metric, the learning rate), against the step, one line per run.
"""

from __future__ import annotations

import argparse
import os
import sys


def load(run_dir: str) -> list[dict]:
    """The events of ``RUN_DIR/metrics.jsonl``; damaged lines are named on stderr and skipped."""
    import warnings

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from ssm.train.tracker import read_metrics

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = read_metrics(run_dir)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if not events:
        raise FileNotFoundError(f"{os.path.join(run_dir, 'metrics.jsonl')} holds no readable event")
    return events


SKIP = {"step", "split", "steps_per_s", "examples_per_s", "grad_norm"}


def series(events: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """``{"train/loss": (steps, values), "val/accuracy": ..., "lr": ...}`` (later events win on
    repeated steps, e.g. after a resume)."""
    out: dict[str, dict[int, float]] = {}
    for e in events:
        for k, v in e.items():
            if k in SKIP or not isinstance(v, (int, float)):
                continue
            name = k if k in ("lr", "ssm_lr") else f"{e['split']}/{k}"
            out.setdefault(name, {})[int(e["step"])] = float(v)
    return {k: (sorted(d), [d[s] for s in sorted(d)]) for k, d in out.items()}


def plot(run_dirs: list[str], out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {d: series(load(d)) for d in run_dirs}
    names = sorted({k for s in runs.values() for k in s}, key=lambda k: (k not in ("train/loss",), k in ("lr", "ssm_lr"), k))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.5 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for d, s in runs.items():
            if name in s:
                ax.plot(*s[name], label=os.path.basename(os.path.normpath(d)), marker="." if len(s[name][0]) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        if name.endswith("loss") and all(v > 0 for s in runs.values() if name in s for v in s[name][1]):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default="curves.png")
    a = p.parse_args(argv)
    try:
        names = plot(a.run_dirs, a.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
