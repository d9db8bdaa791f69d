"""A hang watchdog for the training loop.

On CPU, XLA can deadlock inside a computation: an FFT thunk running on a worker of the Eigen
intra-op pool hands that same pool to the FFT library, which waits for sub-tasks that need a free
worker; with every worker waiting, the process sleeps forever (all threads in ``futex_wait``, no
CPU). FFT-heavy SSM models hit it intermittently. The watchdog turns such a silent hang into an exit
with :data:`HANG_EXIT_CODE` and a message, so that a supervisor (or the user) reruns the same
command, which resumes from the last checkpoint. ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``
avoids the deadlock at the price of single-threaded CPU ops.
"""

from __future__ import annotations

import os
import sys
import threading
import time

HANG_EXIT_CODE = 75  # EX_TEMPFAIL: try again (the run resumes)


class Watchdog:
    """Exits the process with :data:`HANG_EXIT_CODE` when :meth:`kick` has not been called for
    ``timeout_s`` seconds. ``timeout_s=None`` disables it. Use as a context manager."""

    def __init__(self, timeout_s: float | None, hint: str = ""):
        self.timeout_s = timeout_s
        self.hint = hint
        self.phase = "start-up"
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def kick(self, phase: str | None = None) -> None:
        self._last = time.monotonic()
        if phase is not None:
            self.phase = phase

    def _watch(self) -> None:
        assert self.timeout_s is not None
        poll = min(10.0, self.timeout_s / 4)
        while not self._stop.wait(poll):
            idle = time.monotonic() - self._last
            if idle > self.timeout_s:
                sys.stderr.write(
                    f"\n[ssm] no progress for {idle:.0f} s (train.hang_timeout_s={self.timeout_s:g}) during "
                    f"{self.phase}: the process looks wedged (on CPU, most likely XLA's FFT thread-pool deadlock; "
                    f"XLA_FLAGS=--xla_cpu_multi_thread_eigen=false avoids it). Exiting with code {HANG_EXIT_CODE}; "
                    f"rerun the same command to resume{self.hint}.\n"
                )
                sys.stderr.flush()
                sys.stdout.flush()
                os._exit(HANG_EXIT_CODE)

    def __enter__(self) -> Watchdog:
        if self.timeout_s is not None:
            self.kick()
            self._thread = threading.Thread(target=self._watch, name="ssm-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return False
