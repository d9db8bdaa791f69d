"""What made a run directory, so that a rerun resumes the same run or refuses.

A run directory records ``config.json`` (the resolved :class:`~ssm.config.Config`) and ``run.json``
(``{"ssm_version", "fingerprint"}``: the project version and a hash of the paths, shapes and dtype
kinds of the model's and the optimizer state's arrays). Every checkpoint's ``meta`` item also holds the
config, so a damaged ``config.json`` is recovered from the newest checkpoint that records it.

Rerunning a directory that holds checkpoints with another config refuses (:class:`RunDirMismatch`)
naming the fields that differ and the two ways out; ``--train.allow-resume-changes`` accepts the
fields of :data:`SAFE_ON_RESUME` (more steps, another evaluation or checkpoint cadence, moved data...),
never a change of the model, the data or the optimization. A directory without any checkpoint takes the
new config (nothing could be mixed).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any

import numpy as np

from ssm.config import Config, config_from_dict
from ssm.train.errors import RunDirMismatch, RunDirUnusable

CONFIG = "config.json"
RUN_INFO = "run.json"
CHECKPOINT_DIRS = ("checkpoints", "best")

# Fields that may differ on resume with --train.allow-resume-changes: they change neither the model,
# the data order nor the update rule of the steps already taken. (``train.steps`` moves the end of a
# decaying schedule when ``optim.decay_steps`` is unset: the user asks for that explicitly.)
SAFE_ON_RESUME = frozenset({
    "train.steps", "train.eval_every", "train.save_every", "train.log_every", "train.eval_batches",
    "train.eval_splits", "train.keep", "train.async_checkpoint", "train.wandb", "train.wandb_project",
    "train.num_devices", "data.root", "data.num_workers", "data.eval_batch_size",
})  # fmt: skip
# Fields that never matter for what a run computes (where it runs, how it reports).
IGNORED = frozenset({"train.run_dir", "train.progress", "train.hang_timeout_s", "train.allow_resume_changes"})


class RunDirWarning(UserWarning):
    """A file of the run directory is damaged; the message says what is used instead."""


def version() -> str:
    try:
        from importlib.metadata import version as v

        return v("ssm")
    except Exception:  # noqa: BLE001 - not installed (a source checkout): the pyproject version
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "pyproject.toml")
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("version"):
                        return line.split("=", 1)[1].strip().strip('"')
        except OSError:
            pass
        return "unknown"


def fingerprint(abstract_state: Any) -> dict[str, str]:
    """Hashes of the array structure of ``abstract_state`` (a TrainState of ``ShapeDtypeStruct``):
    ``{"model": .., "optimizer": ..}`` over each array's path, shape and dtype kind (float/complex/int;
    not the width, so a float32 run resumes in a float64 process)."""
    import equinox as eqx
    import jax

    def digest(tree: Any) -> str:
        arrays = eqx.filter(tree, lambda x: isinstance(x, jax.ShapeDtypeStruct) or eqx.is_array(x))
        h = hashlib.sha256()
        for path, leaf in jax.tree_util.tree_flatten_with_path(arrays)[0]:
            h.update(f"{jax.tree_util.keystr(path)}:{tuple(leaf.shape)}:{np.dtype(leaf.dtype).kind};".encode())
        return h.hexdigest()[:16]

    return {
        "model": digest((abstract_state.model, abstract_state.model_state)),
        "optimizer": digest(abstract_state.opt_state),
    }


def has_checkpoints(run_dir: str) -> bool:
    for d in CHECKPOINT_DIRS:
        p = os.path.join(run_dir, d)
        if os.path.isdir(p) and any(n.isdigit() for n in os.listdir(p)):
            return True
    return False


def _checkpoint_configs(run_dir: str):
    """``(step, path, config dict)`` recorded in checkpoint ``meta`` items, newest first."""
    found = []
    for d in CHECKPOINT_DIRS:
        p = os.path.join(run_dir, d)
        if os.path.isdir(p):
            found += [(int(n), os.path.join(p, n, "meta", "metadata")) for n in os.listdir(p) if n.isdigit()]
    for step, path in sorted(found, reverse=True):
        try:
            with open(path) as f:
                meta = json.load(f)
            yield step, path, meta["config"]
        except (OSError, ValueError, KeyError, TypeError):
            continue


def _short(x: Any, n: int = 60) -> str:
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def read_config_dict(run_dir: str) -> dict[str, Any] | None:
    """The recorded config of ``run_dir`` as a dict: ``config.json``, else (missing or damaged, with a
    :class:`RunDirWarning`) the config recorded by the newest checkpoint; None when neither exists.
    Raises :class:`RunDirUnusable` when ``config.json`` is damaged and no checkpoint records a config."""
    path = os.path.join(run_dir, CONFIG)
    problem = None
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
            config_from_dict(d)  # every field known and valid
            return d
        except (OSError, ValueError, TypeError, AttributeError) as e:
            problem = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    for step, meta_path, d in _checkpoint_configs(run_dir):
        try:
            config_from_dict(d)
        except (ValueError, TypeError, AttributeError):
            continue
        what = f"is damaged ({problem})" if problem else "is missing"
        warnings.warn(f"{path} {what}: using the config recorded by checkpoint step {step} ({meta_path}); "
                      "the checkpoints, metrics.jsonl and plots still work", RunDirWarning, stacklevel=3)  # fmt: skip
        return d
    if problem:
        raise RunDirUnusable(
            f"{path} is damaged ({problem}) and no checkpoint records the config: the checkpoints cannot be "
            f"loaded without it (metrics.jsonl and scripts/plot.py still work); restore {CONFIG} or start a "
            "new --train.run-dir"
        )
    return None


def read_config(run_dir: str) -> Config:
    """The :class:`~ssm.config.Config` of a run directory (see :func:`read_config_dict`)."""
    d = read_config_dict(run_dir)
    if d is None:
        raise FileNotFoundError(f"{os.path.join(run_dir, CONFIG)} not found: is {run_dir!r} a run directory "
                                "written by scripts/train.py?")  # fmt: skip
    return config_from_dict(d)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = tuple(v) if isinstance(v, list) else v
    return out


def config_diff(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{"optim.lr": (recorded, current), ...}`` over every field (generic: whatever the sections hold)."""
    a, b = _flat(json.loads(json.dumps(recorded))), _flat(json.loads(json.dumps(current)))
    missing = object()
    return {k: (a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
            if k not in IGNORED and a.get(k, missing) != b.get(k, missing)}  # fmt: skip


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def check_config(cfg: Config) -> None:
    """Refuse to resume ``cfg.train.run_dir`` under another config (see the module docstring)."""
    run_dir = cfg.train.run_dir
    if not has_checkpoints(run_dir):
        return
    recorded = read_config_dict(run_dir)
    if recorded is None:
        return  # checkpoints without any recorded config: restoring them checks their structure
    # Through config_from_dict: a config.json of an older schema is compared after its migration, and a field
    # added since the run was recorded holds its default there (defaults keep the old behaviour).
    diff = config_diff(config_from_dict(recorded).to_dict(), cfg.to_dict())
    unsafe = {k: v for k, v in diff.items() if k not in SAFE_ON_RESUME}
    if not diff or (not unsafe and cfg.train.allow_resume_changes):
        return
    shown = list(diff.items())[:8]
    lines = [f"  {k}: {_short(a)} (recorded) -> {_short(b)} (now)" for k, (a, b) in shown]
    if len(diff) > len(shown):
        lines.append(f"  ... and {len(diff) - len(shown)} more")
    if unsafe:
        tail = f"{', '.join(sorted(unsafe)[:5])} cannot change in a run (another model, data or optimization)."
    else:
        tail = "These fields may change on resume: pass --train.allow-resume-changes to accept them."
    raise RunDirMismatch(
        f"{run_dir} holds a run of another config ({os.path.join(run_dir, CONFIG)}); differing fields:\n"
        + "\n".join(lines)
        + f"\nRerun with the recorded config to resume it, or pass a new --train.run-dir to start another run. {tail}"
    )


def check_and_record(cfg: Config, abstract_state: Any, *, write: bool = True) -> None:
    """Refuse a run directory whose checkpoints have another array structure than ``abstract_state``
    (same config, other code), then record ``config.json`` and ``run.json`` (when ``write``)."""
    run_dir = cfg.train.run_dir
    fp = fingerprint(abstract_state)
    info_path = os.path.join(run_dir, RUN_INFO)
    if has_checkpoints(run_dir) and os.path.exists(info_path):
        try:
            with open(info_path) as f:
                old = json.load(f)
            old_fp, old_v = dict(old["fingerprint"]), old.get("ssm_version", "?")
        except (OSError, ValueError, KeyError, TypeError):
            old_fp = None  # damaged: the restore checks the structure
        if old_fp is not None and old_fp != fp:
            parts = [k for k in ("model", "optimizer") if old_fp.get(k) != fp[k]]
            raise RunDirMismatch(
                f"{run_dir} holds checkpoints of another {' and '.join(parts)} structure (written by ssm "
                f"{old_v}, this is {version()}; {info_path}): resume it with that version, or pass a new "
                "--train.run-dir"
            )
    if write:
        try:
            os.makedirs(run_dir, exist_ok=True)
            _write_atomic(os.path.join(run_dir, CONFIG), cfg.to_json())
            _write_atomic(info_path, json.dumps({"ssm_version": version(), "fingerprint": fp}, indent=2))
        except OSError as e:
            raise unusable(run_dir, e) from None


def unusable(run_dir: str, e: OSError) -> RunDirUnusable:
    return RunDirUnusable(f"cannot write to the run directory {run_dir} ({e.strerror or e}"
                          f"{': ' + str(e.filename) if e.filename else ''}): free space or fix its permissions, "
                          "or pass another --train.run-dir")  # fmt: skip


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
