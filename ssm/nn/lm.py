"""The WikiText-103 language model of S4 (Gu, Goel, Ré 2022, §4.3), as state-spaces/s4
``configs/experiment/lm/s4-wt103.yaml`` builds it: adaptive input embedding -> ``n_layers`` × [S4, S4, FFN] pre-norm
residual blocks (``configs/model/layer/s4s4ff.yaml``: S4 with ``final_act: glu``, ``n_ssm: 1``; FFN ``expand: 4``,
GELU; dropout 0.25 everywhere, untied across time) -> LayerNorm -> projected adaptive log-softmax
(:mod:`ssm.nn.adaptive`, ``configs/pipeline/wt103.yaml``)."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ssm.layers.s4 import S4
from ssm.nn.adaptive import AdaptiveEmbedding, AdaptiveLogSoftmax
from ssm.nn.ffn import ffn_sublayer
from ssm.nn.mixer import ssm_sublayer
from ssm.nn.norm import LayerNorm
from ssm.nn.residual import ResidualStack, SublayerMaker, residual_stack


class AdaptiveLM(eqx.Module):
    """``AdaptiveLM(n_token, d_model, n_layers, l_max=..., key=...)``; defaults are the published WikiText-103
    model (d_model 1024, 16 × [S4, S4, FFN]). ``pattern`` replaces the [S4, S4, FFN] sub-layer makers;
    ``softmax_chunk`` is the vocabulary block of the target scores (memory ``L × softmax_chunk``).

    ``model(tokens, targets, key=...)`` gives ``log p(targets_t | tokens_≤t)`` ``(L,)`` (``scores`` adds the largest
    log-probability, for accuracy), without ``(L, V)`` arrays; ``log_probs(tokens)`` the whole-vocabulary ``(L, V)``; ``step``/``prefill`` the same one token at a time / over a prefix."""

    embedding: AdaptiveEmbedding
    backbone: ResidualStack
    norm: LayerNorm
    softmax: AdaptiveLogSoftmax

    def __init__(
        self,
        n_token: int,
        d_model: int = 1024,
        n_layers: int = 16,
        *,
        l_max: int = 8192,
        d_state: int = 64,
        pattern: Sequence[SublayerMaker] | None = None,
        cutoffs: Sequence[int] = (19997, 39997, 199997),
        div_val: int = 4,
        dropout: float = 0.25,
        dropemb: float = 0.25,
        dropsoft: float = 0.25,
        tie_weights: bool = True,
        tie_projs: bool | Sequence[bool] = True,
        init_scale: float | None = 0.5,
        bias_scale: float = 1.0,
        prenorm: bool = True,
        softmax_chunk: int = 2048,
        dtype=None,
        key: PRNGKeyArray,
    ):
        k_emb, k_bb, k_soft = jax.random.split(key, 3)
        if pattern is None:
            s4 = ssm_sublayer(S4, final_act="glu", dropout=dropout, dtype=dtype, d_state=d_state, l_max=l_max, n_ssm=1)
            pattern = [s4, s4, ffn_sublayer(4, "gelu", dropout, dtype)]
        self.embedding = AdaptiveEmbedding(
            n_token, d_model, d_model, cutoffs, div_val, init_scale, dropemb, dtype, key=k_emb
        )
        self.backbone = residual_stack(
            d_model, pattern, n_layers, norm="layer", prenorm=prenorm, dropout=dropout, dtype=dtype, key=k_bb
        )
        self.norm = LayerNorm(d_model, dtype=dtype)
        self.softmax = AdaptiveLogSoftmax(
            n_token, d_model, d_model, cutoffs, div_val, tie_weights, tie_projs, bias_scale, dropsoft,
            softmax_chunk, dtype=dtype, key=k_soft,
        )  # fmt: skip

    def features(self, tokens: Int[Array, " L"], *, key: PRNGKeyArray | None = None) -> Float[Array, "L H"]:
        k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
        return self.norm(self.backbone(self.embedding(tokens, key=k1), key=k2))

    def __call__(
        self, tokens: Int[Array, " L"], targets: Int[Array, " L"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " L"]:
        k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
        return self.softmax(self.features(tokens, key=k1), targets, self.embedding, key=k2)

    def scores(
        self, tokens: Int[Array, " L"], targets: Int[Array, " L"], *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " L"], Float[Array, " L"]]:
        """``(log p(targets_t | tokens_≤t), max_w log p(w | tokens_≤t))`` ``(L,)`` each, never forming the ``(L, V)``
        log-probabilities (:meth:`ssm.nn.AdaptiveLogSoftmax.scores`): the training loss and its accuracy."""
        k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
        return self.softmax.scores(self.features(tokens, key=k1), targets, self.embedding, key=k2)

    def log_probs(self, tokens: Int[Array, " L"], *, key: PRNGKeyArray | None = None) -> Float[Array, "L V"]:
        k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
        return self.softmax.log_probs(self.features(tokens, key=k1), self.embedding, key=k2)

    def init_state(self) -> PyTree[Array]:
        return self.backbone.init_state()

    def step(self, token: Int[Array, ""], state: PyTree[Array]) -> tuple[Float[Array, " V"], PyTree[Array]]:
        x = self.embedding(token[None])[0]
        y, state = self.backbone.step(x, state)
        return self.softmax.log_probs(self.norm(y)[None], self.embedding)[0], state

    def prefill(
        self, tokens: Int[Array, " L"], state: PyTree[Array] | None = None
    ) -> tuple[Float[Array, "L V"], PyTree[Array]]:
        y, state = self.backbone.prefill(self.embedding(tokens), state)
        return self.softmax.log_probs(self.norm(y), self.embedding), state
