"""Stopping on SIGINT (Ctrl-C) and SIGTERM (a scheduler's preemption) at a safe point.

A Python exception raised by a signal handler in the middle of start-up, compilation or an Orbax save
can leave the runtime's threads mid-operation (the interpreter then dies at exit with a segmentation
fault, or prints a traceback). So, while :class:`StopSignals` is active, the first SIGINT or SIGTERM
only records the request; the loop checks :meth:`StopSignals.check` between steps (and after each
start-up phase), saves a checkpoint and raises ``KeyboardInterrupt`` (SIGINT) or
:class:`~ssm.train.errors.Preempted` (SIGTERM, a ``KeyboardInterrupt`` too). A second signal of
either kind ends the process at once with exit code 130.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from ssm.train.errors import Preempted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130


class StopSignals:
    """Context manager: records SIGINT/SIGTERM (main thread only; elsewhere it does nothing)."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            sys.stderr.write(f"\n[ssm] second {signal.Signals(signum).name}: stopping now, without a checkpoint\n")
            sys.stderr.flush()
            os._exit(EXIT_CODE)
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def exception(self) -> KeyboardInterrupt:
        if self.signum == signal.SIGTERM:
            return Preempted("SIGTERM: stopped at a checkpoint; rerun the same command to resume")
        return KeyboardInterrupt()

    def check(self) -> None:
        """Raise now if a stop was requested (at a point where nothing needs saving)."""
        if self.requested:
            raise self.exception()

    def __exit__(self, *exc) -> bool:
        for s, old in self._old.items():
            signal.signal(s, old)
        return False
