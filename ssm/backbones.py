"""The models of :mod:`ssm.nn` behind the training loop's model interface.

The trainer calls every model as ``model(inputs, state, *, key, lengths, rate) -> (outputs, state)`` (the
:class:`~ssm.model.SequenceModel` signature, with an ``eqx.nn.State`` for BatchNorm). The backbones of
:mod:`ssm.nn` (``SaShiMiModel``, ``AdaptiveLM``, the pooled S4Torch classifier) keep no such state and take one
example; :class:`Backbone` wraps one of them so that the training, evaluation and checkpoint code is the same for
all. The wrapped model stays reachable as ``model.net`` (generation steps it through its own
``init_state``/``step``).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ssm.nn import PooledBackbone
from ssm.nn.linear import Linear


class Backbone(eqx.Module):
    """``Backbone(net, outputs)``: ``net(inputs, key=...)`` gives the outputs the trainer's loss reads: logits
    ``(L, V)`` (``outputs="logits"``: ``SaShiMiModel``, classifiers) or, for ``AdaptiveLM``
    (``outputs="log_probs"``), the whole-vocabulary log-probabilities ``(L, V)`` (a log-softmax of them is
    themselves, so the trainer's cross-entropy is the adaptive softmax's)."""

    net: eqx.Module
    outputs: str = eqx.field(static=True)

    def __call__(
        self,
        inputs: Array,
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        lengths: Array | None = None,
        inputs2: Array | None = None,
        lengths2: Array | None = None,
        rate: float = 1.0,
    ) -> tuple[Array, eqx.nn.State]:
        # Causal models: the outputs on the real steps do not depend on the padding after them, so ``lengths``
        # needs no masking here (the loss counts the first ``lengths`` positions).
        if inputs2 is not None:
            raise ValueError(f"{type(self.net).__name__} reads one sequence; two-sequence (retrieval) tasks need "
                             "the residual backbone (model:residual)")  # fmt: skip
        if not (isinstance(rate, (int, float)) and rate == 1.0):
            raise ValueError(f"{type(self.net).__name__} runs at its training rate only (got rate={rate}); "
                             "evaluate it without --rate")  # fmt: skip
        if self.outputs == "log_probs":
            return self.net.log_probs(inputs, key=key), state
        return self.net(inputs, key=key), state

    @property
    def scores_targets(self) -> bool:
        """Whether the LM loss can ask :meth:`lm_scores` for the targets' log-probabilities (``AdaptiveLM``)."""
        return hasattr(self.net, "scores")

    def lm_scores(
        self, inputs: Array, targets: Array, state: eqx.nn.State, *, key: PRNGKeyArray | None = None
    ) -> tuple[tuple[Array, Array], eqx.nn.State]:
        """``((log p(targets_t), max_w log p(w)), state)`` per position ``(L,)``: the LM loss and accuracy without the
        ``(L, V)`` log-probabilities that :meth:`__call__` returns (``net.scores``)."""
        return self.net.scores(inputs, targets, key=key), state


class PooledClassifier(eqx.Module):
    """S4Torch's ``S4Model`` (TariqAHassan/S4Torch ``s4torch/model.py``): ``Linear(d_input, H)`` (an embedding for
    token inputs) -> :class:`~ssm.nn.PooledBackbone` -> mean over time -> ``Linear(H, d_output)``."""

    encoder: Linear | eqx.nn.Embedding
    backbone: PooledBackbone
    decoder: Linear
    tokens: bool = eqx.field(static=True)

    def __init__(self, cfg: Any, info: Any, *, key: PRNGKeyArray):
        k_enc, k_bb, k_dec = jax.random.split(key, 3)
        self.tokens = info.tokens
        h = cfg.d_model
        self.encoder = eqx.nn.Embedding(info.d_input, h, key=k_enc) if info.tokens else Linear(info.d_input, h, key=k_enc)
        self.backbone = PooledBackbone(
            h, cfg.n_layers, info.seq_len, pool_kernel=cfg.pool_kernel, layer_cls=cfg.layer.cls(),
            layer_kwargs={k: v for k, v in cfg.layer.kwargs(None).items() if k != "l_max"}, dropout=cfg.dropout,
            norm=cfg.norm, norm_strategy=cfg.norm_strategy, key=k_bb,
        )  # fmt: skip
        self.decoder = Linear(h, info.d_output, key=k_dec)

    def __call__(self, inputs: Array, *, key: PRNGKeyArray | None = None) -> Float[Array, " V"]:
        x = self.encoder.weight[inputs] if self.tokens else self.encoder(inputs)
        return self.decoder(jnp.mean(self.backbone(x, key=key), axis=0))
