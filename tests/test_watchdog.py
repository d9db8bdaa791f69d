"""The hang watchdog: a process that stops making progress exits with code 75 and says why."""

import subprocess
import sys

import pytest

from ssm.config import TrainConfig
from ssm.train.watchdog import HANG_EXIT_CODE

PROGRAM = """
import time
from ssm.train.watchdog import Watchdog
with Watchdog({timeout}, hint=" from runs/x") as w:
    for _ in range({kicks}):
        time.sleep(0.1)
        w.kick("training")
    w.kick("validation")
    time.sleep({idle})
print("finished")
"""


def _run(timeout, kicks, idle):
    code = PROGRAM.format(timeout=timeout, kicks=kicks, idle=idle)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_wedged_process_exits_with_code_and_message():
    p = _run(timeout=0.6, kicks=0, idle=20)
    assert p.returncode == HANG_EXIT_CODE
    assert "finished" not in p.stdout
    assert "no progress" in p.stderr and "during validation" in p.stderr
    assert "xla_cpu_multi_thread_eigen=false" in p.stderr and "resume from runs/x" in p.stderr


def test_kicks_keep_it_alive_and_exit_stops_it():
    # 2.5 s of work, kicked every 0.1 s, under a 0.8 s timeout; then 1.5 s after the watchdog is closed.
    code = PROGRAM.format(timeout=0.8, kicks=25, idle=0) + "\ntime.sleep(1.5)\nprint('after')\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["finished", "after"]


def test_timeout_is_validated():
    with pytest.raises(ValueError, match="train.hang_timeout_s"):
        TrainConfig(hang_timeout_s=0.0)
    assert TrainConfig(hang_timeout_s=None).hang_timeout_s is None
