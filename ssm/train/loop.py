"""The training loop: config in, checkpoints and ``metrics.jsonl`` out.

``train(cfg)`` checks that ``cfg.train.run_dir`` holds no other run (:mod:`ssm.train.run_dir`),
restores its newest readable checkpoint (or initialises), then runs the jitted
:func:`~ssm.train.step.make_train_step` on global batches sharded over a one-axis ``"data"`` mesh of all
devices (of all processes), validating on a schedule (:mod:`ssm.train.evaluation`), keeping the best
checkpoint (:class:`~ssm.train.best.BestTracker`) and saving on the cadence of
:class:`~ssm.train.checkpoint.Checkpoints`. It stops with :class:`TrainingDiverged` on a non-finite loss
or parameters (no checkpoint of the bad state is written). SIGINT (Ctrl-C) and SIGTERM (preemption), at
any time, save a checkpoint of the last finished step when there is one and raise ``KeyboardInterrupt``
(:class:`~ssm.train.errors.Preempted` for SIGTERM); see :mod:`ssm.train.signals`. With
``--optim.ema-decay`` every validation, the final evaluations and the best-checkpoint choice use the moving
average of the weights (:attr:`~ssm.train.state.TrainState.eval_model`, :mod:`ssm.train.ema`). Expected failures
raise a :class:`~ssm.train.errors.RunError` with a one-line message and an ``exit_code``.

Multi-host: with ``train.distributed`` it calls ``jax.distributed.initialize()`` (auto-detected on
clusters; on plain machines set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``); each process reads only its block of every global batch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssm.config import Config, DataConfig, OptimConfig
from ssm.data import get_dataset
from ssm.data.base import DatasetInfo
from ssm.model import count_params
from ssm.train.best import BestTracker
from ssm.train.checkpoint import Checkpoints
from ssm.train.errors import DataMissing, RunDirMismatch, TrainingDiverged, run_dir_os_error
from ssm.train.evaluation import evaluate
from ssm.train.optimizer import make_optimizer, plateau_update
from ssm.train.pipeline import train_dataset, train_iterator
from ssm.train.progress import Progress
from ssm.train.run_dir import check_and_record, check_config, has_checkpoints, unusable
from ssm.train.signals import StopSignals
from ssm.train.state import TrainState, abstract_model_traced, abstract_state, init_state
from ssm.train.step_log import StepLog
from ssm.train.step import all_finite, make_train_step
from ssm.train.tracker import JsonlTracker, MultiTracker, Tracker, WandbTracker
from ssm.train.watchdog import Watchdog

__all__ = ["Run", "TrainingDiverged", "build", "make_mesh", "train"]

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
        return evaluate(state.eval_model, state.model_state, src, task=self.info.task,
                        batch_size=self.cfg.data.eval_batch_size, to_global=self.to_global,
                        max_batches=self.cfg.train.eval_batches, bucket=self.cfg.data.length_bucket,
                        heartbeat=heartbeat)  # fmt: skip


@functools.lru_cache(maxsize=8)
def _build(model_cfg: Any, optim_cfg: OptimConfig, data_cfg: DataConfig, steps: int,
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
    (abstract_model, _), traceable = abstract_model_traced(model_cfg, info)
    tx, schedules = make_optimizer(abstract_model, optim_cfg, steps)
    ema = optim_cfg.ema_decay is not None
    if traceable:
        init_fn = jax.jit(
            lambda k: eqx.filter(init_state(model_cfg, info, tx, k, ema), eqx.is_array), out_shardings=replicated
        )
        abstract = abstract_state(model_cfg, info, tx, ema)
    else:

        def init_fn(k):
            arrays = eqx.filter(init_state(model_cfg, info, tx, k, ema), eqx.is_array)
            return jax.tree_util.tree_map(
                lambda a: jax.make_array_from_process_local_data(replicated, np.asarray(a)), arrays
            )

        abstract = _shapes(init_state(model_cfg, info, tx, jax.random.PRNGKey(0), ema))
    train_step = make_train_step(tx, info.task, optim_cfg.grad_accum, replicated, optim_cfg.ema_decay)
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




def train(cfg: Config, *, tracker: Tracker | None = None, verbose: bool = True) -> dict[str, Any]:
    """Run (or resume) the training described by ``cfg``. Returns the final metrics
    ``{"step": .., "val": {..}, "test": {..}, "best": {..}}``.

    A :class:`~ssm.train.watchdog.Watchdog` exits the process (code 75) when nothing completes for
    ``train.hang_timeout_s``; rerunning the command resumes from the last checkpoint."""
    hint = f" from the last checkpoint in {cfg.train.run_dir}"
    with StopSignals() as stop, Watchdog(cfg.train.hang_timeout_s, hint=hint) as watchdog:
        try:
            return _train(cfg, tracker, verbose, watchdog, stop)
        except Exception as e:
            os_error = run_dir_os_error(e)
            if os_error is not None:
                raise unusable(cfg.train.run_dir, os_error) from None
            raise



def _data(fn: Callable[[], Any]) -> Any:
    """``fn()`` with missing dataset files turned into :class:`DataMissing` (a one-line error)."""
    try:
        return fn()
    except FileNotFoundError as e:
        raise DataMissing(str(e).splitlines()[0] if str(e) else repr(e)) from None


def _open_trackers(cfg: Config, tracker: Tracker | None, primary: bool) -> tuple[Tracker, bool]:
    if tracker is not None:
        return tracker, False
    trackers: list[Tracker] = []
    if primary:
        trackers.append(JsonlTracker(os.path.join(cfg.train.run_dir, "metrics.jsonl")))
        if cfg.train.wandb != "disabled":
            trackers.append(WandbTracker(cfg.train.run_dir, cfg.train.wandb, cfg.train.wandb_project, cfg.to_dict()))
    return MultiTracker(*trackers), True


def _train(cfg: Config, tracker: Tracker | None, verbose: bool, watchdog: Watchdog, stop: StopSignals) -> dict[str, Any]:
    maybe_initialize_distributed(cfg)
    t0 = time.perf_counter()
    tc, primary = cfg.train, jax.process_index() == 0
    say = print if (verbose and primary) else (lambda *a, **k: None)
    check_config(cfg)  # before anything is built: a run directory of another run is refused
    run = _data(lambda: build(cfg))
    check_and_record(cfg, run.abstract, write=primary)
    stop.check()
    train_src = _data(lambda: run.dataset.load(cfg.data, "train"))
    eval_srcs: dict[str, Any] = {}

    def source(split: str) -> Any:
        if split not in eval_srcs:
            eval_srcs[split] = _data(lambda: run.dataset.load(cfg.data, split))
        return eval_srcs[split]

    def make_iter():
        ds = train_dataset(train_src, seed=cfg.data.seed, global_batch=cfg.data.batch_size, n_batches=tc.steps,
                           process=jax.process_index(), n_procs=jax.process_count(),
                           bucket=cfg.data.length_bucket)  # fmt: skip
        return train_iterator(ds, cfg.data.num_workers)

    ckpt = Checkpoints(tc.run_dir, keep=tc.keep, async_save=tc.async_checkpoint, save_every=tc.save_every)
    data_iter = None
    tracker, own_tracker = _open_trackers(cfg, tracker, primary)
    progress = None
    try:
        restored = ckpt.restore(run.abstract, sharding=run.replicated, make_iter=make_iter)
        if restored is None and has_checkpoints(tc.run_dir):
            raise RunDirMismatch(f"none of the checkpoints in {tc.run_dir} can be read (another model's, or damaged; "
                                 "see the warnings above): pass a new --train.run-dir, or move them away to "
                                 "start this run over")  # fmt: skip
        if restored is None:
            state, data_iter, meta = run.init(), make_iter(), {}
            say(f"[ssm] new run in {tc.run_dir}: {cfg.model.name} backbone with {cfg.model.layer} layers, "
                f"{count_params(state.model):,} parameters, "
                f"{len(train_src)} training examples, {run.mesh.devices.size} device(s), {jax.process_count()} process(es)")  # fmt: skip
        else:
            state, data_iter, meta = restored
            say(f"[ssm] resuming {tc.run_dir} from step {int(state.step)}")
        start = int(state.step)
        best = BestTracker(tc.best_metric, run.info.task, meta.get("best"))
        tracker.resume(start)
        progress = Progress(tc.steps, start, cfg.data.batch_size, tc.progress, enabled=verbose and primary)

        def meta_of(step: int) -> dict[str, Any]:
            return {"step": step, "best": best.record, "best_metric": best.metric, "config": cfg.to_dict()}

        def diverged(what: str, older_than: int) -> TrainingDiverged:
            return TrainingDiverged(f"{what}: training stopped. Last good checkpoint: {ckpt.newest_before(older_than)}. "
                                    "Try a lower --optim.lr, --optim.clip-norm 1.0, or a smaller --model.dt-max.")  # fmt: skip

        # the loss of step s is made by the parameters after step s - 1: a good checkpoint is older than those
        log = StepLog(run.info.task, run.schedules, tracker, progress, lambda what, s: diverged(what, s - 1),
                      watchdog.kick)  # fmt: skip

        def flush(step: int) -> None:
            log.flush(step, state.opt_state)

        def save(step: int, *, as_best: bool = False) -> None:
            flush(step)
            if not bool(all_finite(state.model)):
                raise diverged(f"non-finite parameters after step {step}", older_than=step)
            watchdog.kick("a checkpoint save")
            ckpt.save(state, data_iter, meta_of(step), best=as_best)
            watchdog.kick("training")

        def validate(step: int) -> None:
            nonlocal state
            flush(step)
            watchdog.kick("validation")
            m = run.evaluate(state, "val", source("val"), heartbeat=watchdog.kick)
            if not m:
                return
            tracker.log(step, "val", m)
            progress.write(f"[ssm] step {step} val " + " ".join(f"{k} {v:.4g}" for k, v in m.items()))
            if best.value(m) is not None and cfg.optim.schedule == "plateau":
                new_opt = plateau_update(state.opt_state, best.value(m), cfg.optim, maximize=best.maximize)
                state = eqx.tree_at(lambda t: t.opt_state, state, new_opt)
            if best.update(m, step):
                save(step, as_best=True)

        if best.record.get("step") == start and start not in ckpt.steps("best"):
            save(start, as_best=True)  # a kill during that best save: re-derive it from the restored state
        stop.check()
        for step in range(start + 1, tc.steps + 1):
            state, m = run.train_step(state, run.to_global(next(data_iter)))
            watchdog.kick()  # dispatch is asynchronous: a wedged step is caught when a flush blocks
            log.add(step, m)
            if step == start + 1:
                watchdog.kick("the first train step (compilation)")
                jax.block_until_ready(m["loss"])
                watchdog.kick("training")
                progress.reset_clock(step)
            if step % tc.log_every == 0 or step == tc.steps:
                flush(step)
            if tc.eval_every and step % tc.eval_every == 0 and step != tc.steps and "val" in tc.eval_splits:
                validate(step)
                progress.reset_clock(step)
            if ckpt.due(step) or (stop.requested and step != ckpt.last_saved):
                save(step)
            if stop.requested:
                ckpt.wait()
                say(f"\n[ssm] {stop.name()}: checkpoint of step {step} saved in {ckpt.dirs['latest']}")
                raise stop.exception()
        final = int(state.step)
        flush(final)
        results: dict[str, Any] = {"step": final}
        for split in tc.eval_splits:
            watchdog.kick(f"the final {split} evaluation")
            m = run.evaluate(state, split, source(split), heartbeat=watchdog.kick)
            if m:
                tracker.log(final, split, m)
                results[split] = m
        if "val" in results and best.update(results["val"], final):
            save(final, as_best=True)
        if ckpt.last_saved != final:
            save(final)
        results["best"] = best.record
        results["seconds"] = time.perf_counter() - t0
        for split in tc.eval_splits:
            if split in results:
                say(f"[ssm] step {final} {split}: " + json.dumps(results[split]))
        return results
    finally:
        if progress is not None:
            progress.close()
        ckpt.close()
        if data_iter is not None and hasattr(data_iter, "close"):
            try:
                data_iter.close()
            except Exception:  # noqa: BLE001
                pass
        if own_tracker:
            tracker.close()
