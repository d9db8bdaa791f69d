"""Checkpoints under faults: a run killed during a save, a corrupted latest checkpoint; retention,
the best checkpoint and scripts/evaluate.py."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from _train_helpers import PYTHON, leaves, load_state, register, subprocess_env, tiny_config
from ssm.train import CheckpointWarning, train
from ssm.train.tracker import read_metrics

# Tiny runs whose time is nearly all compilation: XLA's LLVM backend at -O0 (conftest.py's quick_compile), except
# where a result must be bit-identical across programs (test_killed_during_save_resumes_from_last_complete_checkpoint):
# that is checked as compiled for users.
quick = pytest.mark.usefixtures("quick_compile")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    register(monkeypatch)


def _losses_by_occurrence(run_dir):
    """Train losses per step, in the order logged (a step logged twice: before and after a resume)."""
    out: dict[int, list[float]] = {}
    for e in read_metrics(run_dir):
        if e["split"] == "train":
            out.setdefault(e["step"], []).append(e["loss"])
    return out


KILLED = textwrap.dedent(
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
        # the arrays of step 16 are written; die before the checkpoint is committed
        if self._final_path.name == "16" and self._final_path.parent.name == "checkpoints":
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize
    register()
    train(tiny_config(sys.argv[1], train=dict(eval_every=0)), verbose=False)
    """
)


def test_killed_during_save_resumes_from_last_complete_checkpoint(tmp_path):
    run_dir = str(tmp_path / "run")
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    p = subprocess.run([PYTHON, str(script), str(run_dir)], env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert p.returncode == -9, p.stderr[-3000:]
    ckpts = tmp_path / "run" / "checkpoints"
    assert glob.glob(str(ckpts / "16.orbax-checkpoint-tmp*")), os.listdir(ckpts)  # the interrupted save
    assert not (ckpts / "16").exists()
    killed = {e["step"]: e["loss"] for e in read_metrics(run_dir) if e["split"] == "train"}
    cfg = tiny_config(run_dir, train=dict(eval_every=0))
    train(cfg, verbose=False)  # rerun the same command: resumes from step 8
    losses = _losses_by_occurrence(run_dir)
    # the killed run logged steps 1..k (k >= 16: it trains on while the save is in the background); the
    # rerun resumed from step 8, dropped the killed run's events after step 8 from metrics.jsonl and logged
    # 9..24 once each, retracing the killed run's steps exactly
    assert sorted(losses) == list(range(1, 25)) and max(killed) >= 16
    assert all(len(v) == 1 for v in losses.values()), {s: v for s, v in losses.items() if len(v) > 1}
    for s in killed:
        assert losses[s][0] == killed[s], s
    assert not glob.glob(str(ckpts / "*.orbax-checkpoint-tmp*"))  # cleaned up
    assert load_state(cfg)[1]["step"] == 24


def _corrupt(step_dir):
    """Overwrite the array data files of a checkpoint's state item with garbage."""
    files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True)
             if os.path.isfile(f) and os.sep + "d" + os.sep in f]  # fmt: skip
    assert files, os.listdir(os.path.join(step_dir, "state"))
    for f in files:
        with open(f, "wb") as fh:
            fh.write(b"\x00garbage" * 3)


@quick
def test_corrupted_latest_is_skipped_with_a_warning_naming_it(tmp_path):
    cfg = tiny_config(tmp_path / "run", train=dict(steps=24, eval_every=0, save_every=8))
    first = tiny_config(tmp_path / "run", train=dict(steps=24, eval_every=0, save_every=8))
    # train 16 steps (checkpoints 8 and 16), by interrupting a 24-step run after step 16's save
    from test_train import _InterruptAt

    tracker = _InterruptAt(os.path.join(cfg.train.run_dir, "metrics.jsonl"), at=16)
    with pytest.raises(KeyboardInterrupt):
        train(first, tracker=tracker, verbose=False)
    tracker.close()
    step16 = os.path.join(cfg.train.run_dir, "checkpoints", "16")
    _corrupt(step16)
    before = {e["step"]: e["loss"] for e in read_metrics(cfg.train.run_dir) if e["split"] == "train"}
    with pytest.warns(CheckpointWarning, match=r"checkpoint step 16 at .*checkpoints/16 is unreadable"):
        train(cfg, verbose=False)
    losses = _losses_by_occurrence(cfg.train.run_dir)
    assert sorted(losses) == list(range(1, 25)) and all(len(v) == 1 for v in losses.values())
    for s in range(9, 17):  # resumed from step 8 and retraced steps 9..16 identically
        assert losses[s][0] == before[s]
    assert load_state(cfg)[1]["step"] == 24
    # the damaged step 16 was saved again when it was recomputed (keep=2: steps 16 and 24 remain)
    assert sorted(int(d) for d in os.listdir(os.path.dirname(step16)) if d.isdigit()) == [16, 24]
    from ssm.train.checkpoint import Checkpoints
    from ssm.train.loop import build

    run = build(cfg)
    ck = Checkpoints(cfg.train.run_dir, async_save=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CheckpointWarning)  # no checkpoint is skipped any more
            (model, _), meta, which = ck.restore_model((run.abstract.model, run.abstract.model_state),
                                                       checkpoint="latest", step=16)  # fmt: skip
    finally:
        ck.close()
    assert meta["step"] == 16 and which == "latest"
    assert all(np.isfinite(x).all() for x in leaves(model) if x.dtype.kind == "f")


@quick
def test_retention_best_checkpoint_and_evaluate_script(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", train=dict(steps=24, eval_every=4, save_every=4, keep=2))
    res = train(cfg, verbose=False)
    ckpts = sorted(int(d) for d in os.listdir(os.path.join(cfg.train.run_dir, "checkpoints")) if d.isdigit())
    assert ckpts == [20, 24]
    best = sorted(int(d) for d in os.listdir(os.path.join(cfg.train.run_dir, "best")) if d.isdigit())
    assert best == [res["best"]["step"]]
    vals = [(e["step"], e["accuracy"]) for e in read_metrics(cfg.train.run_dir) if e["split"] == "val"]
    best_acc = max(a for _, a in vals)
    assert res["best"]["value"] == best_acc
    assert res["best"]["step"] == min(s for s, a in vals if a == best_acc)  # first time the best was reached
    state, meta = load_state(cfg, which="best")
    assert meta["step"] == res["best"]["step"] == int(state.step)

    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        import evaluate
    finally:
        sys.path.pop(0)
    capsys.readouterr()
    assert evaluate.main([cfg.train.run_dir, "--split", "val"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checkpoint"] == "best" and out["step"] == res["best"]["step"] and out["split"] == "val"
    assert out["metrics"]["accuracy"] == pytest.approx(best_acc, abs=1e-12)
    assert evaluate.main([cfg.train.run_dir, "--split", "test", "--checkpoint", "latest"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 24 and out["metrics"]["loss"] == pytest.approx(res["test"]["loss"], rel=1e-12)
    assert evaluate.main([str(tmp_path / "nothing")]) == 2
    assert "config.json" in capsys.readouterr().err
    # the state restored from the latest checkpoint has the final step's arrays
    latest, _ = load_state(cfg)
    assert all(np.isfinite(x).all() for x in leaves(latest) if x.dtype.kind == "f")


@quick
def test_plot_script(tmp_path):
    cfg = tiny_config(tmp_path / "run", train=dict(eval_every=8, save_every=0))
    train(cfg, verbose=False)
    out = tmp_path / "curves.png"
    p = subprocess.run([PYTHON, os.path.join(REPO, "scripts", "plot.py"), cfg.train.run_dir, cfg.train.run_dir,
                        "--out", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 10_000
    assert "train/loss" in p.stdout and "val/accuracy" in p.stdout and "lr" in p.stdout
