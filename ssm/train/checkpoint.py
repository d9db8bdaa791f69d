"""Orbax checkpoints of a run: ``RUN_DIR/checkpoints`` (the latest ``keep``) and
``RUN_DIR/best`` (the best by validation metric).

A checkpoint is one Orbax ``Composite`` with named items: ``state`` (every array of the
:class:`~ssm.train.state.TrainState`: model, BatchNorm statistics, optimizer state, step, RNG key),
``data`` (the Grain iterator position, one file per process) and ``meta`` (JSON: step, best metric,
the resolved config). Saves are atomic (written to a temporary directory, renamed when complete), so a
run killed during a save still has its previous checkpoints. Restoring walks the steps from newest to
oldest and skips, with a :class:`CheckpointWarning` naming it, any checkpoint that cannot be read.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import grain
import jax
import orbax.checkpoint as ocp


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


class Checkpoints:
    def __init__(self, run_dir: str, *, keep: int = 2, async_save: bool = True):
        root = os.path.abspath(run_dir)
        self.dirs = {"latest": os.path.join(root, "checkpoints"), "best": os.path.join(root, "best")}

        def manager(path: str, n: int) -> ocp.CheckpointManager:
            opts = ocp.CheckpointManagerOptions(
                max_to_keep=n, enable_async_checkpointing=async_save, cleanup_tmp_directories=True, create=True
            )
            return ocp.CheckpointManager(path, options=opts)

        self._saved: dict[str, set[int]] = {"latest": set(), "best": set()}
        self.managers = {"latest": manager(self.dirs["latest"], keep), "best": manager(self.dirs["best"], 1)}

    def steps(self, which: str = "latest") -> list[int]:
        return sorted(self.managers[which].all_steps())

    def save(self, state: Any, data_iter: Any, meta: dict[str, Any], *, best: bool = False) -> None:
        """Save ``state`` (its arrays), the iterator position and ``meta`` at step ``meta["step"]``;
        also as the best checkpoint when ``best``."""
        step = int(meta["step"])
        arrays = eqx.filter(state, eqx.is_array)
        for n, which in enumerate(("latest", "best") if best else ("latest",)):
            if step in self._saved[which] or step in self.managers[which].all_steps():
                continue
            if n:  # Orbax names its multi-process barriers by step: one save of a step at a time
                self.managers["latest"].wait_until_finished()
            self._saved[which].add(step)
            items = {"state": ocp.args.StandardSave(arrays), "meta": ocp.args.JsonSave(meta)}
            if data_iter is not None:
                items["data"] = grain.checkpoint.CheckpointSave(data_iter)
            self.managers[which].save(step, args=ocp.args.Composite(**items), force=True)

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
        arrays, static = restore_target(abstract_state, sharding)
        for step in sorted(mngr.all_steps(), reverse=True):
            it = make_iter() if make_iter is not None else None
            items = {"state": ocp.args.StandardRestore(arrays), "meta": ocp.args.JsonRestore()}
            if it is not None:
                items["data"] = grain.checkpoint.CheckpointRestore(it)
            try:
                r = mngr.restore(step, args=ocp.args.Composite(**items))
                state = eqx.combine(r["state"], static)
                return state, it, dict(r["meta"])
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
                path = os.path.join(self.dirs[which], str(step))
                msg = str(e).splitlines()[0][:300] if str(e) else ""
                warnings.warn(
                    f"checkpoint step {step} at {path} is unreadable ({type(e).__name__}: {msg}); "
                    "skipping it and trying an older one",
                    CheckpointWarning,
                    stacklevel=2,
                )
                if it is not None and hasattr(it, "close"):
                    try:
                        it.close()
                    except Exception:  # noqa: BLE001
                        pass
        return None

    def wait(self) -> None:
        for m in self.managers.values():
            m.wait_until_finished()

    def close(self) -> None:
        for m in self.managers.values():
            m.wait_until_finished()
            m.close()
