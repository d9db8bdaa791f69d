"""Start-up setting for the host memory of XLA:CPU programs: glibc's ``malloc`` backed by transparent huge pages.

XLA:CPU allocates a large step's buffers with ``malloc``; blocks above glibc's mmap threshold are mapped afresh
and zero-filled by the kernel on every call, page by 4 KiB page. On the project's 2-core CPU a Path-X train step
(batch 2) took 1.2-1.5 million page faults and 3.7-4.2 s of system time out of 14 CPU seconds; with glibc's
``glibc.malloc.hugetlb=1`` tunable (glibc >= 2.35: ``malloc`` marks its memory for transparent huge pages with
``madvise``) the same step took 3.7 thousand faults and 0.46 s of system time, and ran 28 % faster
(docs/benchmarks.md, "The step's OS time"). glibc reads its tunables once, when the process starts, so a program
that wants them re-executes itself: :func:`reexec_with_hugetlb_malloc`, called first thing by `scripts/train.py`,
`scripts/evaluate.py` and `scripts/generate.py` (not by `scripts/bench.py`, whose figures stay comparable with the
earlier ones; run it under ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` to time the training programs' setting).
``SSM_NO_HUGETLB_MALLOC=1`` turns it off; where the system disables transparent huge pages
(``/sys/kernel/mm/transparent_hugepage/enabled`` = ``never``) the tunable does nothing.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "SSM_NO_HUGETLB_MALLOC"


def hugetlb_env(environ: dict[str, str]) -> dict[str, str] | None:
    """``environ`` with :data:`TUNABLE` added to ``GLIBC_TUNABLES``, or None where nothing is to change: not Linux with
    glibc 2.35 or later, the opt-out set, or a ``glibc.malloc.hugetlb`` value already given (the user's choice)."""
    if sys.platform != "linux" or environ.get(OPT_OUT, "") not in ("", "0"):
        return None
    libc, version = platform.libc_ver()
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return None
    if libc != "glibc" or (major, minor) < (2, 35):
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in current:
        return None
    return {**environ, "GLIBC_TUNABLES": f"{current}:{TUNABLE}" if current else TUNABLE}


def reexec_with_hugetlb_malloc() -> None:
    """Replace this process by the same command (``sys.orig_argv``: interpreter options included) with
    :func:`hugetlb_env`'s environment; return at once where that is None (including in the re-executed process,
    whose ``GLIBC_TUNABLES`` then has the setting). Call it before anything else: nothing of this process survives."""
    env = hugetlb_env(dict(os.environ))
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
