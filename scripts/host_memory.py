"""Start-up setting for the host memory of XLA:CPU programs: glibc's ``malloc`` on transparent huge pages.

XLA:CPU takes every buffer of a step from ``malloc`` and frees it when the step is done. By default glibc maps large
blocks afresh (``mmap``) and gives them back (``munmap``) at each free, so the kernel maps and zero-fills much of the
step's working set again on every call, 4 KiB page by page: on the project's 2-core CPU 0.1-1.5 million page faults
and 0.2-2.6 s of system time per train step (docs/benchmarks.md, "The step's OS time"). Modes, picked by the
environment variable ``SSM_MALLOC``:

- ``hugepages`` (the default): ``glibc.malloc.hugetlb=1`` (glibc >= 2.35: ``malloc`` marks its memory for
  transparent huge pages with ``madvise``), so the same memory is faulted in 2 MiB at a time. Over 8 consecutive
  steps the mean step time fell by 3-26 % on six presets and rose on none; on ``mnist.smnist`` and ``audio.sc09``
  every other step still paid 1.3-2.0 s of system time (huge-page compaction), so their median flatters them.
- ``keep``: also ``glibc.malloc.mmap_max=0``, ``glibc.malloc.arena_max=1`` and a 64 GiB
  ``glibc.malloc.trim_threshold``: every block comes from one heap and goes back to it, nothing is returned to the
  system, and after the first calls a step takes no page faults at all. Fastest where it is steady
  (``mnist.smnist`` 1.61 s against 2.30 s by default and 2.23 s with ``hugepages``), but the heap keeps its
  high-water mark and can grow past the working set when the order of allocations changes (``lra.pathx`` batch 2:
  11.3 GiB against 5.9 GiB, and a 10.8 s step when it grew), and a step's compute time then depends on where its
  buffers land (``audio.sc09``: steady 1.65-1.7 s in three runs, 1.7-3.2 s in a fourth). Not the default for that.
- ``glibc``: glibc's defaults (also ``SSM_NO_HUGETLB_MALLOC=1``, the earlier switch).

glibc reads its tunables once, when the process starts, so a program that wants them re-executes itself:
:func:`reexec_with_tuned_malloc`, called first thing by `scripts/train.py`, `scripts/evaluate.py` and
`scripts/generate.py`. `scripts/bench.py` starts its timing workers under a mode's tunables instead (``--malloc``,
default the same ``hugepages``, so that it times the programs as they run; ``--malloc glibc`` for the setting of
its figures before 2026-12-07 11:00 UTC). A ``GLIBC_TUNABLES`` that already sets any of the four is left as it is
(the user's choice).
"""

from __future__ import annotations

import os
import platform
import sys

MODES = {
    "keep": (
        "glibc.malloc.mmap_max=0",
        "glibc.malloc.arena_max=1",
        f"glibc.malloc.trim_threshold={1 << 36}",
        "glibc.malloc.hugetlb=1",
    ),
    "hugepages": ("glibc.malloc.hugetlb=1",),
    "glibc": (),
}
MODE = "SSM_MALLOC"
DEFAULT = "hugepages"
OPT_OUT_OLD = "SSM_NO_HUGETLB_MALLOC"  # the earlier switch: 1 means SSM_MALLOC=glibc


def _names(tunables: str) -> set[str]:
    return {t.split("=", 1)[0].strip() for t in tunables.split(":") if t.strip()}


_ALL_NAMES = _names(":".join(t for tunables in MODES.values() for t in tunables))  # every mode's tunables


def tuned_env(environ: dict[str, str]) -> dict[str, str] | None:
    """``environ`` with the tunables of the ``SSM_MALLOC`` mode (:data:`MODES`, default ``hugepages``) added to
    ``GLIBC_TUNABLES``, or None where nothing is to change: not Linux with glibc 2.35 or later, the mode ``glibc``
    (or ``SSM_NO_HUGETLB_MALLOC=1``), or one of the mode's tunables already given (the user's choice, or this process
    is the re-executed one). An unknown mode is an error that names the choices."""
    mode = environ.get(MODE, "") or DEFAULT
    if mode not in MODES:
        raise SystemExit(f"{MODE}={mode!r} is not a host-memory mode: use one of {', '.join(MODES)} "
                         "(scripts/host_memory.py)")
    if environ.get(OPT_OUT_OLD, "") not in ("", "0"):
        mode = "glibc"
    if sys.platform != "linux" or not MODES[mode]:
        return None
    libc, version = platform.libc_ver()
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return None
    if libc != "glibc" or (major, minor) < (2, 35):
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if _names(current) & _ALL_NAMES:
        return None
    added = ":".join(MODES[mode])
    return {**environ, "GLIBC_TUNABLES": f"{current}:{added}" if current else added}


def reexec_with_tuned_malloc() -> None:
    """Replace this process by the same command (``sys.orig_argv``: interpreter options included) with
    :func:`tuned_env`'s environment; return at once where that is None (including in the re-executed process,
    whose ``GLIBC_TUNABLES`` then has the setting). Call it before anything else: nothing of this process survives."""
    env = tuned_env(dict(os.environ))
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
