#!/usr/bin/env python
"""Generate the synthetic Long Range Arena datasets offline, in the LRA release layout.

    python scripts/prepare_data.py listops --out DATA/listops [--train N --val N --test N --seed S]
    python scripts/prepare_data.py pathfinder --size {32,64,128,256} --contour {6,9,14} --out DATA/pathfinder
        [--n N --seed S --batch-size B --workers W]

``listops`` writes ``basic_{train,val,test}.tsv`` (96,000 / 2,000 / 2,000 rows by default).
``pathfinder`` writes ``<out>/pathfinder<size>/<difficulty>/{imgs/<b>/sample_<i>.png,
metadata/<b>.npy}`` (200,000 images by default, 1,000 per batch folder); ``--size 128 --contour 14``
is Path-X. With ``--data.root DATA`` the ``listops`` and ``pathfinder`` datasets read these.
Both use every core (``--workers``) and show a progress bar; the same seed gives the same files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def _count(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="task", required=True)
    lo = sub.add_parser("listops", help="LRA ListOps TSV files")
    lo.add_argument("--out", required=True, help="folder for basic_{train,val,test}.tsv")
    lo.add_argument("--train", type=_count, default=96_000)
    lo.add_argument("--val", type=_count, default=2_000)
    lo.add_argument("--test", type=_count, default=2_000)
    lo.add_argument("--seed", type=int, default=0)
    lo.add_argument("--workers", type=_positive, default=None, help="processes (default: every core)")
    pf = sub.add_parser("pathfinder", help="Pathfinder / Path-X images")
    pf.add_argument("--size", type=int, choices=(32, 64, 128, 256), required=True, help="image side (128 = Path-X)")
    pf.add_argument("--contour", type=int, choices=(6, 9, 14), default=14,
                    help="contour length: 6 curv_baseline, 9 curv_contour_length_9, 14 curv_contour_length_14")  # fmt: skip
    pf.add_argument("--out", required=True, help="folder that receives pathfinder<size>/<difficulty>/")
    pf.add_argument("--n", type=_positive, default=200_000, help="number of images")
    pf.add_argument("--seed", type=int, default=0)
    pf.add_argument("--batch-size", type=_positive, default=1000, help="images per imgs/<b>/ folder")
    pf.add_argument("--workers", type=_positive, default=None, help="processes (default: every core)")
    return p


def _cpu_seconds() -> float:
    """User + system time of this process and its finished workers."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), _cpu_seconds()
    if args.task == "listops":
        from ssm.data.lra_gen.listops import ListOpsParams, write_release

        params = ListOpsParams(num_train=args.train, num_val=args.val, num_test=args.test)
        paths = write_release(args.out, params, seed=args.seed, workers=args.workers)
        n = params.total
        where = os.path.dirname(paths["train"])
    else:
        from ssm.data.lra_gen.pathfinder import lra_params, write_release

        params = lra_params(args.size, args.contour)
        where = write_release(args.out, params, args.n, seed=args.seed, batch_size=args.batch_size,
                              workers=args.workers)  # fmt: skip
        n = args.n
    dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    print(f"wrote {n} examples to {where} in {dt:.1f} s wall ({n / dt:.1f}/s); CPU {cpu:.1f} s = "
          f"{1000 * cpu / n:.2f} ms per example per core; load average {load0:.1f} -> {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
