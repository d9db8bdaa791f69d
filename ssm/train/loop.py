"""The training loop: config in, checkpoints and ``metrics.jsonl`` out.

``train(cfg)`` restores the newest readable checkpoint of ``cfg.train.run_dir`` (or initialises),
then runs the jitted :func:`~ssm.train.step.make_train_step` on global batches sharded over a
one-axis ``"data"`` mesh of all devices (of all processes), evaluating on a schedule and saving
checkpoints. It stops with :class:`TrainingDiverged` on a non-finite loss or parameters (no
checkpoint of the bad state is written), and on Ctrl-C (SIGINT) it saves a checkpoint of the last
finished step before re-raising ``KeyboardInterrupt``.

Multi-host: with ``train.distributed`` it calls ``jax.distributed.initialize()`` (auto-detected on
clusters; on plain machines set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``); each process reads only its block of every global batch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssm.config import Config, DataConfig, ModelConfig, OptimConfig
from ssm.data import get_dataset
from ssm.data.base import DatasetInfo
from ssm.model import count_params, make_model
from ssm.train.checkpoint import Checkpoints
from ssm.train.metrics import add_sums, default_best_metric, finalize, higher_is_better
from ssm.train.optimizer import make_optimizer, plateau_scale, plateau_update
from ssm.train.pipeline import eval_batches, train_dataset, train_iterator
from ssm.train.progress import Progress
from ssm.train.state import TrainState, abstract_state, init_state
from ssm.train.step import all_finite, make_eval_step, make_train_step
from ssm.train.tracker import JsonlTracker, MultiTracker, Tracker, WandbTracker
from ssm.train.watchdog import Watchdog


class TrainingDiverged(RuntimeError):
    """The loss or the parameters became non-finite."""


def maybe_initialize_distributed(cfg: Config) -> None:
    """``jax.distributed.initialize()`` once, when ``train.distributed`` (before any JAX work)."""
    if not cfg.train.distributed or jax.distributed.is_initialized():
        return
    kw: dict[str, Any] = {}
    if "JAX_NUM_PROCESSES" in os.environ:
        kw["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in os.environ:
        kw["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kw)


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A one-axis ``"data"`` mesh (Auto axis type) over all devices, or the first ``num_devices``."""
    devices = jax.devices()
    if num_devices is not None:
        if jax.process_count() > 1 and num_devices != len(devices):
            raise ValueError("train.num_devices must be unset (all devices) in a multi-process run")
        if num_devices > len(devices):
            raise ValueError(f"train.num_devices={num_devices} but only {len(devices)} device(s) exist")
        devices = devices[:num_devices]
    return Mesh(np.array(devices), ("data",))


@dataclasses.dataclass
class Run:
    """Everything built from a config (used by the loop, ``scripts/evaluate.py`` and tests)."""

    cfg: Config
    info: DatasetInfo
    dataset: Any
    mesh: Mesh
    replicated: NamedSharding
    sharded: NamedSharding
    tx: Any
    schedules: dict[str, Any]
    abstract: TrainState
    init_fn: Any
    train_step: Any

    def to_global(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's rows -> global arrays sharded along the batch axis."""
        return {k: jax.make_array_from_process_local_data(self.sharded, np.asarray(v)) for k, v in batch.items()}

    def init(self) -> TrainState:
        """A fresh, replicated state from ``train.seed``."""
        arrays = self.init_fn(jax.random.PRNGKey(self.cfg.train.seed))
        return eqx.combine(arrays, eqx.filter(self.abstract, lambda x: not isinstance(x, jax.ShapeDtypeStruct)))

    def evaluate(self, state: TrainState, split: str, source: Any = None,
                 heartbeat: Callable[[], None] | None = None) -> dict[str, float]:  # fmt: skip
        src = self.dataset.load(self.cfg.data, split) if source is None else source
        eval_step = _eval_step(self.info.task)
        sums: dict = {}
        for b in eval_batches(src, global_batch=self.cfg.data.eval_batch_size, process=jax.process_index(),
                              n_procs=jax.process_count(), max_batches=self.cfg.train.eval_batches,
                              bucket=self.cfg.data.length_bucket):  # fmt: skip
            out = eval_step(state.model, state.model_state, self.to_global(b))
            sums = add_sums(sums, jax.device_get(out))
            if heartbeat is not None:
                heartbeat()
        if not sums:
            return {}
        return finalize(sums, self.info.task)


_EVAL_STEPS: dict[str, Any] = {}


def _eval_step(task: str):
    if task not in _EVAL_STEPS:
        _EVAL_STEPS[task] = make_eval_step(task)
    return _EVAL_STEPS[task]


@functools.lru_cache(maxsize=8)
def _build(model_cfg: ModelConfig, optim_cfg: OptimConfig, data_cfg: DataConfig, steps: int,
           num_devices: int | None, info_key: tuple):  # fmt: skip
    # Cached on what the compiled steps depend on, so that runs of one structure in one process
    # (tests, sweeps) share them.
    info = DatasetInfo(*info_key)
    mesh = make_mesh(num_devices)
    n_dev = mesh.devices.size
    for name, b in (("data.batch_size", data_cfg.batch_size), ("data.eval_batch_size", data_cfg.eval_batch_size)):
        if b % n_dev:
            raise ValueError(f"{name} ({b}) must be divisible by the number of devices ({n_dev}): "
                             f"pass --{name.replace('_', '-')} {max(n_dev, b // n_dev * n_dev)}")  # fmt: skip
    if (data_cfg.batch_size // optim_cfg.grad_accum) % n_dev:
        raise ValueError(
            f"data.batch_size / optim.grad_accum ({data_cfg.batch_size // optim_cfg.grad_accum}) must be "
            f"divisible by the number of devices ({n_dev})"
        )
    replicated = NamedSharding(mesh, PartitionSpec())
    try:
        abstract_model = eqx.filter_eval_shape(make_model, model_cfg, info, key=jax.random.PRNGKey(0))[0]
        traceable = True
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as e:
        # A layer constructor that needs concrete values: build eagerly (costs one real init).
        warnings.warn(f"the {model_cfg.layer!r} layer cannot be constructed under tracing "
                      f"({type(e).__name__}); initialising eagerly", RuntimeWarning, stacklevel=2)  # fmt: skip
        traceable = False
        abstract_model = _shapes(make_model(model_cfg, info, key=jax.random.PRNGKey(0))[0])
    tx, schedules = make_optimizer(abstract_model, optim_cfg, steps)
    if traceable:
        init_fn = jax.jit(
            lambda k: eqx.filter(init_state(model_cfg, info, tx, k), eqx.is_array), out_shardings=replicated
        )
        abstract = abstract_state(model_cfg, info, tx)
    else:

        def init_fn(k):
            arrays = eqx.filter(init_state(model_cfg, info, tx, k), eqx.is_array)
            return jax.tree_util.tree_map(
                lambda a: jax.make_array_from_process_local_data(replicated, np.asarray(a)), arrays
            )

        abstract = _shapes(init_state(model_cfg, info, tx, jax.random.PRNGKey(0)))
    train_step = make_train_step(tx, info.task, optim_cfg.grad_accum, replicated)
    return dict(
        info=info,
        mesh=mesh,
        replicated=replicated,
        sharded=NamedSharding(mesh, PartitionSpec("data")),
        tx=tx,
        schedules=schedules,
        abstract=abstract,
        init_fn=init_fn,
        train_step=train_step,
    )


def _shapes(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if eqx.is_array(a) else a, tree)


def build(cfg: Config) -> Run:
    """Dataset info, mesh, optimizer, jitted steps and the abstract state of ``cfg`` (nothing is
    computed)."""
    dataset = get_dataset(cfg.data.name)
    info = dataset.info(cfg.data)
    info_key = (info.task, info.d_input, info.d_output, info.seq_len, info.tokens)
    data_key = DataConfig(batch_size=cfg.data.batch_size, eval_batch_size=cfg.data.eval_batch_size, root="")
    parts = _build(cfg.model, cfg.optim, data_key, cfg.train.steps, cfg.train.num_devices, info_key)
    parts["info"] = info
    return Run(cfg=cfg, dataset=dataset, **parts)


class _Interrupt:
    """Turns the first SIGINT into a flag checked between steps (a second one interrupts at once)."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._old or signal.default_int_handler)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def train(cfg: Config, *, tracker: Tracker | None = None, verbose: bool = True) -> dict[str, Any]:
    """Run (or resume) the training described by ``cfg``. Returns the final metrics
    ``{"step": .., "val": {..}, "test": {..}, "best": {..}}``.

    A :class:`~ssm.train.watchdog.Watchdog` exits the process (code 75) when nothing completes for
    ``train.hang_timeout_s``; rerunning the command resumes from the last checkpoint."""
    with Watchdog(cfg.train.hang_timeout_s, hint=f" from the last checkpoint in {cfg.train.run_dir}") as watchdog:
        return _train(cfg, tracker, verbose, watchdog)


def _train(cfg: Config, tracker: Tracker | None, verbose: bool, watchdog: Watchdog) -> dict[str, Any]:
    maybe_initialize_distributed(cfg)
    t0 = time.perf_counter()
    run = build(cfg)
    tc = cfg.train
    primary = jax.process_index() == 0
    run_dir = tc.run_dir
    os.makedirs(run_dir, exist_ok=True)
    if primary:
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            f.write(cfg.to_json())
    own_tracker = tracker is None
    if tracker is None:
        trackers: list[Tracker] = []
        if primary:
            trackers.append(JsonlTracker(os.path.join(run_dir, "metrics.jsonl")))
            if tc.wandb != "disabled":
                trackers.append(WandbTracker(run_dir, tc.wandb, tc.wandb_project, cfg.to_dict()))
        tracker = MultiTracker(*trackers)
    say = print if (verbose and primary) else (lambda *a, **k: None)

    task = run.info.task
    best_name = tc.best_metric or default_best_metric(task)
    maximize = higher_is_better(best_name)
    B = cfg.data.batch_size
    train_src = run.dataset.load(cfg.data, "train")

    def make_iter():
        ds = train_dataset(train_src, seed=cfg.data.seed, global_batch=B, n_batches=tc.steps,
                           process=jax.process_index(), n_procs=jax.process_count(),
                           bucket=cfg.data.length_bucket)  # fmt: skip
        return train_iterator(ds, cfg.data.num_workers)

    ckpt = Checkpoints(run_dir, keep=tc.keep, async_save=tc.async_checkpoint)
    restored = ckpt.restore(run.abstract, sharding=run.replicated, make_iter=make_iter)
    best: dict[str, Any] = {}
    if restored is None:
        state, data_iter = run.init(), make_iter()
        say(f"[ssm] new run in {run_dir}: {cfg.model.layer} model, {count_params(state.model):,} parameters, "
            f"{len(train_src)} training examples, {run.mesh.devices.size} device(s), {jax.process_count()} process(es)")  # fmt: skip
    else:
        state, data_iter, meta = restored
        best = meta.get("best") or {}
        say(f"[ssm] resuming {run_dir} from step {int(state.step)}")
    last_saved = int(state.step) if restored is not None else None

    train_step = run.train_step
    eval_splits = {}

    def source(split):
        if split not in eval_splits:
            eval_splits[split] = run.dataset.load(cfg.data, split)
        return eval_splits[split]

    def meta(step: int) -> dict[str, Any]:
        return {"step": step, "best": best, "best_metric": best_name, "config": cfg.to_dict()}

    def check_finite(step: int, losses: list[tuple[int, float]]) -> None:
        for s, v in losses:
            if not math.isfinite(v):
                where = f"step {last_saved} in {ckpt.dirs['latest']}" if last_saved is not None else "none (no checkpoint yet)"
                raise TrainingDiverged(
                    f"non-finite loss ({v}) at step {s}: training stopped. Last good checkpoint: {where}. "
                    "Try a lower --optim.lr, --optim.clip-norm 1.0, or a smaller --model.dt-max."
                )
        if not bool(all_finite(state.model)):
            raise TrainingDiverged(f"non-finite parameters after step {step}: training stopped. "
                                   f"Last good checkpoint: step {last_saved}.")  # fmt: skip

    def save(step: int, *, as_best: bool = False) -> None:
        nonlocal last_saved
        check_finite(step, [])
        watchdog.kick("a checkpoint save")
        ckpt.save(state, data_iter, meta(step), best=as_best)
        last_saved = step
        watchdog.kick("training")

    pending: list[tuple[int, dict]] = []
    progress = Progress(tc.steps, int(state.step), B, tc.progress, enabled=verbose and primary)

    def flush(step: int) -> None:
        if not pending:
            return
        got = jax.device_get([m for _, m in pending])
        watchdog.kick("training")
        losses = [(s, float(m["loss"])) for (s, _), m in zip(pending, got)]
        pending.clear()
        check_finite(step, losses)
        sums: dict = {}
        for m in got:
            sums = add_sums(sums, m["sums"])
        metrics = finalize(sums, task)
        metrics["grad_norm"] = float(got[-1]["grad_norm"])
        scale = plateau_scale(state.opt_state) or 1.0  # the plateau schedule's reductions so far
        for name, lr_at in run.schedules.items():  # lr, ssm_lr (and dt_lr when set)
            metrics[name] = scale * float(lr_at(step - 1))
        metrics.update(progress.update(step, loss=metrics["loss"], lr=metrics["lr"]))
        tracker.log(step, "train", metrics)

    def validate(step: int) -> None:
        nonlocal best, state
        if "val" not in tc.eval_splits:
            return
        watchdog.kick("validation")
        m = run.evaluate(state, "val", source("val"), heartbeat=watchdog.kick)
        if not m:
            return
        tracker.log(step, "val", m)
        progress.write(f"[ssm] step {step} val " + " ".join(f"{k} {v:.4g}" for k, v in m.items()))
        v = m.get(best_name)
        if v is not None and math.isfinite(v) and cfg.optim.schedule == "plateau":
            state = eqx.tree_at(lambda t: t.opt_state, state, plateau_update(state.opt_state, v, cfg.optim,
                                                                               maximize=maximize))
        if v is not None and math.isfinite(v):
            better = not best or (v > best["value"] if maximize else v < best["value"])
            if better:
                best = {"metric": best_name, "value": v, "step": step}
                save(step, as_best=True)

    start = int(state.step)
    try:
        with _Interrupt() as interrupt:
            step = start
            for step in range(start + 1, tc.steps + 1):
                batch = run.to_global(next(data_iter))
                state, m = train_step(state, batch)
                watchdog.kick()  # dispatch is asynchronous: a wedged step is caught when a flush blocks
                pending.append((step, m))
                if step == start + 1:
                    watchdog.kick("the first train step (compilation)")
                    jax.block_until_ready(m["loss"])
                    watchdog.kick("training")
                    progress.reset_clock(step)
                if step % tc.log_every == 0 or step == tc.steps:
                    flush(step)
                if tc.eval_every and step % tc.eval_every == 0 and step != tc.steps:
                    flush(step)
                    validate(step)
                    progress.reset_clock(step)
                if tc.save_every and step % tc.save_every == 0 and step != last_saved:
                    flush(step)
                    save(step)
                if interrupt.requested:
                    flush(step)
                    if step != last_saved:
                        save(step)
                    ckpt.wait()
                    say(f"\n[ssm] interrupted: checkpoint of step {step} saved in {ckpt.dirs['latest']}")
                    raise KeyboardInterrupt
            final_step = int(state.step)
            flush(final_step)
            results: dict[str, Any] = {"step": final_step}
            for split in tc.eval_splits:
                watchdog.kick(f"the final {split} evaluation")
                m = run.evaluate(state, split, source(split), heartbeat=watchdog.kick)
                if m:
                    tracker.log(final_step, split, m)
                    results[split] = m
            if "val" in results and best_name in results["val"]:
                v = results["val"][best_name]
                if math.isfinite(v) and (not best or (v > best["value"] if maximize else v < best["value"])):
                    best = {"metric": best_name, "value": v, "step": final_step}
                    save(final_step, as_best=True)
            if last_saved != final_step:
                save(final_step)
            results["best"] = best
            results["seconds"] = time.perf_counter() - t0
            for split in tc.eval_splits:
                if split in results:
                    say(f"[ssm] step {final_step} {split}: " + json.dumps(results[split]))
            return results
    finally:
        progress.close()
        ckpt.close()
        if hasattr(data_iter, "close"):
            try:
                data_iter.close()
            except Exception:  # noqa: BLE001
                pass
        if own_tracker:
            tracker.close()
