"""Shared fixtures of the training-system tests: a tiny synthetic dataset and small configs."""

from __future__ import annotations

import contextlib
import os
import sys
import types

import numpy as np

from ssm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from ssm.data.base import ArraySource, DatasetInfo

L, C, K = 16, 1, 4  # length, channels, classes


def _examples(n: int, seed: int, nan: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n).astype(np.int32)
    t = np.arange(L) / L
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t[None] + rng.uniform(0, 2 * np.pi, (n, 1)))
    x = x + 1.5 * (y[:, None] - 1.5)  # a class-dependent level: learnable in a few dozen steps
    x = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)[..., None]
    if nan:
        x[:] = np.nan
    return x, y


class _Recording(ArraySource):
    """Records the indices read (to check per-process sharding)."""

    def __init__(self, log_path: str | None, **arrays):
        super().__init__(**arrays)
        self.log_path = log_path

    def __getitem__(self, i):
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(f"{int(i)}\n")
        return super().__getitem__(i)


def make_toy_module(nan: bool = False, log_dir: str | None = None) -> types.ModuleType:
    """A dataset module (``info``/``load``) of noisy sinusoids whose frequency and level give the class."""
    mod = types.ModuleType("toy_nan" if nan else "toy")

    def info(cfg):
        return DatasetInfo(task="classification", d_input=C, d_output=K, seq_len=L)

    def load(cfg, split):
        n, seed = {"train": (96, 0), "val": (32, 1), "test": (32, 2)}[split]
        x, y = _examples(n, seed, nan=nan and split == "train")
        if split == "train" and log_dir:
            import jax

            return _Recording(os.path.join(log_dir, f"reads-{jax.process_index()}.txt"), inputs=x, targets=y)
        return ArraySource(inputs=x, targets=y)

    mod.info, mod.load = info, load
    return mod


_MODULES: dict = {}


def register(monkeypatch=None, log_dir: str | None = None) -> None:
    """Register ``toy`` and ``toy_nan`` in :data:`ssm.data.DATASETS` (the same module objects every
    time, so that runs of one structure share their compiled steps).

    In the test process the registration goes through ``monkeypatch`` and ends with the test: a toy
    dataset left in the registry would be seen by later tests (the registry check of
    ``test_data_validation`` failed after ``test_signals`` that way). Only a process started by a test
    (no pytest in it) may register for good."""
    from ssm.data import DATASETS

    if monkeypatch is None and "pytest" in sys.modules:
        raise RuntimeError(
            "tests/_train_helpers.register: pass the test's monkeypatch fixture (register(monkeypatch)) so that "
            "the toy datasets leave ssm.data.DATASETS when the test ends"
        )

    if log_dir is not None or not _MODULES:
        _MODULES.update(toy=make_toy_module(log_dir=log_dir), toy_nan=make_toy_module(nan=True))
    for name, m in _MODULES.items():
        if monkeypatch is not None:
            monkeypatch.setitem(DATASETS, name, m)
        else:
            DATASETS[name] = m


def tiny_config(run_dir: str, **over) -> Config:
    """A tiny S4D run on the toy data: BatchNorm + dropout so that model state and RNG matter."""
    model = dict(layer="s4d", d_model=8, n_layers=2, d_state=4, norm="batch", prenorm=True, dropout=0.1)
    data = dict(name="toy", root="/nonexistent", batch_size=16, eval_batch_size=16)
    optim = dict(lr=2e-2, ssm_lr=1e-3, weight_decay=0.01, schedule="cosine", warmup_steps=2)
    train = dict(steps=24, run_dir=str(run_dir), log_every=1, eval_every=8, save_every=8, keep=2,
                 progress="none", async_checkpoint=True)  # fmt: skip
    sections = {"model": model, "data": data, "optim": optim, "train": train}
    for k, v in over.items():
        sections[k].update(v)
    return Config(
        model=ModelConfig(**sections["model"]),
        data=DataConfig(**sections["data"]),
        optim=OptimConfig(**sections["optim"]),
        train=TrainConfig(**sections["train"]),
    )


def train_losses(run_dir: str) -> dict[int, float]:
    from ssm.train.tracker import read_metrics

    return {e["step"]: e["loss"] for e in read_metrics(run_dir) if e["split"] == "train"}


def load_state(cfg: Config, which: str = "latest"):
    """The newest checkpoint of ``cfg.train.run_dir`` as (state, meta)."""
    from ssm.train.checkpoint import Checkpoints
    from ssm.train.loop import build

    run = build(cfg)
    ck = Checkpoints(cfg.train.run_dir, keep=cfg.train.keep, async_save=False)
    try:
        r = ck.restore(run.abstract, sharding=run.replicated, which=which)
    finally:
        ck.close()
    assert r is not None, f"no checkpoint in {cfg.train.run_dir}"
    return r[0], r[2]


def leaves(state) -> list[np.ndarray]:
    import equinox as eqx
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(state, eqx.is_array))]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def quick_compile():
    """XLA's LLVM backend at -O0 inside the block (``jax_disable_most_optimizations``; the HLO passes, and so the
    programs' operations, are unchanged), restored after it. For tests of a harness or of the training system's
    plumbing on tiny models, whose time is nearly all compilation (a two-step preset run 35-40 % faster); not for
    tests of numerical accuracy nor of bit-identical results, which are checked as compiled for users.

    The setting is not part of JAX's in-memory jit caches' key (it is part of the persistent compilation cache's):
    a program compiled under one setting would be reused under the other, and a run would mix -O0 and -O2 programs
    (a resume then differed from the uninterrupted run in the last bit). So the in-memory caches are cleared on
    entry and exit. :func:`subprocess_env` passes the setting on to the processes started inside the block."""
    import jax

    before = jax.config.values["jax_disable_most_optimizations"]
    jax.clear_caches()
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
        jax.clear_caches()


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, TESTS, env.get("PYTHONPATH", "")])
    # Drop the caller's XLA flags except the single-threaded CPU runtime of the suite (conftest.py): a subprocess
    # compared bit for bit with this process must reduce in the same order.
    keep = [f for f in env.pop("XLA_FLAGS", "").split() if f.startswith("--xla_cpu_multi_thread_eigen")]
    if keep:
        env["XLA_FLAGS"] = " ".join(keep)
    import jax

    # and the same XLA backend optimisation level (conftest.py's quick_compile): the same compiled code
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1" if jax.config.values["jax_disable_most_optimizations"] else "0"
    env.update(extra)
    return env


PYTHON = sys.executable


def _script(name: str):
    """``scripts/NAME.py`` imported as a module (to call its ``main`` in this process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", os.path.join(REPO, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
