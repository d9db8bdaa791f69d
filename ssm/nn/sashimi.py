"""SaShiMi (Goel, Gu, Donahue, Ré 2022, "It's Raw! Audio Generation with State-Space Models"): a causal U-Net of
S4 residual stacks, as the configured backbone state-spaces/s4 ``src/models/sequence/backbones/sashimi.py``
(``configs/model/sashimi.yaml``, ``configs/experiment/audio/sashimi-sc09.yaml``) builds it.

With ``pool = [p₁, …, p_k]`` and widths ``H₀ = d_model``, ``H_{i+1} = expand·H_i``::

    down:    x₀ = x,  x_{i+1} = DownPool_i(x_i)                      (L/p₁…p_{i+1}, H_{i+1})
    centre:  y = C(x_k) + x_k                                         C = n_layers × [S4, FFN] residual blocks
    up:      for i = k-1 … 0:  u = UpPool_i(y) + x_i;  y = U_i(u) + u  U_i = n_layers × [S4, FFN] at width H_i
    out:     LayerNorm(y)

The down path has no residual blocks (``unet=False`` of the official code); each residual block is pre-norm with
the configured norm (``ScalarLayerNorm``: ``transposed: True`` makes the official ``Normalization`` a
``TransposedLN(scalar=True)``), each S4 sub-layer is ``S4Block`` (S4 -> GELU -> Linear(H, 2H) -> GLU) and each FFN
has expansion ``ff`` and GELU. ``DownPool``/``UpPool`` use weight normalisation as there. ``norm="layer"``,
``weight_norm=False`` give the standalone variant of state-spaces/s4 ``models/sashimi/sashimi.py`` instead.

``rate`` must be 1 (:func:`ssm.nn.base.check_unit_rate`: the pooling layers have no step size to rescale); it is
passed down to every SSM layer all the same, so that the recurrent and convolutional modes share one signature.

Streaming: the state of level ``i`` holds the pooling buffers, a window counter, the up-stack state and the state of
level ``i+1``, which is stepped only when the down-pool completes a window (``lax.cond``), once every
``p₁…p_{i+1}`` fine steps, exactly as the official ``step`` skips the inner levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ssm.layers.base import AbstractSSMLayer, Rate
from ssm.layers.s4 import S4
from ssm.nn.base import AbstractBlock, check_unit_rate
from ssm.nn.ffn import ffn_sublayer
from ssm.nn.linear import Linear
from ssm.nn.mixer import ssm_sublayer
from ssm.nn.norm import LayerNorm
from ssm.nn.pooling import DownPool, UpPool, ready
from ssm.nn.residual import ResidualStack, residual_stack


class SaShiMi(AbstractBlock):
    """The SaShiMi backbone ``(L, d_model) -> (L, d_model)``; ``L`` must be a multiple of ``prod(pool)``.

    ``layer_cls(d, key=..., **layer_kwargs)`` builds every SSM layer (default ``ssm.S4`` with ``d_state=64``,
    ``n_ssm=1``); with ``l_max`` given, the layers of level ``i`` get ``l_max // (p₁…p_i)`` (the official config
    sets ``l_max: null`` so that each level's kernel fits its own length).
    """

    down: tuple[DownPool, ...]
    center: ResidualStack
    up: tuple[UpPool, ...]
    up_stacks: tuple[ResidualStack, ...]
    norm: LayerNorm
    d_model: int = eqx.field(static=True)
    pool: tuple[int, ...] = eqx.field(static=True)
    expand: int = eqx.field(static=True)

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 8,
        pool: Sequence[int] = (4, 4),
        expand: int = 2,
        ff: int = 2,
        *,
        l_max: int | None = None,
        layer_cls: type[AbstractSSMLayer] = S4,
        layer_kwargs: dict[str, Any] | None = None,
        dropout: float = 0.0,
        dropres: float = 0.0,
        norm: str = "scalar",
        prenorm: bool = True,
        weight_norm: bool = True,
        dtype=None,
        key: PRNGKeyArray,
    ):
        layer_kwargs = {"d_state": 64, "n_ssm": 1} if layer_kwargs is None else dict(layer_kwargs)
        pool = tuple(int(p) for p in pool)
        if l_max is not None and l_max % math.prod(pool):
            raise ValueError(f"SaShiMi: l_max={l_max} must be a multiple of prod(pool)={math.prod(pool)}.")
        self.d_model, self.pool, self.expand = d_model, pool, expand
        k_down, k_center, k_up, k_stacks = jax.random.split(key, 4)

        def stack(h: int, level: int, k: PRNGKeyArray) -> ResidualStack:
            kw = dict(layer_kwargs)
            if l_max is not None:
                kw["l_max"] = l_max // math.prod(pool[:level])
            pattern = [ssm_sublayer(layer_cls, activation="gelu", final_act="glu", dropout=dropout, dtype=dtype, **kw)]
            if ff > 0:
                pattern.append(ffn_sublayer(ff, "gelu", dropout, dtype))
            return residual_stack(h, pattern, n_layers, norm=norm, prenorm=prenorm, dropout=dropres, dtype=dtype, key=k)

        widths = [d_model * expand**i for i in range(len(pool) + 1)]
        kd = jax.random.split(k_down, max(len(pool), 1))
        ku = jax.random.split(k_up, max(len(pool), 1))
        ks = jax.random.split(k_stacks, max(len(pool), 1))
        self.down = tuple(DownPool(widths[i], expand, p, weight_norm, dtype, key=kd[i]) for i, p in enumerate(pool))
        self.center = stack(widths[-1], len(pool), k_center)
        self.up = tuple(UpPool(widths[i + 1], expand, p, weight_norm, dtype, key=ku[i]) for i, p in enumerate(pool))
        self.up_stacks = tuple(stack(widths[i], i, ks[i]) for i in range(len(pool)))
        self.norm = LayerNorm(d_model, dtype=dtype)

    # Whole-sequence mode --------------------------------------------------------------------------------------

    def __call__(
        self, x: Float[Array, "L H"], *, key: PRNGKeyArray | None = None, rate: Rate = 1.0
    ) -> Float[Array, "L H"]:
        check_unit_rate("SaShiMi", rate)
        total = math.prod(self.pool)
        if x.shape[0] % total:
            raise ValueError(
                f"SaShiMi: the sequence length {x.shape[0]} must be a multiple of prod(pool)={total} "
                f"(pool={list(self.pool)}); pad or crop the input."
            )
        n = len(self.pool)
        keys = [None] * (n + 1) if key is None else list(jax.random.split(key, n + 1))
        skips = [x]
        for down in self.down:
            x = down(x)
            skips.append(x)
        x = self.center(x, key=keys[n], rate=rate) + skips.pop()
        for i in reversed(range(n)):
            x = self.up[i](x) + skips.pop()
            x = self.up_stacks[i](x, key=keys[i], rate=rate) + x
        return self.norm(x)

    # Recurrent mode -------------------------------------------------------------------------------------------

    def _init_level(self, i: int, rate: Rate) -> PyTree[Array]:
        if i == len(self.pool):
            return self.center.init_state(rate=rate)
        return {
            "down": self.down[i].init_state(),
            "up": self.up[i].init_state(),
            "stack": self.up_stacks[i].init_state(rate=rate),
            "inner": self._init_level(i + 1, rate),
        }

    def init_state(self, *, rate: Rate = 1.0) -> PyTree[Array]:
        check_unit_rate("SaShiMi", rate)
        return self._init_level(0, rate)

    def _step_level(
        self, i: int, x: Float[Array, " D"], s: PyTree[Array], rate: Rate
    ) -> tuple[Float[Array, " D"], PyTree[Array]]:
        if i == len(self.pool):
            y, s = self.center.step(x, s, rate=rate)
            return y + x, s
        z, down_state = self.down[i].step(x, s["down"])

        def run_inner(operand):
            z, inner = operand
            return self._step_level(i + 1, z, inner, rate)

        def hold(operand):
            z, inner = operand
            return jnp.zeros_like(z), inner

        # The inner levels advance once per completed window; UpPool reads z only on that same step.
        z, inner = jax.lax.cond(ready(down_state), run_inner, hold, (z, s["inner"]))
        u, up_state = self.up[i].step(z, s["up"])
        u = u + x
        y, stack_state = self.up_stacks[i].step(u, s["stack"], rate=rate)
        return y + u, {"down": down_state, "up": up_state, "stack": stack_state, "inner": inner}

    def step(
        self, x_t: Float[Array, " H"], state: PyTree[Array], *, rate: Rate = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        check_unit_rate("SaShiMi", rate)
        y, state = self._step_level(0, x_t, state, rate)
        return self.norm(y), state

    def _prefill_level(
        self, i: int, x: Float[Array, "L D"], rate: Rate
    ) -> tuple[Float[Array, "L D"], PyTree[Array]]:
        """Parallel prefill from the zero state, any length."""
        if i == len(self.pool):
            y, s = self.center.prefill(x, rate=rate)
            return y + x, s
        p, L = self.pool[i], x.shape[0]
        n_win, r = divmod(L, p)
        down, up = self.down[i], self.up[i]
        count = jnp.asarray(r, jnp.int32)
        if n_win > 0:
            z, inner = self._prefill_level(i + 1, down(x[: n_win * p]), rate)
            windows = up.unpool(z)  # (n_win, p, H): the outputs of windows 1 … n_win
            u = jnp.concatenate([jnp.zeros_like(windows[:1]), windows]).reshape(-1, x.shape[1])[:L]
            up_buf = windows[-1]
        else:
            inner = self._init_level(i + 1, rate)
            u = jnp.zeros_like(x)
            up_buf = up.init_state()["buf"]
        # Entries of the down buffer past `count` are never read before being overwritten.
        down_buf = down.init_state()["buf"].at[:r].set(x[n_win * p :])
        up_state = {"buf": up_buf, "count": count}
        down_state = {"buf": down_buf, "count": count}
        u = u + x
        y, stack_state = self.up_stacks[i].prefill(u, rate=rate)
        return y + u, {"down": down_state, "up": up_state, "stack": stack_state, "inner": inner}

    def prefill(
        self, x: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: Rate = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        """From the zero state (``state=None``): one parallel pass per level (each SSM's own ``prefill``); from a
        given state, a scan of :meth:`step`."""
        check_unit_rate("SaShiMi", rate)
        if state is None:
            y, state = self._prefill_level(0, x, rate)
            return self.norm(y), state

        def body(s, x_t):
            y, s = self.step(x_t, s, rate=rate)
            return s, y

        state, y = jax.lax.scan(body, state, x)
        return y, state


class SaShiMiModel(eqx.Module):
    """Autoregressive audio model of the SC09 experiment: ``Embedding(n_classes, d_model)`` (encoder
    ``embedding``) -> :class:`SaShiMi` -> ``Linear(d_model, n_classes)`` (decoder ``sequence``), on quantised
    (e.g. 8-bit mu-law) samples. Returns next-sample logits at every position."""

    embedding: eqx.nn.Embedding
    backbone: SaShiMi
    decoder: Linear
    n_classes: int = eqx.field(static=True)

    def __init__(self, n_classes: int = 256, d_model: int = 64, dtype=None, *, key: PRNGKeyArray, **backbone_kwargs):
        k_emb, k_bb, k_dec = jax.random.split(key, 3)
        self.embedding = eqx.nn.Embedding(n_classes, d_model, dtype=dtype, key=k_emb)
        self.backbone = SaShiMi(d_model, dtype=dtype, key=k_bb, **backbone_kwargs)
        self.decoder = Linear(d_model, n_classes, dtype, key=k_dec)
        self.n_classes = n_classes

    def __call__(
        self, tokens: Int[Array, " L"], *, key: PRNGKeyArray | None = None, rate: Rate = 1.0
    ) -> Float[Array, "L V"]:
        return self.decoder(self.backbone(self.embedding.weight[tokens], key=key, rate=rate))

    def init_state(self, *, rate: Rate = 1.0) -> PyTree[Array]:
        return self.backbone.init_state(rate=rate)

    def step(
        self, token: Int[Array, ""], state: PyTree[Array], *, rate: Rate = 1.0
    ) -> tuple[Float[Array, " V"], PyTree[Array]]:
        y, state = self.backbone.step(self.embedding.weight[token], state, rate=rate)
        return self.decoder(y), state

    def prefill(
        self, tokens: Int[Array, " L"], state: PyTree[Array] | None = None, *, rate: Rate = 1.0
    ) -> tuple[Float[Array, "L V"], PyTree[Array]]:
        y, state = self.backbone.prefill(self.embedding.weight[tokens], state, rate=rate)
        return self.decoder(y), state
