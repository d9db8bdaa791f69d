"""The expected ways a run stops, each with its own exit code for ``scripts/train.py``.

Every class is a ``ValueError`` (or, for the stops asked by a signal, a ``KeyboardInterrupt``), so a
caller that maps those to "one-line error" / "exit 130" already handles them; ``exit_code`` tells the
failures apart (``sys.exit(getattr(e, "exit_code", 2))``).
"""

from __future__ import annotations


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
