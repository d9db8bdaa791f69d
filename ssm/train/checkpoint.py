"""Orbax checkpoints of a run: ``RUN_DIR/checkpoints`` (the latest ``keep``) and ``RUN_DIR/best``
(the best by validation metric), and the one path from a run directory to a model.

A checkpoint is one Orbax ``Composite`` with named items: ``model`` (the arrays of the model and of
its ``eqx.nn.State``: everything inference needs, restored without building an optimizer), ``state``
(the rest of the :class:`~ssm.train.state.TrainState`: step, optimizer state, RNG key), ``ema`` (only
with ``--optim.ema-decay``: the moving average of the model's arrays, structured like ``model``'s
``"model"`` entry), ``data`` (the Grain iterator position, one file per process) and ``meta`` (JSON: step,
best metric, the resolved config). Checkpoints written before the ``model`` item existed hold the whole
TrainState in ``state``; they are still read.

Saves are atomic (Orbax writes a temporary directory and renames it when complete, and removes the
checkpoints that fall out of ``keep`` only after that), so a run killed during a save keeps its
previous checkpoints; a new best checkpoint is written (and waited for) before the latest checkpoint
of the same step, so no latest checkpoint claims a best step that ``best/`` lacks. Restoring walks the
steps from newest to oldest and skips, with one :class:`CheckpointWarning` naming it, any checkpoint that
cannot be read; such a damaged step is replaced when the run saves that step again.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import grain
import jax
import orbax.checkpoint as ocp

from ssm.train.errors import run_dir_os_error


class CheckpointWarning(UserWarning):
    """A checkpoint was unreadable and skipped."""


def _is_sds(x: Any) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct)


def restore_target(abstract: Any, sharding: Any = None) -> tuple[Any, Any]:
    """``(arrays, static)`` of an abstract tree (from ``eqx.filter_eval_shape``); every array
    placeholder gets ``sharding`` (Orbax restores each leaf onto it)."""
    arrays, static = eqx.partition(abstract, _is_sds)
    if sharding is not None:
        arrays = jax.tree_util.tree_map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), arrays
        )
    return arrays, static


_QUIET = False


def _silence_library_noise() -> None:
    """A failed restore leaves TensorStore callbacks aimed at Orbax's closed asyncio loop; each prints a
    'RuntimeError: Event loop is closed' traceback (through ``sys.excepthook``), an asyncio 'Task
    exception was never retrieved' log record, or an 'Exception ignored in <coroutine ...>' report of an
    Orbax read coroutine. The skipped checkpoint is already named in one
    :class:`CheckpointWarning`, so exactly those are dropped; everything else passes through."""
    global _QUIET
    if _QUIET:
        return
    _QUIET = True
    prev_hook, prev_unraisable = sys.excepthook, sys.unraisablehook

    def noise(exc: BaseException | None) -> bool:
        return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"

    def excepthook(t, v, tb):
        if not noise(v):
            prev_hook(t, v, tb)

    def unraisablehook(u):
        # an Orbax read coroutine dropped with its failure ("Exception ignored in: <coroutine ...>")
        orbax_coroutine = "orbax" in getattr(getattr(u.object, "cr_code", None), "co_filename", "")
        if not (noise(u.exc_value) or orbax_coroutine):
            prev_unraisable(u)

    def raised_in_orbax(exc: BaseException | None) -> bool:
        tb = exc.__traceback__ if exc is not None else None
        while tb is not None:
            if "orbax" in tb.tb_frame.f_code.co_filename:
                return True
            tb = tb.tb_next
        return False

    class _OrbaxTaskFilter(logging.Filter):
        # The unread failure may be named in the message (a Task of an Orbax coroutine) or only in the traceback
        # (a _GatheringFuture of Orbax's reads, whose ValueError for another shape is raised in Orbax's code).
        def filter(self, record: logging.LogRecord) -> bool:
            msg = record.getMessage()
            exc = record.exc_info[1] if record.exc_info else None
            return not ("never retrieved" in msg and ("orbax" in msg or raised_in_orbax(exc)))

    class _FullDiskFilter(logging.Filter):
        # A full or unwritable run directory makes each of Orbax's save threads log its own traceback of the
        # same TensorStore error (~500 lines for one failed save), and one of its asyncio write futures may be
        # collected with the OSError unread (asyncio's "Future exception was never retrieved", timing-dependent);
        # the trainer reports the failure in one line (exit 5).
        def filter(self, record: logging.LogRecord) -> bool:
            exc = record.exc_info[1] if record.exc_info else None
            return run_dir_os_error(exc) is None and run_dir_os_error(ValueError(record.getMessage())) is None

    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
    logging.getLogger("asyncio").addFilter(_OrbaxTaskFilter())
    for name in ("absl", "asyncio"):
        logging.getLogger(name).addFilter(_FullDiskFilter())


def _split(state: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """A TrainState (abstract or concrete) -> its ``model`` item, its ``state`` item and its ``ema`` item
    (None without an EMA)."""
    return ({"model": state.model, "model_state": state.model_state},
            {"step": state.step, "opt_state": state.opt_state, "key": state.key}, state.ema)  # fmt: skip


class Checkpoints:
    """The checkpoints of ``run_dir``; ``save_every`` (0: only when asked) sets :meth:`due`."""

    def __init__(self, run_dir: str, *, keep: int = 2, async_save: bool = True, save_every: int = 0):
        _silence_library_noise()
        root = os.path.abspath(run_dir)
        self.save_every = save_every
        self.dirs = {"latest": os.path.join(root, "checkpoints"), "best": os.path.join(root, "best")}

        def manager(path: str, n: int) -> ocp.CheckpointManager:
            opts = ocp.CheckpointManagerOptions(
                max_to_keep=n, enable_async_checkpointing=async_save, cleanup_tmp_directories=True, create=True
            )
            return ocp.CheckpointManager(path, options=opts)

        self._saved: dict[str, set[int]] = {"latest": set(), "best": set()}
        self._damaged: dict[str, set[int]] = {"latest": set(), "best": set()}
        self.last_saved: int | None = None
        self.managers = {"latest": manager(self.dirs["latest"], keep), "best": manager(self.dirs["best"], 1)}

    def steps(self, which: str = "latest") -> list[int]:
        return sorted(self.managers[which].all_steps())

    def due(self, step: int) -> bool:
        """Whether the cadence asks for a checkpoint of ``step`` (not yet saved)."""
        return bool(self.save_every) and step % self.save_every == 0 and step != self.last_saved

    def newest_before(self, step: int) -> str:
        """The newest checkpoint older than ``step``, as ``"step N in DIR"`` (or says there is none)."""
        have = [(s, w) for w in ("latest", "best") for s in set(self.steps(w)) | self._saved[w]
                if s < step and s not in self._damaged[w]]  # fmt: skip
        if not have:
            return f"none (no checkpoint older than step {step})" if self.last_saved is not None else "none (no checkpoint yet)"
        s, w = max(have)
        return f"step {s} in {self.dirs[w]}"

    def save(self, state: Any, data_iter: Any, meta: dict[str, Any], *, best: bool = False) -> None:
        """Save ``state`` (its arrays), the iterator position and ``meta`` at step ``meta["step"]``;
        also as the best checkpoint when ``best`` (written first)."""
        step = int(meta["step"])
        model, rest, ema = _split(eqx.filter(state, eqx.is_array))
        for which in ("best", "latest") if best else ("latest",):
            mngr = self.managers[which]
            if step in self._damaged[which]:  # skipped on restore as unreadable: replace it
                mngr.wait_until_finished()
                mngr.delete(step)
                self._damaged[which].discard(step)
                self._saved[which].discard(step)
            elif step in self._saved[which] or step in mngr.all_steps():
                continue
            for m in self.managers.values():  # Orbax names its multi-process barriers by step: one save at a time
                m.wait_until_finished()
            self._saved[which].add(step)
            items = {"model": ocp.args.StandardSave(model), "state": ocp.args.StandardSave(rest),
                     "meta": ocp.args.JsonSave(meta)}  # fmt: skip
            if ema is not None:
                items["ema"] = ocp.args.StandardSave(ema)
            if data_iter is not None:
                items["data"] = grain.checkpoint.CheckpointSave(data_iter)
            mngr.save(step, args=ocp.args.Composite(**items), force=True)
            if which == "best":  # the latest checkpoint of this step (its meta names this best) comes after
                mngr.wait_until_finished()
        self.last_saved = step

    def _skip(self, which: str, step: int, e: Exception) -> None:
        self._damaged[which].add(step)
        path = os.path.join(self.dirs[which], str(step))
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        warnings.warn(f"checkpoint step {step} at {path} is unreadable ({type(e).__name__}: {msg}); skipping it",
                      CheckpointWarning, stacklevel=3)  # fmt: skip

    def _has_item(self, which: str, step: int, item: str) -> bool:
        return os.path.isdir(os.path.join(self.dirs[which], str(step), item))

    def _has_model_item(self, which: str, step: int) -> bool:
        return self._has_item(which, step, "model")

    def restore(
        self,
        abstract_state: Any,
        *,
        sharding: Any = None,
        make_iter: Callable[[], Any] | None = None,
        which: str = "latest",
    ) -> tuple[Any, Any, dict[str, Any]] | None:
        """The newest readable checkpoint as ``(state, data_iter, meta)``, or None if there is none.

        ``abstract_state`` gives the structure, shapes and dtypes; ``make_iter()`` builds a fresh data
        iterator that is moved to the saved position (omit it to skip the data item)."""
        mngr = self.managers[which]
        model_abs, rest_abs, ema_abs = _split(abstract_state)
        model_t, model_s = restore_target(model_abs, sharding)
        rest_t, rest_s = restore_target(rest_abs, sharding)
        ema_t, ema_s = restore_target(ema_abs, sharding)
        whole_t, whole_s = restore_target(abstract_state, sharding)
        for step in sorted(mngr.all_steps(), reverse=True):
            it = make_iter() if make_iter is not None else None
            new_layout = self._has_model_item(which, step)
            items = {"meta": ocp.args.JsonRestore()}
            if new_layout:
                items.update(model=ocp.args.StandardRestore(model_t), state=ocp.args.StandardRestore(rest_t))
                if ema_abs is not None:
                    items["ema"] = ocp.args.StandardRestore(ema_t)
            else:
                items["state"] = ocp.args.StandardRestore(whole_t)
            if it is not None:
                items["data"] = grain.checkpoint.CheckpointRestore(it)
            try:
                if ema_abs is not None and not self._has_item(which, step, "ema"):
                    raise ValueError("it holds no 'ema' item (written without --optim.ema-decay)")
                r = mngr.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
                self._skip(which, step, e)
                if it is not None and hasattr(it, "close"):
                    try:
                        it.close()
                    except Exception:  # noqa: BLE001
                        pass
                continue
            if new_layout:
                m, s = eqx.combine(r["model"], model_s), eqx.combine(r["state"], rest_s)
                ema = None if ema_abs is None else eqx.combine(r["ema"], ema_s)
                state = type(abstract_state)(s["step"], m["model"], m["model_state"], s["opt_state"], s["key"], ema)
            else:
                state = eqx.combine(r["state"], whole_s)
            self.last_saved = step if which == "latest" else self.last_saved
            return state, it, dict(r["meta"])
        return None

    def restore_model(
        self,
        abstract_model: tuple[Any, Any],
        *,
        checkpoint: str = "best",
        step: int | None = None,
        sharding: Any = None,
        legacy_state: Callable[[], Any] | None = None,
        weights: str | None = None,
    ) -> tuple[tuple[Any, Any], dict[str, Any], str]:
        """``((model, model_state), meta, which)``: the best checkpoint, else the latest one (or only the
        latest, ``checkpoint="latest"``; or the checkpoint of ``step``), without any optimizer.
        ``weights``: ``None`` gives the EMA of the weights when the checkpoint holds one (a run with
        ``--optim.ema-decay``), else the trained weights; ``"ema"`` requires the EMA; ``"raw"`` gives the
        trained weights. ``meta["weights"]`` says which (``"ema"`` or ``"raw"``).
        ``legacy_state()`` gives the abstract TrainState of checkpoints written before the ``model`` item
        (it builds the optimizer; omit it to skip them). Raises ``FileNotFoundError`` / ``ValueError``
        naming what is missing."""
        if checkpoint not in ("best", "latest"):
            raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
        if weights not in (None, "ema", "raw"):
            raise ValueError(f"weights must be 'ema' or 'raw' (or None: the EMA when there is one), got {weights!r}")
        order = ["best", "latest"] if checkpoint == "best" else ["latest"]
        if step is not None:
            order = [w for w in ("latest", "best") if step in self.steps(w)]
            if not order:
                have = sorted(set(self.steps("latest")) | set(self.steps("best")))
                raise ValueError(f"no checkpoint of step {step} in {os.path.dirname(self.dirs['latest'])}; "
                                 f"saved steps: {have}")  # fmt: skip
        target, static = restore_target({"model": abstract_model[0], "model_state": abstract_model[1]}, sharding)
        for which in order:
            for s in sorted(self.steps(which), reverse=True):
                if step is not None and s != step:
                    continue
                has_ema = self._has_item(which, s, "ema")
                if weights == "ema" and not has_ema:
                    raise ValueError(f"checkpoint {os.path.join(self.dirs[which], str(s))} holds no EMA of the "
                                     "weights (the run had no --optim.ema-decay): ask for the raw weights")  # fmt: skip
                try:
                    if self._has_model_item(which, s):
                        items = {"model": ocp.args.StandardRestore(target), "meta": ocp.args.JsonRestore()}
                        use_ema = has_ema and weights != "raw"
                        if use_ema:  # the average replaces the trained weights; BatchNorm statistics stay
                            items["ema"] = ocp.args.StandardRestore(target["model"])
                        r = self.managers[which].restore(s, args=ocp.args.Composite(**items))
                        m = eqx.combine(r["model"], static)
                        net = eqx.combine(r["ema"], static["model"]) if use_ema else m["model"]
                        meta = dict(r["meta"], weights="ema" if use_ema else "raw")
                        return (net, m["model_state"]), meta, which
                    if legacy_state is None:
                        raise ValueError("written before the 'model' item existed")
                    whole_t, whole_s = restore_target(legacy_state(), sharding)
                    r = self.managers[which].restore(s, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(whole_t), meta=ocp.args.JsonRestore()))  # fmt: skip
                    st = eqx.combine(r["state"], whole_s)
                    return (st.model, st.model_state), dict(r["meta"], weights="raw"), which
                except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
                    self._skip(which, s, e)
        run_dir = os.path.dirname(self.dirs["latest"])
        raise FileNotFoundError(f"no readable checkpoint in {run_dir}" + (f" of step {step}" if step is not None else "")
                                + f" (looked in {', '.join(self.dirs[w] for w in order)})")  # fmt: skip

    def wait(self) -> None:
        for m in self.managers.values():
            m.wait_until_finished()

    def close(self) -> None:
        for m in self.managers.values():
            m.wait_until_finished()
            m.close()
