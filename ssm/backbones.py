"""The models of :mod:`ssm.nn` behind the training loop's model interface.

The trainer calls every model as ``model(inputs, state, *, key, lengths, rate) -> (outputs, state)`` (the
:class:`~ssm.model.SequenceModel` signature, with an ``eqx.nn.State`` for BatchNorm). The backbones of
:mod:`ssm.nn` (``SaShiMiModel``, ``AdaptiveLM``, the pooled S4Torch classifier) keep no such state and take one
example; :class:`Backbone` wraps one of them so that the training, evaluation and checkpoint code is the same for
all. The wrapped model stays reachable as ``model.net``; :class:`Backbone` also presents its recurrent mode with the
residual model's signatures (``init_state(*, rate)``, ``prefill(inputs, model_state, cache, *, rate)``,
``step(token, model_state, cache, *, rate)``), so that :mod:`ssm.generate` has one code path for every backbone.

``rate`` (Δ' = rate·Δ, evaluation at another sampling rate) is passed to the wrapped model: the pooled classifier
without pooling passes it to its SSM layers, the models with pooling layers (SaShiMi, the pooled classifier) refuse
``rate != 1`` (:func:`ssm.nn.base.check_unit_rate`), and so does ``AdaptiveLM``: text tokens have no sampling rate.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ssm.nn import PooledBackbone
from ssm.nn.linear import Linear
from ssm.precision import mixed, widen


class Backbone(eqx.Module):
    """``Backbone(net, outputs)``: ``net(inputs, key=...)`` gives the outputs the trainer's loss reads: logits
    ``(L, V)`` (``outputs="logits"``: ``SaShiMiModel``, classifiers) or, for ``AdaptiveLM``
    (``outputs="log_probs"``), the whole-vocabulary log-probabilities ``(L, V)`` (a log-softmax of them is
    themselves, so the trainer's cross-entropy is the adaptive softmax's)."""

    net: eqx.Module
    outputs: str = eqx.field(static=True)
    # "float32" or "mixed" (resolved, ssm.precision.resolve_precision): under "mixed" the net runs as
    # ssm.precision.mixed(net), float inputs enter in bfloat16 and the outputs come back in at least float32.
    precision: str = eqx.field(static=True, default="float32")

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
        net, inputs = self._compute(), self._input(inputs)
        if self.outputs == "log_probs":
            self._no_rate(rate)
            return widen(net.log_probs(inputs, key=key)), state
        return widen(net(inputs, key=key, rate=rate)), state

    def init_state(self, *, rate: float = 1.0) -> PyTree[Array]:
        """The wrapped model's recurrent state before the first token."""
        return self._compute().init_state(**self._rate_kw(rate))

    def prefill(
        self, inputs: Int[Array, " L"], model_state: eqx.nn.State, cache: PyTree[Array] | None = None, *,
        rate: float = 1.0,
    ) -> tuple[Float[Array, "L V"], PyTree[Array]]:
        """The wrapped model's ``prefill`` (``model_state`` unused: these models keep no BatchNorm state)."""
        scores, cache = self._compute().prefill(inputs, cache, **self._rate_kw(rate))
        return widen(scores), cache

    def step(
        self, token: Int[Array, ""], model_state: eqx.nn.State, cache: PyTree[Array], *, rate: float = 1.0
    ) -> tuple[Float[Array, " V"], PyTree[Array]]:
        """The wrapped model's ``step`` (``model_state`` unused)."""
        scores, cache = self._compute().step(token, cache, **self._rate_kw(rate))
        return widen(scores), cache

    def _compute(self) -> eqx.Module:
        """The net as it computes: itself, or under mixed precision :func:`ssm.precision.mixed` of it."""
        return mixed(self.net) if self.precision == "mixed" else self.net

    def _input(self, inputs: Array) -> Array:
        if self.precision == "mixed" and jnp.issubdtype(inputs.dtype, jnp.floating):
            return inputs.astype(jnp.bfloat16)
        return inputs

    def _rate_kw(self, rate: float) -> dict[str, float]:
        if self.outputs == "log_probs":
            self._no_rate(rate)
            return {}
        return {"rate": rate}

    def _no_rate(self, rate: float) -> None:
        if not (isinstance(rate, (int, float)) and rate == 1.0):
            raise ValueError(f"{type(self.net).__name__} models text tokens, which have no sampling rate (got "
                             f"rate={rate}): evaluate or generate it without --rate")  # fmt: skip

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

    def __call__(self, inputs: Array, *, key: PRNGKeyArray | None = None, rate: float = 1.0) -> Float[Array, " V"]:
        x = self.encoder.weight[inputs] if self.tokens else self.encoder(inputs)
        return self.decoder(jnp.mean(self.backbone(x, key=key, rate=rate), axis=0))
