"""The expected ways a run stops, each with its own exit code for ``scripts/train.py``.

Every class is a ``ValueError`` (or, for the stops asked by a signal, a ``KeyboardInterrupt``), so a
caller that maps those to "one-line error" / "exit 130" already handles them; ``exit_code`` tells the
failures apart (``sys.exit(getattr(e, "exit_code", 2))``).
"""

from __future__ import annotations

import errno
import os
import re

# errno values that mean "this run directory cannot be written" (not a bug: a one-line error).
RUN_DIR_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


class RunError(ValueError):
    """A run that cannot start or go on, for a reason the message names (no traceback needed)."""

    exit_code = 2


class TrainingDiverged(RunError, RuntimeError):
    """The loss or the parameters became non-finite."""

    exit_code = 3


class RunDirMismatch(RunError):
    """The run directory holds another run (another config, model structure, or unreadable checkpoints)."""

    exit_code = 4


class RunDirUnusable(RunError):
    """The run directory cannot be written (permissions, read-only file system, full disk) or is damaged."""

    exit_code = 5


class DataMissing(RunError):
    """The dataset's files are not where the config says."""

    exit_code = 6


class Preempted(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption): a checkpoint was saved; rerunning resumes. Exits like Ctrl-C."""

    exit_code = 130


def run_dir_os_error(e: BaseException | None) -> OSError | None:
    """The "cannot write here" OSError behind ``e`` (None: no exception), or None. Orbax writes arrays through TensorStore, whose
    failures arrive as ``ValueError("RESOURCE_EXHAUSTED: Error writing local file \"F\": ...
    [os_error_code='28']")`` rather than as an OSError; those are read back into one."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in RUN_DIR_ERRNOS:
            return e
        m = re.search(r"os_error_code='(\d+)'", str(e))
        if m and int(m.group(1)) in RUN_DIR_ERRNOS:
            f = re.search(r'local file "([^"]+)"', str(e))
            return OSError(int(m.group(1)), os.strerror(int(m.group(1))), f.group(1) if f else None)
        e = e.__cause__ or e.__context__
    return None
