"""Pooling between the stages of a backbone, with streaming steps.

``AvgPool``: S4Torch's ``--pooling avg_k`` (TariqAHassan/S4Torch ``train.py`` ``_parse_pooling`` ->
``s4torch/aux/layers.py`` ``TemporalAvgPooling(k)`` = ``nn.AvgPool1d(k)`` over time): the mean of each
non-overlapping window of ``k`` steps, a trailing incomplete window dropped (``L -> ⌊L/k⌋``). Not causal as a
whole-sequence map, but its step emits each window's mean once the window is complete.

``DownPool`` / ``UpPool``: SaShiMi's pooling, state-spaces/s4 ``src/models/sequence/modules/pool.py`` (the classes the
configured ``Sashimi`` backbone uses; ``weight_norm=True`` there)::

    DownPool:  (L, H) -> (L/p, p·H) -> Linear(p·H, e·H)            feature index h·p + s of window step s
    UpPool:    (L/p, H') -> Linear(H', p·H'/e) -> shift one coarse step right (zeros first) -> (L, H'/e)

The shift makes ``UpPool ∘ (causal inner) ∘ DownPool`` causal: the output at fine step ``t`` in window ``j``
depends only on windows ``< j``.

Streaming (as the official ``step`` methods, with fixed-shape state so it runs under ``jit``/``scan``): the state is
``{"buf": (p, H), "count": int}``. ``DownPool.step`` writes ``x_t`` into the buffer and returns the pooled window,
which is meaningful when ``ready(state)`` (the ``p``-th input of a window just arrived). ``UpPool.step(z, state)``
returns the buffered output ``buf[count]`` and, on the last step of a window, refills the buffer with the ``p``
outputs of the coarse input ``z`` (read only then) for the next window.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ssm.nn.linear import Linear, WeightNormLinear, make_linear

PoolState = dict[str, Array]


def _init_buffer(stride: int, d: int, dtype) -> PoolState:
    return {"buf": jnp.zeros((stride, d), dtype), "count": jnp.zeros((), jnp.int32)}


def _push(x_t: Float[Array, " H"], state: PoolState, stride: int) -> PoolState:
    c = state["count"]
    return {"buf": state["buf"].at[c].set(x_t), "count": (c + 1) % stride}


def ready(state: PoolState) -> Bool[Array, ""]:
    """After a down-pooling ``step``: did that step complete a window?"""
    return state["count"] == 0


class AvgPool(eqx.Module):
    d_model: int = eqx.field(static=True)
    stride: int = eqx.field(static=True)

    def __init__(self, d_model: int, stride: int = 2):
        if stride < 1:
            raise ValueError(f"AvgPool stride must be >= 1, got {stride}.")
        self.d_model, self.stride = d_model, stride

    def __call__(self, x: Float[Array, "L H"]) -> Float[Array, "Lc H"]:
        n = x.shape[0] // self.stride
        return jnp.mean(x[: n * self.stride].reshape(n, self.stride, -1), axis=1)

    def init_state(self) -> PoolState:
        return _init_buffer(self.stride, self.d_model, jnp.zeros(()).dtype)

    def step(self, x_t: Float[Array, " H"], state: PoolState) -> tuple[Float[Array, " H"], PoolState]:
        state = _push(x_t, state, self.stride)
        return jnp.mean(state["buf"], axis=0), state


class DownPool(eqx.Module):
    linear: Linear | WeightNormLinear
    d_input: int = eqx.field(static=True)
    d_output: int = eqx.field(static=True)
    stride: int = eqx.field(static=True)

    def __init__(self, d_input: int, expand: int, stride: int, weight_norm: bool = True, dtype=None, *,
                 key: PRNGKeyArray):  # fmt: skip
        self.d_input, self.d_output, self.stride = d_input, d_input * expand, stride
        self.linear = make_linear(d_input * stride, self.d_output, weight_norm=weight_norm, dtype=dtype, key=key)

    def _window(self, w: Float[Array, "*B p H"]) -> Float[Array, "*B O"]:
        # '(h s)' flattening: feature h·p + s, as the official rearrange '... (l s) h -> ... l (h s)'.
        return self.linear(jnp.swapaxes(w, -1, -2).reshape(*w.shape[:-2], -1))

    def __call__(self, x: Float[Array, "L H"]) -> Float[Array, "Lc O"]:
        L = x.shape[0]
        if L % self.stride:
            raise ValueError(f"DownPool: the length {L} must be a multiple of the pooling stride {self.stride}.")
        return self._window(x.reshape(L // self.stride, self.stride, -1))

    def init_state(self) -> PoolState:
        return _init_buffer(self.stride, self.d_input, self.linear.bias.dtype)

    def step(self, x_t: Float[Array, " H"], state: PoolState) -> tuple[Float[Array, " O"], PoolState]:
        state = _push(x_t, state, self.stride)
        return self._window(state["buf"]), state


class UpPool(eqx.Module):
    linear: Linear | WeightNormLinear
    d_input: int = eqx.field(static=True)
    d_output: int = eqx.field(static=True)
    stride: int = eqx.field(static=True)

    def __init__(self, d_input: int, expand: int, stride: int, weight_norm: bool = True, dtype=None, *,
                 key: PRNGKeyArray):  # fmt: skip
        if d_input % expand:
            raise ValueError(f"UpPool: d_input={d_input} must be a multiple of expand={expand}.")
        self.d_input, self.d_output, self.stride = d_input, d_input // expand, stride
        self.linear = make_linear(d_input, self.d_output * stride, weight_norm=weight_norm, dtype=dtype, key=key)

    def unpool(self, z: Float[Array, "*B I"]) -> Float[Array, "*B p O"]:
        """The ``p`` fine outputs ``(p, H)`` of coarse inputs (before the shift); '(h s)' as the official code."""
        y = self.linear(z).reshape(*z.shape[:-1], self.d_output, self.stride)
        return jnp.swapaxes(y, -1, -2)

    def __call__(self, z: Float[Array, "Lc I"]) -> Float[Array, "L O"]:
        y = self.unpool(z)  # (Lc, p, H)
        y = jnp.concatenate([jnp.zeros_like(y[:1]), y[:-1]])  # causal shift by one coarse step
        return y.reshape(-1, self.d_output)

    def init_state(self) -> PoolState:
        return _init_buffer(self.stride, self.d_output, self.linear.bias.dtype)

    def step(self, z: Float[Array, " I"], state: PoolState) -> tuple[Float[Array, " O"], PoolState]:
        c = state["count"]
        y = state["buf"][c]
        last = c == self.stride - 1
        buf = jnp.where(last, self.unpool(z), state["buf"])
        return y, {"buf": buf, "count": (c + 1) % self.stride}

