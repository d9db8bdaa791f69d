"""Every preset builds and trains two steps on a tiny fixture written in its real on-disk format.

The model is shrunk (1 layer, H 8, N 4) and lengths shortened where the dataset allows it;
everything else (layer family and options, task, norm, pooling, optimizer) is the preset's own.
Presets whose layer family is not implemented in this checkout are skipped with that reason.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest
from PIL import Image

import configs
from ssm.config import Config
from ssm.data import DATASETS
from ssm.data._files import write_wav
from ssm.model import available_layers

# fixture writers of the loader tests (tests/ is on sys.path under pytest's default import mode)
from test_data_aan import write_aan
from test_data_cifar import write_cifar
from test_data_fsdd import write_fsdd
from test_data_imdb import write_acl
from test_data_mnist import write_mnist
from test_data_speech_commands import write_sc
from test_data_wikitext import write as write_wikitext

PRESETS = configs.all_presets()


def _csv(path, cols, n, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, len(cols)))
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"2016-07-01 00:00:00,{','.join(f'{x:.3f}' for x in r)}" for r in v)
    path.write_text("date," + ",".join(cols) + "\n" + rows + "\n")


ETT = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def _listops(root):
    d = root / "listops"
    d.mkdir(parents=True)
    rows = ["( ( ( [MAX 2 ) 9 ) ] )\t9", "( ( ( [MIN 4 ) 1 ) ] )\t1", "( ( [SM 3 ) ] )\t3", "7\t7"]
    for s in ("train", "val", "test"):
        (d / f"basic_{s}.tsv").write_text("Source\tTarget\n" + "\n".join(rows) + "\n")


def _pathfinder(root, size):
    d = root / "pathfinder" / f"pathfinder{size}" / "curv_contour_length_14"
    (d / "imgs" / "0").mkdir(parents=True)
    (d / "metadata").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(d / "imgs" / "0" / f"sample_{i}.png")
        lines.append(f"imgs/0 sample_{i}.png {i} {i % 2} 1.8 14 4 2 0.5 1 1")
    (d / "metadata" / "0.npy").write_text("\n".join(lines) + "\n")


def _audio_folder(root, folder, n_files=20, n=200):
    d = root / folder
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n_files):
        write_wav(d / f"{i}.wav", rng.integers(-9000, 9000, n, dtype=np.int16), 16000)


def _sc09(root):
    d = root / "sc09"
    rng = np.random.default_rng(0)
    for c in ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]:
        (d / c).mkdir(parents=True)
        for k in range(2):
            write_wav(d / c / f"{k:08x}_nohash_0.wav", rng.integers(-9000, 9000, 100, dtype=np.int16), 16000)
    (d / "validation_list.txt").write_text("one/00000000_nohash_0.wav\ntwo/00000000_nohash_0.wav\n")
    (d / "testing_list.txt").write_text("six/00000001_nohash_0.wav\nnine/00000001_nohash_0.wav\n")


def _sc(root, name):
    from ssm.data import speech_commands as sc

    classes = sc.ALL_CLASSES if name == "sc35" else sc.SUBSET_CLASSES
    d, _ = write_sc(root, classes, per_class=3 if name == "sc35" else 7, length=16000)
    (d / "validation_list.txt").write_text("".join(f"{c}/00000000_nohash_0.wav\n" for c in classes[:4]))
    (d / "testing_list.txt").write_text("".join(f"{c}/00000001_nohash_0.wav\n" for c in classes[:4]))


def _bidmc(root, target):
    d = root / "bidmc" / target / "reshuffle"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s, n in (("train", 6), ("valid", 2), ("test", 2)):
        np.save(d / f"{s}x.npy", rng.normal(size=(n, 4000, 2)))
        np.save(d / f"{s}y.npy", rng.normal(size=n))


WRITERS = {
    "mnist": lambda r, c: write_mnist(r / "mnist", n_train=20, n_test=6),
    "mnist_gen": lambda r, c: write_mnist(r / "mnist", n_train=20, n_test=6),
    "cifar10": lambda r, c: write_cifar(r, n=4),
    "fsdd": lambda r, c: write_fsdd(r, speakers=("george",), indices=range(0, 8)),
    "imdb": lambda r, c: write_acl(r),
    "aan": lambda r, c: write_aan(r),
    "wt103": lambda r, c: write_wikitext(r, "wikitext-103"),
    "wt2": lambda r, c: write_wikitext(r, "wikitext-2"),
    "etth1": lambda r, c: _csv(r / "informer" / "etth" / "ETTh1.csv", ETT, 14400),
    "etth2": lambda r, c: _csv(r / "informer" / "etth" / "ETTh2.csv", ETT, 14400),
    "ettm1": lambda r, c: _csv(r / "informer" / "ettm" / "ETTm1.csv", ETT, 57600),
    "weather": lambda r, c: _csv(r / "informer" / "weather" / "WTH.csv", ["Visibility", "DryBulbFarenheit", "WetBulbCelsius"], 300),
    "ecl": lambda r, c: _csv(r / "informer" / "ecl" / "ECL.csv", ["MT_000", "MT_001", "MT_320"], 300),
    "bidmc": lambda r, c: _bidmc(r, c.data.target),
    "sc35": lambda r, c: _sc(r, "sc35"),
    "sc10": lambda r, c: _sc(r, "sc10"),
    "sc09": lambda r, c: _sc09(r),
    "youtubemix": lambda r, c: _audio_folder(r, "youtube_mix"),
    "beethoven": lambda r, c: _audio_folder(r, "beethoven"),
    "listops": lambda r, c: _listops(r),
    "pathfinder": lambda r, c: _pathfinder(r, c.data.resolution or 32),
    "copying": None, "adding": None, "delay": None, "selective_copying": None, "digits": None,
}  # fmt: skip

SHORT = {  # data overrides that shorten sequences / shrink generated sets, per dataset
    "fsdd": dict(seq_len=64),
    "imdb": dict(seq_len=32),
    "aan": dict(seq_len=24),
    "wt103": dict(seq_len=8),
    "wt2": dict(seq_len=8),
    "listops": dict(seq_len=32),
    "copying": dict(n_memorize=4, lag=2, n_train=8, n_eval=4),
    "selective_copying": dict(seq_len=24, n_memorize=4, n_train=8, n_eval=4),
    "adding": dict(seq_len=32, n_train=8, n_eval=4),
    "delay": dict(seq_len=64, lag=8, n_train=8, n_eval=4),
    "sc09": dict(seq_len=128),
    "youtubemix": dict(seq_len=64),
    "beethoven": dict(seq_len=64),
    **{n: dict(seq_len=16, pred_len=8) for n in ("etth1", "etth2", "ettm1", "weather", "ecl")},
}


def tiny(cfg: Config, root, run_dir) -> Config:
    layer = cfg.model.layer
    shrink = {k: v for k, v in dict(d_state=4, n_ssm=1, blocks=1).items() if hasattr(layer, k)}
    model = dataclasses.replace(cfg.model, d_model=8, n_layers=1, layer=dataclasses.replace(layer, **shrink))
    data = cfg.data
    if cfg.data.name == "copying":  # seq_len follows from n_memorize and lag
        data = dataclasses.replace(data, options=dataclasses.replace(data.options, seq_len=None))
    data = dataclasses.replace(data, root=str(root), batch_size=2, eval_batch_size=2, num_workers=0,
                               **SHORT.get(cfg.data.name, {}))  # fmt: skip
    optim = dataclasses.replace(cfg.optim, grad_accum=1)
    # eval_every = steps: no mid-run validation, but a valid interval for the presets' plateau schedules
    train = dataclasses.replace(
        cfg.train, steps=2, run_dir=str(run_dir), eval_every=2, save_every=0, log_every=1, eval_batches=1,
        async_checkpoint=False, progress="none", num_devices=1, wandb="disabled",
    )  # fmt: skip
    return Config(model=model, data=data, optim=optim, train=train)


def test_every_preset_is_listed_with_a_description():
    groups = {k.split(".")[0] for k in PRESETS}
    assert {"lra", "mnist", "cifar", "sc", "lm", "forecast", "bidmc", "synthetic", "audio", "fsdd", "ablation"} <= groups
    for name, (desc, cfg) in PRESETS.items():
        assert desc and "\n" not in desc, name
        assert cfg.data.name in WRITERS, f"{name}: no fixture writer for dataset {cfg.data.name!r}"
    for want in ("lra.listops", "lra.imdb", "lra.aan", "lra.cifar", "lra.pathfinder", "lra.pathx", "mnist.smnist",
                 "mnist.pmnist", "cifar.scifar", "cifar.noisy_scifar", "sc.sc10", "sc.sc35", "sc.sc35_mfcc", "lm.wt103",
                 "lm.wt2", "forecast.etth1", "forecast.etth2", "forecast.ettm1", "forecast.weather", "forecast.ecl",
                 "bidmc.hr", "bidmc.rr", "bidmc.spo2", "synthetic.copying", "synthetic.adding", "synthetic.delay",
                 "synthetic.selective_copying", "audio.sc09", "audio.youtubemix", "audio.beethoven", "fsdd.digits",
                 "lra.dss_pathx", "lra.s5_listops", "lra.s4ptd_cifar", "ablation.cifar"):  # fmt: skip
        assert want in PRESETS, want


NAMES = sorted(k for k in PRESETS if not k.startswith("demo."))
# The copying tasks score the last M outputs against M target tokens (S4's l_output = M decoder);
# the trainer's lm loss does not yet compare the last T outputs as its regression loss does.
# Every preset trains two steps in the default run. Each run costs seconds of XLA compilation (~8 s of CPU), so
# the runs go to a pool of worker processes started once pytest has selected the tests (tests/conftest.py calls
# start_selected: only the selected presets run): they use the core that the single-process suite leaves idle
# while the tests before this module run, and the tests here wait for their results. (An import from a running
# test, e.g. test_presets_build's use of WRITERS, starts nothing; runs not waited for are cancelled at exit.)
# Under pytest-xdist (README's `-n 2`) there is no pool: the suite's workers are the parallelism, each preset test
# trains in the worker that runs it, and the tests go to the workers one by one (tests/conftest.py).
WORKERS = max(1, min(2, os.cpu_count() or 1))
_IN_XDIST = "PYTEST_XDIST_WORKER" in os.environ


def _skip_reason(name) -> str | None:
    cfg = PRESETS[name][1]
    if cfg.model.layer not in available_layers():
        return f"layer {cfg.model.layer.name!r} is not implemented in this checkout"
    if cfg.data.name not in DATASETS:
        return f"dataset {cfg.data.name!r} is not registered in this checkout"
    return None


def _prepare(name, tmp_path):
    reason = _skip_reason(name)
    if reason:
        pytest.skip(reason)
    cfg = PRESETS[name][1]
    root = tmp_path / "data"
    root.mkdir()
    write = WRITERS[cfg.data.name]
    if write is not None:
        write(root, cfg)
    return tiny(cfg, root, tmp_path / "run")


def _check_splits(run, small) -> None:
    """Fixture in the real format -> every split loads -> examples match the dataset info."""
    info = run.info
    for split in ("train", "val", "test"):
        src = run.dataset.load(small.data, split)
        assert len(src) > 0, split
        ex = src[0]
        x = np.asarray(ex["inputs"])
        assert x.shape[0] <= info.seq_len, (split, x.shape, info.seq_len)
        if info.tokens:
            assert x.dtype == np.int32 and x.ndim == 1 and 0 <= x.min() and x.max() < info.d_input
        else:
            assert x.dtype == np.float32 and x.shape[1:] == (info.d_input,) and np.isfinite(x).all()
        if info.task in ("classification", "retrieval"):
            assert 0 <= int(ex["targets"]) < info.d_output


def _train_preset(name: str) -> dict:
    """(In a worker process.) Write the preset's fixture, check its splits, train two steps; the final metrics.

    The run's programs are compiled with XLA's LLVM backend at -O0 (``_train_helpers.quick_compile``): a two-step
    run of a tiny model is nearly all compilation (35-40 % less with it: mnist.smnist 7.9 -> 5.2 s, audio.sc09
    18.9 -> 11.1 s, lra.s5_cifar 9.0 -> 5.8 s in one process), and what these tests prove (the preset's fixture,
    model, optimizer and loss build and train to finite losses) does not depend on how well the CPU code is
    optimised."""
    import pathlib
    import shutil
    import tempfile

    from _train_helpers import quick_compile
    from ssm.train import build, train

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="preset-"))
    try:
        with quick_compile():
            small = _prepare(name, tmp)
            _check_splits(build(small), small)
            res = train(small, verbose=False)
        return {"step": res["step"], **{s: dict(res[s]) for s in ("val", "test")}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_POOL: dict = {}


def _start_runs(names=None) -> dict:
    """``{preset: AsyncResult}`` of the two-step runs of ``names`` (default: every preset); the pool is started
    once, by the first call."""
    import atexit
    import multiprocessing

    import _preset_worker

    if not _POOL:
        here = os.path.dirname(os.path.abspath(__file__))
        # A multiprocessing pool (daemon workers): at exit, runs not waited for are dropped, not finished.
        # A worker is replaced after a few runs: each run leaves its compiled programs in the worker's caches,
        # and two workers holding all ~70 presets' programs would hold GiBs beside the suite's own process.
        pool = multiprocessing.get_context("spawn").Pool(
            WORKERS, _preset_worker.init, ([here, os.path.dirname(here)],), maxtasksperchild=10
        )
        _POOL["pool"] = pool
        wanted = NAMES if names is None else [n for n in NAMES if n in set(names)]
        _POOL["runs"] = {n: pool.apply_async(_preset_worker.train_preset, (n,)) for n in wanted if _skip_reason(n) is None}
        atexit.register(pool.terminate)
    return _POOL["runs"]


def start_selected(items) -> None:
    """Called by tests/conftest.py once pytest has selected the tests to run (after ``-k``/``--deselect``): start
    the runs of the selected presets only, before the first test runs."""
    names = [it.callspec.params["name"] for it in items
             if it.originalname == "test_preset_trains_two_steps" and it.module.__name__ == __name__]  # fmt: skip
    if names:
        _start_runs(names)


@pytest.fixture(scope="module")
def trained():
    return None if _IN_XDIST else _start_runs()


@pytest.mark.parametrize("name", NAMES)
def test_preset_trains_two_steps(name, trained):
    """The preset's fixture loads in every split with examples that match the dataset info, and the preset
    (shrunk: 1 layer, H 8, N 4, short sequences) trains two steps to finite validation and test losses."""
    reason = _skip_reason(name)
    if reason:
        pytest.skip(reason)
    if trained is None:
        import gc

        import jax

        res = _train_preset(name)
        jax.clear_caches()  # the run's programs are not used again: the worker does not keep ~35 presets' programs
        gc.collect()
    elif name not in trained:
        pytest.fail(f"{name}: no run was started for it (tests/conftest.py starts the selected presets' runs)")
    else:
        res = trained[name].get(timeout=900)
    assert res["step"] == 2
    for split in ("val", "test"):
        assert math.isfinite(res[split]["loss"]), (split, res[split])
