"""Residual blocks and stacks of them, as state-spaces/s4 ``src/models/sequence/backbones/block.py``
``SequenceResidualBlock`` (residual ``'R'``, no pooling) and ``backbones/model.py`` ``SequenceModel`` build them::

    pre-norm:   x + drop(F(norm(x)))
    post-norm:  norm(x + drop(F(x)))

for a sub-layer ``F`` (an :class:`~ssm.nn.mixer.SSMMixer`, an :class:`~ssm.nn.ffn.FFN`, ...). A list of sub-layer
makers repeated ``n`` times gives one residual block per sub-layer, so the WikiText-103 model's "[S4, S4, FFN] × 16"
is ``residual_stack(d, [s4, s4, ffn], 16, ...)`` = 48 residual blocks, exactly as the official ``layer * n_layers``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ssm.layers.base import Rate
from ssm.nn.base import AbstractBlock
from ssm.nn.dropout import dropout as apply_dropout
from ssm.nn.norm import Identity, LayerNorm, ScalarLayerNorm, make_norm

# ``make(d_model, *, key) -> AbstractBlock``: one sub-layer of a residual block.
SublayerMaker = Callable[..., AbstractBlock]


class Residual(AbstractBlock):
    sublayer: AbstractBlock
    norm: LayerNorm | ScalarLayerNorm | Identity
    prenorm: bool = eqx.field(static=True)
    dropout: float = eqx.field(static=True)

    def __init__(self, sublayer: AbstractBlock, d_model: int, norm: str = "layer", prenorm: bool = True,
                 dropout: float = 0.0, dtype=None):  # fmt: skip
        self.sublayer = sublayer
        self.norm = make_norm(norm, d_model, dtype)
        self.prenorm, self.dropout = prenorm, dropout

    def __call__(
        self, x: Float[Array, "L H"], *, key: PRNGKeyArray | None = None, rate: Rate = 1.0
    ) -> Float[Array, "L H"]:
        k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
        z = self.sublayer(self.norm(x) if self.prenorm else x, key=k1, rate=rate)
        y = x + apply_dropout(z, self.dropout, k2)
        return y if self.prenorm else self.norm(y)

    def init_state(self, *, rate: Rate = 1.0) -> PyTree[Array]:
        return self.sublayer.init_state(rate=rate)

    def step(
        self, x_t: Float[Array, " H"], state: PyTree[Array], *, rate: Rate = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        z, state = self.sublayer.step(self.norm(x_t) if self.prenorm else x_t, state, rate=rate)
        y = x_t + z
        return (y if self.prenorm else self.norm(y)), state

    def prefill(
        self, x: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: Rate = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        z, state = self.sublayer.prefill(self.norm(x) if self.prenorm else x, state, rate=rate)
        y = x + z
        return (y if self.prenorm else self.norm(y)), state


class ResidualStack(AbstractBlock):
    """Residual blocks applied in order; the state is the tuple of the blocks' states."""

    blocks: tuple[Residual, ...]

    def __init__(self, blocks: Sequence[Residual]):
        self.blocks = tuple(blocks)

    def __call__(
        self, x: Float[Array, "L H"], *, key: PRNGKeyArray | None = None, rate: Rate = 1.0
    ) -> Float[Array, "L H"]:
        keys = [None] * len(self.blocks) if key is None else list(jax.random.split(key, max(len(self.blocks), 1)))
        for block, k in zip(self.blocks, keys):
            x = block(x, key=k, rate=rate)
        return x

    def init_state(self, *, rate: Rate = 1.0) -> PyTree[Array]:
        return tuple(b.init_state(rate=rate) for b in self.blocks)

    def step(
        self, x_t: Float[Array, " H"], state: PyTree[Array], *, rate: Rate = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        new = []
        for block, s in zip(self.blocks, state):
            x_t, s = block.step(x_t, s, rate=rate)
            new.append(s)
        return x_t, tuple(new)

    def prefill(
        self, x: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: Rate = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        state = (None,) * len(self.blocks) if state is None else state
        new = []
        for block, s in zip(self.blocks, state):
            x, s = block.prefill(x, s, rate=rate)
            new.append(s)
        return x, tuple(new)


def residual_stack(
    d_model: int,
    pattern: Sequence[SublayerMaker],
    n_repeat: int,
    *,
    norm: str = "layer",
    prenorm: bool = True,
    dropout: float = 0.0,
    dtype=None,
    key: PRNGKeyArray,
) -> ResidualStack:
    """``pattern × n_repeat`` residual blocks at width ``d_model``; ``pattern`` holds sub-layer makers
    ``make(d_model, *, key)`` (see :func:`ssm.nn.ssm_sublayer`, :func:`ssm.nn.ffn_sublayer`)."""
    makers = list(pattern) * n_repeat
    keys = jax.random.split(key, max(len(makers), 1))
    return ResidualStack(
        [Residual(make(d_model, key=k), d_model, norm, prenorm, dropout, dtype) for make, k in zip(makers, keys)]
    )
