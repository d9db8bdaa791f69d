"""The interface every SSM layer implements, and the SSM-parameter mask used by the optimizer.

A layer acts on ONE example: ``u: Float[Array, "L H"] -> Float[Array, "L H"]``; batch with
``jax.vmap``. Complex parameters are stored as real pairs (``*_re``/``*_im`` fields, or a trailing
axis of size 2) so that Optax sees only real leaves.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
from jaxtyping import Array, Float, PyTree


class AbstractSSMLayer(eqx.Module):
    """An S4-family sequence layer mapping ``(L, H) -> (L, H)``.

    Subclasses are final Equinox modules. Hyperparameters are static fields. They list in
    ``ssm_param_names`` the names of the fields holding SSM parameters (Δ, A/Λ, B, P, Markov
    parameters, ...): those receive their own learning rate and zero weight decay. ``dt_param_names``
    (a subset) names the step-size fields (log Δ), which can get a third learning rate.
    """

    ssm_param_names: ClassVar[tuple[str, ...]] = ()
    dt_param_names: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def __call__(
        self, u: Float[Array, "L H"], *, rate: float = 1.0
    ) -> Float[Array, "L H"]:
        """Whole-sequence (convolution or scan) mode. ``rate`` rescales Δ (Δ' = rate·Δ)."""

    @abc.abstractmethod
    def init_state(self) -> PyTree[Array]:
        """The zero recurrent state."""

    @abc.abstractmethod
    def step(
        self, u_t: Float[Array, " H"], state: PyTree[Array], *, rate: float = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        """One recurrent step: returns ``(y_t, new_state)``, exact to ``__call__``."""

    @abc.abstractmethod
    def prefill(
        self, u: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: float = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        """Outputs over a whole prefix and the state after it, in one parallel call.

        Starting from ``state`` (zero state if None), equal to running ``step`` L times.
        """


def ssm_param_mask(model: PyTree[Any], *, dt_only: bool = False) -> PyTree[bool]:
    """A pytree of bools with the structure of ``model``: True on the leaves of the fields named in
    ``ssm_param_names`` (``dt_param_names`` if ``dt_only``) of every :class:`AbstractSSMLayer` inside
    ``model``, False elsewhere.

    Used to build Optax parameter groups (``optax.multi_transform`` labels)."""

    def is_layer(node: Any) -> bool:
        return isinstance(node, AbstractSSMLayer)

    def layer_mask(layer: AbstractSSMLayer) -> PyTree[bool]:
        fields = type(layer).dt_param_names if dt_only else type(layer).ssm_param_names
        names = [n for n in fields if getattr(layer, n) is not None]
        mask = jax.tree_util.tree_map(lambda _: False, layer)
        return eqx.tree_at(
            lambda m: [getattr(m, n) for n in names],
            mask,
            [jax.tree_util.tree_map(lambda _: True, getattr(layer, n)) for n in names],
        )

    return jax.tree_util.tree_map(
        lambda node: layer_mask(node) if is_layer(node) else False, model, is_leaf=is_layer
    )
