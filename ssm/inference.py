"""Load a trained run for inference: ``model, cfg = ssm.load(run_dir)``.

``load`` reads the run's config (``RUN_DIR/config.json``, or the newest checkpoint's copy when that file is
damaged), rebuilds the model's structure with its training-time sizes without computing it
(``eqx.filter_eval_shape``) and restores the checkpoint's ``model`` item into it on one device, whatever the
number of devices the run was trained on, without building an optimizer (:func:`restore`, the one path from a
run directory to a model, also used by ``scripts/evaluate.py``). The result is an :class:`InferenceModel`: the
backbone in inference mode (no dropout, BatchNorm running statistics) together with its BatchNorm state, with a
jitted batched :meth:`~InferenceModel.predict` and :meth:`~InferenceModel.generate` for autoregressive models.

Resolution change: every call takes ``rate`` (Δ' = rate·Δ in every layer, as state-spaces/s4's ``rate``): a model
trained on signals sampled every Δ reads signals sampled every ``rate·Δ`` (e.g. ``rate=2`` for
16 kHz → 8 kHz). :class:`AtRate` fixes the rate of a backbone for code that calls it without one
(``scripts/evaluate.py --rate``).
"""

from __future__ import annotations

import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ssm.config import Config
from ssm.layers.base import AbstractSSMLayer
from ssm.backbones import Backbone
from ssm.model import SequenceModel

_EXTRAS = ("lengths", "inputs2", "lengths2")


class AtRate(eqx.Module):
    """A backbone that always runs at relative sampling rate ``rate``: ``AtRate(net, 2.0)(inputs, state, ...)``
    is ``net(inputs, state, ..., rate=2.0)``."""

    net: SequenceModel | Backbone
    rate: float = eqx.field(static=True)

    def __call__(self, inputs: Array, state: eqx.nn.State, **kwargs: Any) -> tuple[Array, eqx.nn.State]:
        if kwargs.pop("rate", None) not in (None, self.rate):
            raise ValueError("AtRate: this model runs at a fixed rate; do not pass another one")
        return self.net(inputs, state, rate=self.rate, **kwargs)


class InferenceModel(eqx.Module):
    """A trained backbone ready for inference. ``net`` is the :class:`~ssm.model.SequenceModel` or the
    :class:`~ssm.backbones.Backbone` wrapping an :mod:`ssm.nn` model (in inference mode), ``state`` its BatchNorm statistics (empty without BatchNorm), ``task`` the
    dataset's task. ``model(inputs)`` runs ONE example; :meth:`predict` a batch."""

    net: SequenceModel | Backbone
    state: eqx.nn.State
    task: str = eqx.field(static=True)

    def __call__(
        self,
        inputs: Array,
        *,
        lengths: Array | None = None,
        inputs2: Array | None = None,
        lengths2: Array | None = None,
        rate: float = 1.0,
    ) -> Array:
        """Outputs of one example: class logits, regression values, or per-position logits (L, V)."""
        return self.net(inputs, self.state, lengths=lengths, inputs2=inputs2, lengths2=lengths2, rate=rate)[0]

    def predict(self, inputs: Array | np.ndarray, *, batch_size: int = 256, rate: float = 1.0, **extras: Any) -> Array:
        """Outputs of a batch ``inputs (B, L[, C])`` (and ``lengths``/``inputs2``/``lengths2`` of shape ``(B, ...)``),
        jitted and vmapped, in chunks of ``batch_size`` examples."""
        return predict(self, inputs, batch_size=batch_size, rate=rate, **extras)

    @property
    def layers(self) -> list[AbstractSSMLayer]:
        """The SSM layer of every block, in order (unstacked when the model scans over its layers)."""
        if isinstance(self.net, Backbone):
            is_layer = lambda x: isinstance(x, AbstractSSMLayer)  # noqa: E731
            return [x for x in jax.tree_util.tree_leaves(self.net, is_leaf=is_layer) if is_layer(x)]
        if self.net.scan_layers:
            params, static = eqx.partition(self.net.blocks, eqx.is_array)
            return [
                eqx.combine(jax.tree_util.tree_map(lambda a, i=i: a[i], params), static).layer
                for i in range(self.net.n_layers)
            ]
        return [b.layer for b in self.net.blocks]

    def generate(
        self,
        prompt: Array | np.ndarray,
        *,
        length: int,
        key: PRNGKeyArray,
        temperature: float = 1.0,
        top_p: float = 1.0,
        start_token: int | None = None,
        rate: float = 1.0,
    ) -> Array:
        """Autoregressive samples ``(B, length)`` continuing ``prompt (B, P)`` (see :func:`ssm.generate.generate`)."""
        from ssm.generate import generate

        return generate(self.net, self.state, prompt, length=length, key=key, temperature=temperature,
                        top_p=top_p, start_token=start_token, rate=rate)  # fmt: skip


@eqx.filter_jit
def _predict(model: InferenceModel, batch: dict[str, Array], rate: float) -> Array:
    def one(ex):
        return model(ex["inputs"], rate=rate, **{k: ex[k] for k in _EXTRAS if k in ex})

    return jax.vmap(one)(batch)


def predict(
    model: InferenceModel, inputs: Array | np.ndarray, *, batch_size: int = 256, rate: float = 1.0, **extras: Any
) -> Array:
    """Batched outputs of ``model`` (see :meth:`InferenceModel.predict`)."""
    unknown = set(extras) - set(_EXTRAS)
    if unknown:
        raise ValueError(f"predict: unknown argument(s) {sorted(unknown)}; the model takes {list(_EXTRAS)}")
    batch = {"inputs": inputs, **{k: v for k, v in extras.items() if v is not None}}
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    n = batch["inputs"].shape[0]
    for k, v in batch.items():
        if v.shape[:1] != (n,):
            raise ValueError(f"predict: {k} has shape {v.shape}; every argument needs the batch axis first ({n})")
    if batch_size < 1:
        raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
    outs = [_predict(model, {k: v[i : i + batch_size] for k, v in batch.items()}, rate) for i in range(0, n, batch_size)]
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs)


def read_config(run_dir: str) -> Config:
    """The :class:`~ssm.config.Config` of a run directory: ``RUN_DIR/config.json``, or, when that file is
    missing or damaged, the config recorded by its newest checkpoint (with a warning saying so)."""
    from ssm.train.run_dir import read_config as _read

    return _read(run_dir)


def _abstract_train_state(cfg: Config, info: Any) -> Any:
    """Shapes and dtypes of the run's :class:`~ssm.train.state.TrainState`: only for checkpoints written
    before the ``model`` item existed (it builds the optimizer)."""
    from ssm.model import make_model
    from ssm.train.optimizer import make_optimizer
    from ssm.train.state import TrainState

    def init():
        model, model_state = make_model(cfg.model, info, key=jax.random.PRNGKey(0))
        tx, _ = make_optimizer(model, cfg.optim, cfg.train.steps)
        opt_state = tx.init(eqx.filter(model, eqx.is_array))
        return TrainState(jnp.zeros((), jnp.int32), model, model_state, opt_state, jax.random.PRNGKey(0))

    return eqx.filter_eval_shape(init)


def restore(
    run_dir: str,
    step: int | None = None,
    *,
    checkpoint: str = "best",
    data_root: str | None = None,
    sharding: Any = None,
    cfg: Config | None = None,
    weights: str | None = None,
) -> tuple[Any, Any, Config, Any, dict[str, Any], str]:
    """The one path from a run directory to its trained model (used by :func:`load` and
    ``scripts/evaluate.py``): ``(model, model_state, cfg, info, meta, which)``.

    The model is rebuilt from the run's config with its training-time sizes (e.g. S4's ``l_max`` is the
    training sequence length, the length its ``C̃`` is defined for) and its ``model`` checkpoint item
    restored without building an optimizer: the best checkpoint, else the latest (``checkpoint="latest"``:
    only the latest; ``step``: that step). Unreadable checkpoints are skipped with a ``CheckpointWarning``.
    ``cfg`` is the run's config when the caller has already read it (:func:`read_config`). ``weights``:
    a run trained with ``--optim.ema-decay`` gives its exponential moving average of the weights (the
    weights its validation and test used) unless ``weights="raw"``; ``"ema"`` refuses a run without one.
    ``meta["weights"]`` says which were restored.
    """
    import dataclasses

    from ssm.data import get_dataset
    from ssm.train.checkpoint import Checkpoints
    from ssm.train.state import abstract_model

    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    cfg = read_config(run_dir) if cfg is None else cfg
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    dirs = {w: os.path.join(os.path.abspath(run_dir), d) for w, d in (("latest", "checkpoints"), ("best", "best"))}
    if not any(os.path.isdir(d) for d in dirs.values()):
        raise FileNotFoundError(f"no checkpoints in {run_dir!r} (expected {dirs['latest']} or {dirs['best']})")
    info = get_dataset(cfg.data.name).info(cfg.data)
    ckpt = Checkpoints(run_dir, keep=cfg.train.keep, async_save=False)
    try:
        (model, model_state), meta, which = ckpt.restore_model(
            abstract_model(cfg.model, info), checkpoint=checkpoint, step=step, sharding=sharding,
            legacy_state=lambda: _abstract_train_state(cfg, info), weights=weights,
        )  # fmt: skip
    finally:
        ckpt.close()
    return model, model_state, cfg, info, meta, which


def load(
    run_dir: str,
    step: int | None = None,
    *,
    checkpoint: str = "best",
    data_root: str | None = None,
    weights: str | None = None,
) -> tuple[InferenceModel, Config]:
    """``(model, cfg)`` of a run directory.

    ``step=None`` restores the best checkpoint (by validation metric; the latest one if the run has no
    readable best checkpoint, or with ``checkpoint="latest"``); ``step=N`` restores the checkpoint of step
    N (kept as latest or best). The arrays are placed on ``jax.devices()[0]`` whatever the device count
    the run was saved with; their dtype follows this process's ``jax_enable_x64`` setting. ``data_root``
    overrides ``data.root`` (datasets whose sizes come from their files, e.g. a vocabulary, read them).
    A run trained with ``--optim.ema-decay`` gives its moving average of the weights (``weights="raw"``:
    the trained weights; ``"ema"``: refuse a run without an average). No optimizer is built (see
    :func:`restore`).
    """
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    model, model_state, cfg, info, _, _ = restore(run_dir, step, checkpoint=checkpoint, data_root=data_root,
                                                  sharding=device, weights=weights)  # fmt: skip
    return InferenceModel(eqx.nn.inference_mode(model), model_state, info.task), cfg
