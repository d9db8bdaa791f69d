"""Start-up setting for the host memory of XLA:CPU programs: glibc's ``malloc`` keeps the memory a step frees, on
transparent huge pages.

XLA:CPU takes every buffer of a step from ``malloc`` and frees it when the step is done. By default glibc maps large
blocks afresh (``mmap``) and gives them back (``munmap``) at each free, and its per-thread arenas give back the tops
of their heaps, so the kernel maps and zero-fills the step's working set again on every call, 4 KiB page by page:
on the project's 2-core CPU 0.4-1.5 million page faults and 0.7-2.6 s of system time per train step (``mnist.smnist``
batch 50, ``audio.sc09`` batch 1, ``lm.wt2`` batch 2, ``lra.pathx`` batch 2; docs/benchmarks.md, "The step's OS
time"). Four glibc tunables remove that:

- ``glibc.malloc.mmap_max=0``: no block is mapped on its own; all come from the heap and go back to it;
- ``glibc.malloc.arena_max=1``: one heap (the main arena) for all threads, so nothing is given back with a thread
  arena's heap;
- ``glibc.malloc.trim_threshold=2**36``: the heap's top is not returned to the system either;
- ``glibc.malloc.hugetlb=1`` (glibc >= 2.35): the heap is marked for transparent huge pages (``madvise``), which
  keeps the TLB cost of the reused memory down (``lm.wt2`` spent 25 % more user time without it; ``lra.listops``
  16 % more with it: the four together were the fastest of the settings measured on five of six presets).

After the first calls a step then takes no page faults at all. The cost is memory: the heap keeps its high-water
mark, and where the order of allocations varies between calls it can grow past the step's working set (``lra.pathx``
batch 2: 11.6 GiB after some steps against 6.3 GiB; the other presets measured stayed within 5 % of the default).
The previous setting here, ``glibc.malloc.hugetlb=1`` alone, still mapped and unmapped the large blocks: on
``mnist.smnist`` and ``audio.sc09`` every other step paid 1.6-2 s of system time (huge-page compaction).

glibc reads its tunables once, when the process starts, so a program that wants them re-executes itself:
:func:`reexec_with_tuned_malloc`, called first thing by `scripts/train.py`, `scripts/evaluate.py` and
`scripts/generate.py` (not by `scripts/bench.py`, whose figures stay comparable with the earlier ones; prefix it with
``GLIBC_TUNABLES=`` and :data:`TUNABLES` joined by ``:`` to time the training programs' setting).
``SSM_MALLOC`` picks the mode: ``keep`` (the default: the four tunables), ``hugepages`` (``glibc.malloc.hugetlb=1``
alone: the previous setting, the better one where memory is tight, e.g. ``lra.pathx`` on a CPU) or ``glibc`` (glibc's
defaults; so does the earlier ``SSM_NO_HUGETLB_MALLOC=1``). A ``GLIBC_TUNABLES`` that already sets any of the four is
left as it is (the user's choice).
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
TUNABLES = MODES["keep"]  # the default mode
OPT_OUT_OLD = "SSM_NO_HUGETLB_MALLOC"  # the earlier switch: 1 means SSM_MALLOC=glibc


def _names(tunables: str) -> set[str]:
    return {t.split("=", 1)[0].strip() for t in tunables.split(":") if t.strip()}


def tuned_env(environ: dict[str, str]) -> dict[str, str] | None:
    """``environ`` with the tunables of the ``SSM_MALLOC`` mode (:data:`MODES`, default ``keep``) added to
    ``GLIBC_TUNABLES``, or None where nothing is to change: not Linux with glibc 2.35 or later, the mode ``glibc``
    (or ``SSM_NO_HUGETLB_MALLOC=1``), or one of the mode's tunables already given (the user's choice, or this process
    is the re-executed one). An unknown mode is an error that names the choices."""
    mode = environ.get(MODE, "") or "keep"
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
    if _names(current) & _names(":".join(MODES["keep"])):
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
