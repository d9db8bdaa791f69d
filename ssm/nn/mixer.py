"""An SSM layer as a sub-layer of a residual block: state-spaces/s4 ``src/models/sequence/modules/s4block.py``
``S4Block`` with its default options (no gate, no bottleneck)::

    Mixer(x) = out(drop(act(SSM(x)))),    out = Linear(H, 2H) then GLU   (``final_act: glu``)
                                                 Linear(H, H)             (``final_act: id``)
                                                 nothing                  (``final_act: null``)

The SSM layer is any :class:`ssm.AbstractSSMLayer` built by the caller (its own constructor, options, ``l_max``).
Under mixed precision (:mod:`ssm.precision`) the layer runs in at least float32 on the bfloat16 stream and hands its
output back in the stream's dtype, as the residual model's blocks do.
"""

from __future__ import annotations

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ssm.layers.base import AbstractSSMLayer, Rate
from ssm.nn.activations import activation as get_activation
from ssm.nn.base import AbstractBlock
from ssm.nn.dropout import dropout as apply_dropout
from ssm.nn.linear import Linear
from ssm.precision import widen


class SSMMixer(AbstractBlock):
    layer: AbstractSSMLayer
    out: Linear | None
    activation: str = eqx.field(static=True)
    final_act: str | None = eqx.field(static=True)
    dropout: float = eqx.field(static=True)

    def __init__(
        self,
        layer: AbstractSSMLayer,
        activation: str = "gelu",
        final_act: str | None = "glu",
        dropout: float = 0.0,
        dtype=None,
        *,
        key: PRNGKeyArray,
    ):
        get_activation(activation)
        h = layer.d_model
        if final_act == "glu":
            self.out = Linear(h, 2 * h, dtype, key=key)
        elif final_act == "id":
            self.out = Linear(h, h, dtype, key=key)
        elif final_act is None:
            self.out = None
        else:
            raise ValueError(f"final_act must be 'glu', 'id' or None, got {final_act!r}.")
        self.layer, self.activation, self.final_act, self.dropout = layer, activation, final_act, dropout

    def _head(self, z: Float[Array, "*L H"], key: PRNGKeyArray | None) -> Float[Array, "*L H"]:
        z = apply_dropout(get_activation(self.activation)(z), self.dropout, key)
        if self.out is None:
            return z
        z = self.out(z)
        return jax.nn.glu(z, axis=-1) if self.final_act == "glu" else z

    def __call__(
        self, x: Float[Array, "L H"], *, key: PRNGKeyArray | None = None, rate: Rate = 1.0
    ) -> Float[Array, "L H"]:
        return self._head(self.layer(widen(x), rate=rate).astype(x.dtype), key)

    def init_state(self, *, rate: Rate = 1.0) -> PyTree[Array]:
        return self.layer.init_state(rate=rate)

    def step(
        self, x_t: Float[Array, " H"], state: PyTree[Array], *, rate: Rate = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        y, state = self.layer.step(widen(x_t), state, rate=rate)
        return self._head(y.astype(x_t.dtype), None), state

    def prefill(
        self, x: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: Rate = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        y, state = self.layer.prefill(widen(x), state, rate=rate)
        return self._head(y.astype(x.dtype), None), state


def ssm_sublayer(layer_cls: type[AbstractSSMLayer], *, activation: str = "gelu", final_act: str | None = "glu",
                 dropout: float = 0.0, dtype=None, **layer_kwargs):  # fmt: skip
    """A maker ``make(d_model, *, key) -> SSMMixer`` around ``layer_cls(d_model, dtype=dtype, key=..., **layer_kwargs)``,
    for :func:`ssm.nn.residual_stack` patterns (e.g. ``ssm_sublayer(ssm.S4, d_state=64, l_max=8192, n_ssm=1)``);
    ``dtype`` is that of the layer's and the output map's parameters (None: JAX's default float)."""

    def make(d_model: int, *, key: PRNGKeyArray) -> SSMMixer:
        k_layer, k_out = jax.random.split(key)
        layer = layer_cls(d_model, dtype=dtype, key=k_layer, **layer_kwargs)
        return SSMMixer(layer, activation, final_act, dropout, dtype, key=k_out)

    return make
