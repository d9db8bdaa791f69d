"""Helpers shared by the experiment preset groups (not a group itself: the leading underscore
keeps it out of :func:`configs.groups`).

Published recipes count epochs; a run here counts optimizer steps, so
``steps = epochs × ⌊n_train / batch⌋`` (the reference loaders drop the last partial batch).
MultiStep milestones are converted from epochs to steps; ReduceLROnPlateau (stepped per epoch in the
references) is the ``plateau`` schedule stepped at each validation, once per epoch unless a preset says
otherwise.
"""

from __future__ import annotations

from ssm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig


def given(**options) -> dict:
    """The options that are set (not ``None``): a preset helper's ``dt_min=None`` means the layer's default."""
    return {k: v for k, v in options.items() if v is not None}


def steps(epochs: float, n_train: int, batch: int) -> int:
    return max(1, int(epochs * (n_train // batch)))


def preset(
    desc: str,
    run: str,
    *,
    model: dict | object,
    data: dict,
    optim: dict,
    n_train: int,
    epochs: float,
    seed: int = 0,
    evals_per_epoch: float = 1.0,
    train: dict | None = None,
) -> tuple[str, Config]:
    """``(description, Config)`` with steps, eval and checkpoint intervals derived from epochs. ``model`` holds
    the :class:`ModelConfig` fields, its ``layer`` a layer config (``S4Config(measure="legs")``), or is another
    backbone's config (``SaShiMiConfig()``); ``data`` the :class:`DataConfig` fields and the dataset's options."""
    batch = data["batch_size"]
    n_steps = steps(epochs, n_train, batch)
    per_epoch = max(1, n_train // batch)
    every = max(1, min(n_steps, int(per_epoch / evals_per_epoch)))
    t = dict(steps=n_steps, run_dir=f"runs/{run}", seed=seed, eval_every=every, save_every=every,
             log_every=max(1, min(100, every)))  # fmt: skip
    t.update(train or {})
    d = dict(eval_batch_size=max(batch, 2 * batch), seed=seed)
    d.update(data)
    return desc, Config(
        model=ModelConfig(**model) if isinstance(model, dict) else model, data=DataConfig(**d), optim=OptimConfig(**optim), train=TrainConfig(**t)
    )
