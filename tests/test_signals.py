"""Signals and kills at chosen moments of ``scripts/train.py`` (tiny ``demo.digits`` runs in subprocesses):
Ctrl-C during compilation exits 130 cleanly, SIGTERM saves a checkpoint and exits like Ctrl-C, and a
SIGKILL during a ``best/`` save never leaves ``best/`` behind the run."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import textwrap
import threading
import time

import pytest

from _train_helpers import PYTHON, REPO, subprocess_env

TINY = ["--cfg", "demo.digits", "--model.d-model", "8", "--model.n-layers", "1", "--model.d-state", "4",
        "--data.batch-size", "16", "--train.log-every", "1", "--train.eval-every", "0", "--train.save-every", "1000",
        "--train.eval-splits", "val", "--train.eval-batches", "1", "--train.progress", "lines"]  # fmt: skip
WAIT = 240  # seconds: a bound on every wait (the start-up compiles on a busy 2-core machine)


class _Proc:
    """A ``scripts/train.py`` subprocess whose stdout lines and stderr are read by threads (no pipe fills up)."""

    def __init__(self, run_dir, steps: int):
        args = [PYTHON, os.path.join(REPO, "scripts", "train.py"), *TINY, "--train.steps", str(steps),
                "--train.run-dir", str(run_dir)]  # fmt: skip
        self.p = subprocess.Popen(args, env=subprocess_env(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []

        def read_out():
            for x in self.p.stdout:
                self.out.append(x)
                self.lines.put(x)

        self.threads = [threading.Thread(target=read_out, daemon=True),
                        threading.Thread(target=lambda: self.err.extend(self.p.stderr), daemon=True)]  # fmt: skip
        for t in self.threads:
            t.start()

    def wait_for(self, prefix: str) -> str:
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.p.poll() is None, f"exited ({self.p.returncode}) before {prefix!r}: {''.join(self.err)[-2000:]}"
                continue
            if line.startswith(prefix):
                return line
        self.p.kill()
        raise AssertionError(f"no {prefix!r} line within {WAIT} s")

    def finish(self) -> tuple[int, str, str]:
        try:
            self.p.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise
        for t in self.threads:
            t.join(timeout=10)
        return self.p.returncode, "".join(self.out), "".join(self.err)


def _checkpoints(run_dir, which="checkpoints") -> list[int]:
    d = os.path.join(run_dir, which)
    return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def test_ctrl_c_during_set_up_lets_it_finish_then_stops_without_a_checkpoint(tmp_path, monkeypatch):
    """A SIGINT in the middle of ``train``'s set-up (here: while the model and optimizer are built) does not
    interrupt it mid-way (where native threads may be running); the run stops right after it."""
    import ssm.train.loop as loop
    from _train_helpers import register, tiny_config

    register(monkeypatch)
    finished = []
    original = loop.build

    def build(cfg):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs here
        run = original(cfg)
        finished.append(True)
        return run

    monkeypatch.setattr(loop, "build", build)
    cfg = tiny_config(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        loop.train(cfg, verbose=False)
    assert finished == [True]
    assert _checkpoints(cfg.train.run_dir) == []  # nothing trained, nothing saved


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_ctrl_c_during_compilation_exits_130(tmp_path):
    """SIGTERM saves the step it stopped at and exits 130; the same command resumes from it; a Ctrl-C while the
    resumed run compiles its first step exits 130 with no traceback (the rerun is the process that test needs:
    one subprocess fewer than a separate test)."""
    run_dir = tmp_path / "run"
    p = _Proc(run_dir, steps=100_000)
    p.wait_for("step 3/")
    p.p.send_signal(signal.SIGTERM)
    rc, out, err = p.finish()
    assert rc == 130 and "Traceback" not in err, err[-3000:]
    saved = _checkpoints(run_dir)
    assert len(saved) == 1 and 3 <= saved[0] < 100_000, saved  # the step it stopped at (no cadence save)
    assert f"SIGTERM: checkpoint of step {saved[0]} saved" in out, out[-2000:]
    p = _Proc(run_dir, steps=100_000)
    resumed = p.wait_for("[ssm] resuming")  # printed just before the first step is compiled
    assert resumed.strip().endswith(f"from step {saved[0]}"), resumed
    p.p.send_signal(signal.SIGINT)
    rc, out, err = p.finish()
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err and "Ctrl-C" in err, err[-3000:]


KILL_DURING_BEST = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_num_cpu_devices", 4)
    jax.config.update("jax_enable_x64", True)
    import os, signal, sys
    from orbax.checkpoint._src.path import atomicity
    from _train_helpers import register, tiny_config
    from ssm.train import train

    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self):
        # die while the new best checkpoint of step 16 is being committed
        if self._final_path.name == "16" and self._final_path.parent.name == "best":
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize
    register()
    train(tiny_config(sys.argv[1], train=dict(eval_every=8, save_every=8)), verbose=False)
    """
)


def test_sigkill_during_a_best_save_never_leaves_best_behind(tmp_path, monkeypatch):
    from _train_helpers import register, tiny_config
    from ssm.train import train
    from ssm.train.tracker import read_metrics

    run_dir = str(tmp_path / "run")
    script = tmp_path / "killed.py"
    script.write_text(KILL_DURING_BEST)
    p = subprocess.run([PYTHON, str(script), run_dir], env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    if p.returncode == 0:
        pytest.skip("validation at step 16 was not a new best with this toy run: no best save to interrupt")
    assert p.returncode == -9, p.stderr[-3000:]
    assert _checkpoints(run_dir, "best") == [8]  # the new best of step 16 was being written
    assert 16 not in _checkpoints(run_dir)  # ... and the latest checkpoint of step 16 comes after it
    register(monkeypatch)
    cfg = tiny_config(run_dir, train=dict(eval_every=8, save_every=8))
    res = train(cfg, verbose=False)
    vals = {e["step"]: e["accuracy"] for e in read_metrics(run_dir) if e["split"] == "val"}
    best_step = min(s for s, a in vals.items() if a == max(vals.values()))
    assert best_step >= 16 and res["best"]["step"] == best_step
    assert _checkpoints(run_dir, "best") == [best_step]
