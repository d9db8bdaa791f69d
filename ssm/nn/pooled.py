"""S4Torch's pooled backbone (TariqAHassan/S4Torch ``s4torch/model.py`` ``S4Model``, ``s4torch/block.py``
``S4Block``; ``train.py --pooling avg_2``): ``n_blocks`` stages, each

    y = drop(pool(norm(x + W drop(GELU(SSM(x))) + b)))        (norm_strategy "post"; "pre" normalises x first)

with ``pool = AvgPool(k)`` while the schedule allows it: S4Torch's ``_seq_length_schedule`` halves (``//k``) the
length per block and pools only where the next length ``max(2, l // k)`` still exceeds ``k``. Each SSM layer is
built for the length it actually sees (S4Torch passes the schedule's ``l``, which keeps shrinking after pooling
stops; the layers here receive the true length so that ``ssm.S4`` accepts its input).

Pooling windows make the stage non-causal as a whole (a classification backbone, followed by a mean over time), so
this backbone has no recurrent mode.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from ssm.layers.base import AbstractSSMLayer, Rate
from ssm.layers.s4 import S4
from ssm.nn.base import check_unit_rate
from ssm.nn.dropout import dropout as apply_dropout
from ssm.nn.mixer import ssm_sublayer
from ssm.nn.pooling import AvgPool
from ssm.nn.residual import Residual


def s4torch_schedule(n_blocks: int, l_max: int, kernel: int | None) -> list[tuple[int, bool]]:
    """S4Torch's ``_seq_length_schedule``: ``(l, pool_ok)`` per block, and the output length last."""
    k = 1 if kernel is None else kernel
    out = []
    for _ in range(n_blocks + 1):
        nxt = max(2, l_max // k)
        out.append((l_max, nxt > k))
        l_max = nxt
    return out


class PooledBackbone(eqx.Module):
    blocks: tuple[Residual, ...]
    pools: tuple[AvgPool | None, ...]
    dropout: float = eqx.field(static=True)

    def __init__(
        self,
        d_model: int,
        n_blocks: int,
        l_max: int,
        *,
        pool_kernel: int | None = 2,
        layer_cls: type[AbstractSSMLayer] = S4,
        layer_kwargs: dict[str, Any] | None = None,
        dropout: float = 0.0,
        norm: str = "layer",
        norm_strategy: str = "post",
        dtype=None,
        key: PRNGKeyArray,
    ):
        if norm_strategy not in ("pre", "post"):
            raise ValueError(f"norm_strategy must be 'pre' or 'post', got {norm_strategy!r}.")
        layer_kwargs = {} if layer_kwargs is None else dict(layer_kwargs)
        schedule = s4torch_schedule(n_blocks, l_max, pool_kernel)[:n_blocks]
        keys = jax.random.split(key, max(n_blocks, 1))
        blocks, pools, length = [], [], l_max
        for (_, pool_ok), k in zip(schedule, keys):
            kw = dict(layer_kwargs)
            if layer_cls is S4 or "l_max" in layer_kwargs:
                kw["l_max"] = length
            make = ssm_sublayer(layer_cls, activation="gelu", final_act="id", dropout=dropout, dtype=dtype, **kw)
            blocks.append(Residual(make(d_model, key=k), d_model, norm, prenorm=norm_strategy == "pre", dtype=dtype))
            use_pool = pool_kernel is not None and pool_ok
            pools.append(AvgPool(d_model, pool_kernel) if use_pool else None)
            length = length // pool_kernel if use_pool else length
        self.blocks, self.pools, self.dropout = tuple(blocks), tuple(pools), dropout

    def __call__(
        self, x: Float[Array, "L H"], *, key: PRNGKeyArray | None = None, rate: Rate = 1.0
    ) -> Float[Array, "Lout H"]:
        """``rate`` must be 1 when the backbone pools (:func:`ssm.nn.base.check_unit_rate`)."""
        if any(p is not None for p in self.pools):
            check_unit_rate("PooledBackbone", rate)
        keys = [None] * len(self.blocks) if key is None else list(jax.random.split(key, max(len(self.blocks), 1)))
        for block, pool, k in zip(self.blocks, self.pools, keys):
            k1, k2 = (None, None) if k is None else tuple(jax.random.split(k))
            x = block(x, key=k1, rate=rate)
            if pool is not None:
                x = pool(x)
            x = apply_dropout(x, self.dropout, k2)
        return x
