"""The training loop end to end on a tiny synthetic task (S4D, BatchNorm, dropout, float64)."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

from _train_helpers import leaves, load_state, register, tiny_config, train_losses
from ssm.config import config_from_dict
from ssm.train import TrainingDiverged, train
from ssm.train.optimizer import schedule
from ssm.train.tracker import JsonlTracker, Tracker, read_metrics

# Tiny runs whose time is nearly all compilation: XLA's LLVM backend at -O0 (conftest.py's quick_compile), except
# where a result must be bit-identical across programs (test_resume_is_bit_identical_and_ctrl_c_saves):
# that is checked as compiled for users.
quick = pytest.mark.usefixtures("quick_compile")


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    register(monkeypatch)


@quick
def test_loss_falls_and_run_dir_contents(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", train=dict(progress="lines"))
    res = train(cfg)
    losses = train_losses(cfg.train.run_dir)
    assert sorted(losses) == list(range(1, 25))
    first, last = np.mean([losses[s] for s in (1, 2, 3)]), np.mean([losses[s] for s in (22, 23, 24)])
    assert last < 0.7 * first, (first, last)
    assert res["val"]["accuracy"] > 0.8 and res["test"]["accuracy"] > 0.8  # 4 classes: chance is 0.25
    # metrics.jsonl: one object per event with step and split; the lr of every step's update
    events = read_metrics(cfg.train.run_dir)
    assert {e["split"] for e in events} == {"train", "val", "test"}
    lr = schedule(cfg.optim.lr, cfg.optim, cfg.train.steps)
    for e in (e for e in events if e["split"] == "train"):
        assert e["lr"] == pytest.approx(float(lr(e["step"] - 1)), rel=1e-12)
        assert {"loss", "accuracy", "grad_norm", "ssm_lr", "steps_per_s", "examples_per_s"} <= set(e)
    # warmup of 2 steps then cosine to 0 at step 24: the update of step 1 uses lr 0, step 3 the peak
    assert [e["lr"] for e in events if e["split"] == "train"][:3] == pytest.approx([0.0, 1e-2, 2e-2])
    with open(os.path.join(cfg.train.run_dir, "config.json")) as f:
        assert config_from_dict(json.load(f)) == cfg
    out = capsys.readouterr().out
    assert "steps/s" in out and "ex/s" in out and "ETA" in out and "loss" in out


class _InterruptAt(JsonlTracker):
    """Sends a real SIGINT to this process when step ``at`` is logged (as Ctrl-C would)."""

    def __init__(self, path, at):
        super().__init__(path)
        self.at = at

    def log(self, step, split, metrics):
        super().log(step, split, metrics)
        if split == "train" and step == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_resume_is_bit_identical_and_ctrl_c_saves(tmp_path):
    straight = tiny_config(tmp_path / "straight")
    train(straight)
    cfg = tiny_config(tmp_path / "resumed")
    tracker = _InterruptAt(os.path.join(cfg.train.run_dir, "metrics.jsonl"), at=6)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tracker=tracker)
    tracker.close()
    state, meta = load_state(cfg)  # Ctrl-C wrote a checkpoint of the last finished step
    assert meta["step"] == 6 and int(state.step) == 6
    train(cfg)  # the same command again resumes
    a, _ = load_state(straight)
    b, _ = load_state(cfg)
    assert int(a.step) == int(b.step) == 24
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    la, lb = train_losses(straight.train.run_dir), train_losses(cfg.train.run_dir)
    assert la == lb


@quick
def test_one_and_four_devices_give_the_same_losses(tmp_path):
    import jax

    assert jax.device_count() == 4
    one = tiny_config(tmp_path / "one", train=dict(num_devices=1, eval_every=0, save_every=0))
    four = tiny_config(tmp_path / "four", train=dict(eval_every=0, save_every=0))  # all 4 devices
    train(one), train(four)
    l1, l4 = train_losses(one.train.run_dir), train_losses(four.train.run_dir)
    assert sorted(l1) == sorted(l4) == list(range(1, 25))
    # Only the order of floating-point reductions differs (float64).
    np.testing.assert_allclose([l4[s] for s in l4], [l1[s] for s in l4], rtol=1e-10, atol=0)


@quick
def test_nan_loss_stops_and_names_a_checkpoint_older_than_the_nan(tmp_path, monkeypatch):
    from _train_helpers import make_toy_module
    from ssm.data import DATASETS

    cfg = tiny_config(tmp_path / "run", train=dict(save_every=2, eval_every=0, keep=3))
    tracker = _InterruptAt(os.path.join(cfg.train.run_dir, "metrics.jsonl"), at=4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tracker=tracker)
    tracker.close()
    # the same run resumed on data that turned NaN: the loss of step 5 is made by the parameters of step 4,
    # so the checkpoint of step 4 is not a good one to go back to; step 2 is
    monkeypatch.setitem(DATASETS, "toy", make_toy_module(nan=True))
    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(nan\) at step 5.*Last good checkpoint: step 2 in "):
        train(cfg)
    state, meta = load_state(cfg)
    assert meta["step"] == 4  # nothing of the NaN steps was saved
    assert all(np.isfinite(x).all() for x in leaves(state) if x.dtype.kind == "f")


@quick
def test_nan_before_any_checkpoint_says_so(tmp_path):
    bad = tiny_config(tmp_path / "run", data=dict(name="toy_nan"), train=dict(eval_every=0))
    with pytest.raises(TrainingDiverged, match="no checkpoint yet"):
        train(bad)


@quick
def test_noop_tracker_and_finished_run_rerun(tmp_path):
    cfg = tiny_config(tmp_path / "run", train=dict(eval_every=0, save_every=0))
    res = train(cfg, tracker=Tracker())
    assert not os.path.exists(os.path.join(cfg.train.run_dir, "metrics.jsonl"))
    again = train(cfg, tracker=Tracker())  # nothing left to train: restores and evaluates
    assert again["step"] == 24 and again["test"] == res["test"]
    assert math.isfinite(res["test"]["loss"])


@quick
def test_plateau_schedule_steps_at_validations_and_is_checkpointed(tmp_path):
    # A model that cannot change (lr 1e-9, LayerNorm, no dropout): validation accuracy ties at every
    # evaluation, so with patience 0 each validation after the first halves the lr.
    from ssm.train.optimizer import plateau_scale

    cfg = tiny_config(tmp_path / "run", model=dict(norm="layer", dropout=0.0),
                      optim=dict(lr=1e-9, ssm_lr=1e-9, schedule="plateau", patience=0, gamma=0.5, warmup_steps=0),
                      train=dict(eval_every=4, save_every=4))  # fmt: skip
    train(cfg)
    events = read_metrics(cfg.train.run_dir)
    vals = [e["accuracy"] for e in events if e["split"] == "val"]
    assert len(vals) == 6 and len(set(vals[:5])) == 1  # validations at 4..20 and the final one
    lr = {e["step"]: e["lr"] for e in events if e["split"] == "train"}
    for s in range(1, 25):
        k = max(0, (s - 1) // 4 - 1)  # reductions made by the validations before step s
        assert lr[s] == pytest.approx(1e-9 * 0.5**k, rel=1e-6), s
        assert e_ssm(events, s) == pytest.approx(1e-9 * 0.5**k, rel=1e-6), s
    state, _ = load_state(cfg)
    assert plateau_scale(state.opt_state) == 0.5**4
    with pytest.raises(ValueError, match="optim.schedule 'plateau'"):
        tiny_config(tmp_path / "x", optim=dict(schedule="plateau"), train=dict(eval_every=0))


def e_ssm(events, step):
    return next(e["ssm_lr"] for e in events if e["split"] == "train" and e["step"] == step)
