"""A run directory is one run: another config or model structure is refused, safe changes need a flag,
damaged ``config.json`` / ``metrics.jsonl`` are named and worked around, events are never duplicated or glued."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import warnings

import pytest

from _train_helpers import PYTHON, REPO, quick_compile, register, tiny_config
from ssm.train import RunDirMismatch, RunDirUnusable, train
from ssm.train.run_dir import RunDirWarning
from ssm.train.tracker import MetricsWarning, Tracker, read_metrics

# Tiny runs, nearly all compilation; started processes get the same setting (subprocess_env).
pytestmark = pytest.mark.usefixtures("quick_compile")


@pytest.fixture(autouse=True)
def _toy(monkeypatch):
    register(monkeypatch)


def _cfg(run_dir, **over):
    base = {"train": dict(steps=8, eval_every=0, save_every=4, async_checkpoint=False)}
    for k, v in over.items():
        base.setdefault(k, {}).update(v)
    return tiny_config(run_dir, **base)


def _steps(run_dir: str) -> list[int]:
    return sorted(int(d) for d in os.listdir(os.path.join(run_dir, "checkpoints")) if d.isdigit())


def _events(run_dir):
    return [(e["step"], e["split"]) for e in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 8-step run (checkpoints 4 and 8), copied by each test that changes it."""
    with pytest.MonkeyPatch.context() as mp, quick_compile():  # the toy datasets for this run only (the tests
        register(mp)  # register their own); compiled as the module's tests are (pytestmark above)
        d = str(tmp_path_factory.mktemp("rd") / "run")
        train(_cfg(d), verbose=False)
    return d


def _copy(trained, tmp_path) -> str:
    d = str(tmp_path / "run")
    shutil.copytree(trained, d)
    return d


def test_another_config_is_refused_naming_fields_and_ways_out(trained, tmp_path):
    d = _copy(trained, tmp_path)
    before = open(os.path.join(d, "metrics.jsonl")).read()
    with pytest.raises(RunDirMismatch) as e:
        train(_cfg(d, optim=dict(lr=0.03)), verbose=False)
    msg = str(e.value)
    assert "optim.lr: 0.02 (recorded) -> 0.03 (now)" in msg
    assert "recorded config" in msg and "new --train.run-dir" in msg and e.value.exit_code == 4
    # another shape or layer: refused too, never a new run at step 0 beside the old checkpoints
    for over in (dict(model=dict(d_model=16)), dict(model=dict(layer="dss"))):
        with pytest.raises(RunDirMismatch, match="model."):
            train(_cfg(d, **over), verbose=False)
    # a safe change needs the explicit flag; with it, an unsafe one is still refused
    with pytest.raises(RunDirMismatch, match="--train.allow-resume-changes"):
        train(_cfg(d, train=dict(steps=12)), verbose=False)
    with pytest.raises(RunDirMismatch, match="optim.lr cannot change in a run"):
        train(_cfg(d, optim=dict(lr=0.03), train=dict(steps=12, allow_resume_changes=True)), verbose=False)
    assert _steps(d) == [4, 8] and open(os.path.join(d, "metrics.jsonl")).read() == before
    # a run directory without checkpoints takes a new config (nothing to mix); another seed, refused beside
    # checkpoints like the lr, keeps the compiled step of the recorded run (an lr of its own compiled another)
    with pytest.raises(RunDirMismatch, match="train.seed cannot change in a run"):
        train(_cfg(d, train=dict(seed=1)), verbose=False)
    fresh = str(tmp_path / "fresh")
    os.makedirs(fresh)
    shutil.copy(os.path.join(d, "config.json"), fresh)
    res = train(_cfg(fresh, train=dict(seed=1, save_every=0)), verbose=False)
    assert res["step"] == 8
    with open(os.path.join(fresh, "config.json")) as f:
        assert json.load(f)["train"]["seed"] == 1  # the new config is the one recorded


def test_more_steps_with_the_flag_resume_and_log_each_event_once(trained, tmp_path):
    d = _copy(trained, tmp_path)
    # a torn last line (a run killed while writing it): dropped, never glued to the next event
    with open(os.path.join(d, "metrics.jsonl"), "a") as f:
        f.write('{"step": 9, "split": "tra')
    with pytest.warns(MetricsWarning, match=r"metrics.jsonl line \d+: torn last line"):
        res = train(_cfg(d, train=dict(steps=12, allow_resume_changes=True)), verbose=False)
    assert res["step"] == 12
    with open(os.path.join(d, "metrics.jsonl")) as f:
        lines = f.read().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)  # every line is one event
    events = _events(d)
    assert len(events) == len(set(events)), sorted(e for e in events if events.count(e) > 1)
    assert sorted(s for s, split in events if split == "train") == list(range(1, 13))
    # the recorded config follows the accepted change: the same command again is a plain resume
    assert json.load(open(os.path.join(d, "config.json")))["train"]["steps"] == 12
    again = train(_cfg(d, train=dict(steps=12)), verbose=False)
    assert again["step"] == 12 and _events(d) == events  # a finished run re-evaluated: nothing logged twice


def test_another_structure_or_unreadable_checkpoints_are_refused(trained, tmp_path):
    d = _copy(trained, tmp_path)
    info = json.load(open(os.path.join(d, "run.json")))
    assert set(info) == {"ssm_version", "fingerprint"} and set(info["fingerprint"]) == {"model", "optimizer"}
    info["fingerprint"]["model"] = "0" * 16  # same config, another code version's model structure
    json.dump(info, open(os.path.join(d, "run.json"), "w"))
    with pytest.raises(RunDirMismatch, match=r"another model structure \(written by ssm"):
        train(_cfg(d), verbose=False)
    os.remove(os.path.join(d, "run.json"))
    # every checkpoint damaged: refused (with each named), never a new run at step 0 beside them
    from test_checkpoint import _corrupt

    for s in (4, 8):
        _corrupt(os.path.join(d, "checkpoints", str(s)))
    with pytest.warns(Warning, match="is unreadable"), pytest.raises(RunDirMismatch, match="none of the checkpoints"):
        train(_cfg(d), verbose=False)
    assert _steps(d) == [4, 8]


def test_damaged_config_json_through_train_load_evaluate_and_plot(trained, tmp_path, capsys):
    import ssm
    from _train_helpers import _script

    d = _copy(trained, tmp_path)
    cfg_path = os.path.join(d, "config.json")
    with open(cfg_path, "w") as f:
        f.write("\x00garbage{")
    with pytest.warns(RunDirWarning, match=r"config.json is damaged \(JSONDecodeError.*checkpoint step 8"):
        model, cfg = ssm.load(d)
    assert cfg == _cfg(trained)  # as recorded (the directory was copied from there)
    evaluate = _script("evaluate")
    with pytest.warns(RunDirWarning, match="config.json is damaged"):
        assert evaluate.main([d, "--split", "val"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 8
    p = subprocess.run([PYTHON, os.path.join(REPO, "scripts", "plot.py"), d, "--out", str(tmp_path / "c.png")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    with pytest.warns(RunDirWarning, match="config.json is damaged"):
        assert train(_cfg(d), verbose=False)["step"] == 8  # resumes (the config recovered from the checkpoint)
    json.load(open(cfg_path))  # and rewritten
    # no checkpoint records a config: what is wrong and what still works
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{not json")
    shutil.copy(os.path.join(d, "metrics.jsonl"), bare)
    with pytest.raises(RunDirUnusable, match=r"config.json is damaged \(JSONDecodeError.*metrics.jsonl and scripts/plot.py still work"):
        ssm.load(str(bare))
    assert evaluate.main([str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json is damaged" in err


def test_damaged_metrics_lines_are_named_and_skipped(trained, tmp_path):
    d = _copy(trained, tmp_path)
    path = os.path.join(d, "metrics.jsonl")
    lines = open(path).read().splitlines()
    lines.insert(3, "{oops")
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.warns(MetricsWarning, match=r"metrics.jsonl line 4: damaged line"):
        events = read_metrics(d)
    assert len(events) == len(lines) - 1
    p = subprocess.run([PYTHON, os.path.join(REPO, "scripts", "plot.py"), d, "--out", str(tmp_path / "c.png")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0 and "line 4: damaged line" in p.stderr and "Traceback" not in p.stderr, p.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricsWarning)
        with pytest.raises(MetricsWarning):
            read_metrics(d)


def test_expected_failures_are_one_line_errors_with_their_own_exit_codes(tmp_path):
    from ssm.train import DataMissing

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunDirUnusable, match=r"cannot write to the run directory .*file/run") as e:
        train(_cfg(str(blocker / "run")), verbose=False)
    assert e.value.exit_code == 5 and "\n" not in str(e.value)
    cfg = tiny_config(tmp_path / "run", data=dict(name="mnist", root=str(tmp_path / "nodata")),
                      model=dict(norm="layer"), train=dict(steps=2))  # fmt: skip
    with pytest.raises(DataMissing) as e:
        train(cfg, verbose=False)
    assert e.value.exit_code == 6 and "mnist" in str(e.value) and "\n" not in str(e.value)

    class FullDisk(Tracker):
        def log(self, step, split, metrics):
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(str(tmp_path / "full"), "metrics.jsonl"))

    with pytest.raises(RunDirUnusable, match=r"cannot write to the run directory .*\(No space left on device: .*metrics.jsonl\)"):
        train(_cfg(str(tmp_path / "full")), tracker=FullDisk(), verbose=False)


FULL_DISK = """
import jax
jax.config.update("jax_enable_x64", True)
import shutil, sys
from _train_helpers import register, tiny_config
from ssm.train import train
register()
for mode in ("async", "sync"):  # Orbax writes in background threads, or in the caller's
    shutil.rmtree(f"{sys.argv[1]}/async", ignore_errors=True)  # the same free space for both
    try:
        train(tiny_config(f"{sys.argv[1]}/{mode}", train=dict(async_checkpoint=mode == "async")), verbose=False)
        print(mode, "finished")
    except Exception as e:
        print(mode, type(e).__name__, getattr(e, "exit_code", None), str(e).replace(chr(10), "|"))
"""


def _can_mount_tmpfs(where) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {where}"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


def test_a_really_full_disk_is_a_one_line_error_with_exit_code_5(tmp_path):
    # A real ENOSPC: the run directory on a 64 KiB tmpfs (in a private mount namespace) fits config.json and
    # metrics but not the first checkpoint, which Orbax writes through TensorStore (its errors are ValueErrors
    # carrying the errno), in its own threads when saving asynchronously.
    from _train_helpers import subprocess_env

    disk = tmp_path / "disk"
    disk.mkdir()
    if not _can_mount_tmpfs(disk):
        pytest.skip("needs the privilege to mount a tmpfs in a private mount namespace (unshare -m)")
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK)
    cmd = f"mount -t tmpfs -o size=64k tmpfs {disk} && exec {PYTHON} {script} {disk}"
    p = subprocess.run(["unshare", "-m", "sh", "-c", cmd], env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and len(lines) == 2, (p.stdout, p.stderr[-3000:])
    for mode, line in zip(("async", "sync"), lines):
        assert line.startswith(f"{mode} RunDirUnusable 5 cannot write to the run directory {disk}/{mode} "
                               "(No space left on device: "), line  # fmt: skip
        assert "free space" in line and "|" not in line, line
    # Orbax's threads each log the same TensorStore failure with a traceback: the one-line error replaces them.
    assert "Traceback" not in p.stderr and "RESOURCE_EXHAUSTED" not in p.stderr, p.stderr[-3000:]


RESTORE_OTHER_SHAPES = """
import jax
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_enable_x64", True)
import sys
from _train_helpers import register, tiny_config
from ssm.train import Checkpoints, build
register()
for d_model in (8, 16):  # the damaged step 8 then step 4; then both unreadable for another shape
    run = build(tiny_config(sys.argv[1], model=dict(d_model=d_model)))
    ck = Checkpoints(sys.argv[1], async_save=False)
    print("restored", ck.restore(run.abstract, sharding=run.replicated) is not None)
    ck.close()
"""


def test_skipped_checkpoints_make_no_library_noise(trained, tmp_path):
    from test_checkpoint import _corrupt

    from _train_helpers import subprocess_env

    d = _copy(trained, tmp_path)
    _corrupt(os.path.join(d, "checkpoints", "8"))
    script = tmp_path / "restore.py"
    script.write_text(RESTORE_OTHER_SHAPES)
    p = subprocess.run([PYTHON, str(script), d], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.split() == ["restored", "True", "restored", "False"], p.stderr[-3000:]
    assert p.stderr.count("CheckpointWarning") == 3, p.stderr[-3000:]  # 8 (damaged), then 8 and 4 (other shape)
    assert "Event loop is closed" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-3000:]


def test_jsonl_tracker_resume_drops_later_events_and_never_writes_one_twice(tmp_path):
    from ssm.train.tracker import JsonlTracker, MultiTracker

    path = tmp_path / "metrics.jsonl"
    old = [{"step": s, "split": "train", "loss": float(s)} for s in range(1, 6)] + [{"step": 4, "split": "val", "loss": 9.0}]
    path.write_text("".join(json.dumps(e) + "\n" for e in old) + '{"step": 6, "spl')
    t = MultiTracker(JsonlTracker(str(path)))
    with pytest.warns(MetricsWarning, match="line 7: torn last line"):
        t.resume(3)  # the run restarts after step 3: steps 4.. are recomputed
    t.log(3, "train", {"loss": -1.0})  # already recorded: not written again
    t.log(4, "train", {"loss": 40.0})
    t.close()
    got = [json.loads(line) for line in path.read_text().splitlines()]
    assert got == old[:3] + [{"step": 4, "split": "train", "loss": 40.0}]


def test_train_script_returns_the_failure_exit_code(tmp_path, capsys):
    """scripts/train.py maps an expected failure to its own exit code and a one-line error: missing data -> 6,
    another run's config in the run directory -> 4 (after a first run of 2 steps)."""
    from _train_helpers import _script

    script = _script("train")
    run = str(tmp_path / "run")
    rc = script.main(["--cfg", "mnist.smnist", "--data.root", str(tmp_path / "nodata"), "--train.run-dir", run,
                      "--data.batch-size", "8", "--data.eval-batch-size", "8"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 6 and err[-1].startswith("error: ") and "mnist" in err[-1], err
    common = ["--cfg", "demo.digits", "--train.run-dir", run, "--train.steps", "2", "--train.eval-every", "0",
              "--train.progress", "none", "--data.batch-size", "8", "--data.eval-batch-size", "8",
              "--model.n-layers", "1", "--model.d-model", "8", "--model.layer.d-state", "4"]
    assert script.main(common) == 0
    capsys.readouterr()
    assert script.main(common[:-2] + ["--model.layer.d-state", "8"]) == 4
    assert "d_state" in capsys.readouterr().err
