"""The interface every SSM layer implements, the convolutional base, and the SSM-parameter mask of the optimizer.

A layer acts on ONE example: ``u: Float[Array, "L H"] -> Float[Array, "L H"]``; batch with ``jax.vmap``. Complex
parameters are stored as real pairs (``*_re``/``*_im`` fields, or a trailing axis of size 2) so that Optax sees only
real leaves. Layers are final Equinox modules; the abstract classes here hold the shared code (Equinox's
abstract/final pattern: no concrete method is overridden).
"""

from __future__ import annotations

import abc
from typing import Any, Union

import equinox as eqx
import jax
from jaxtyping import Array, Complex, Float, PyTree

from ssm import kernels


# S4 needs a Python number (it sets a static kernel length); the other layers also accept a traced scalar.
Rate = Union[float, Float[Array, ""]]


class AbstractSSMLayer(eqx.Module):
    """An S4-family sequence layer mapping ``(L, H) -> (L, H)``.

    A concrete layer must define the class variables ``ssm_param_names``, the fields holding SSM parameters (Δ, A/Λ,
    B, P, Markov parameters, ...: they get their own learning rate and no weight decay), and ``dt_param_names``
    (a subset: the step-size fields, log Δ, which can get a third learning rate). A class whose name does not start
    with ``Abstract`` and lacks either fails when it is created.

    ``rate`` everywhere rescales Δ (``Δ' = rate·Δ``, a change of sampling rate); ``init_state``, ``step`` and
    ``prefill`` of one run must be given the same ``rate``.
    """

    ssm_param_names: eqx.AbstractClassVar[tuple[str, ...]]
    dt_param_names: eqx.AbstractClassVar[tuple[str, ...]]
    d_model: eqx.AbstractVar[int]
    bidirectional: eqx.AbstractVar[bool]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("Abstract"):
            return
        for name in ("ssm_param_names", "dt_param_names"):
            value = getattr(cls, name, None)
            if not isinstance(value, tuple) or not all(isinstance(n, str) for n in value):
                raise TypeError(
                    f"{cls.__module__}.{cls.__name__} must define the class variable `{name}: ClassVar[tuple[str, ...]]` "
                    "(the names of its SSM / step-size parameter fields, used for the optimizer's parameter groups)."
                )
        extra = set(cls.dt_param_names) - set(cls.ssm_param_names)
        if extra:
            raise TypeError(f"{cls.__name__}.dt_param_names {sorted(extra)} must also be in ssm_param_names.")

    @abc.abstractmethod
    def __call__(self, u: Float[Array, "L H"], *, rate: Rate = 1.0) -> Float[Array, "L H"]:
        """Whole-sequence (convolution or scan) mode."""

    @abc.abstractmethod
    def init_state(self, *, rate: Rate = 1.0) -> PyTree[Array]:
        """The zero recurrent state (and whatever the recurrence at this ``rate`` precomputes)."""

    @abc.abstractmethod
    def step(
        self, u_t: Float[Array, " H"], state: PyTree[Array], *, rate: Rate = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        """One recurrent step: returns ``(y_t, new_state)``, exact to ``__call__``."""

    @abc.abstractmethod
    def prefill(
        self, u: Float[Array, "L H"], state: PyTree[Array] | None = None, *, rate: Rate = 1.0
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        """Outputs over a whole prefix and the state after it, in one parallel call.

        Starting from ``state`` (zero state if None), equal to running ``step`` L times.
        """

    def _check_recurrent(self) -> None:
        if self.bidirectional:
            raise ValueError(
                f"A bidirectional {type(self).__name__} reads future inputs, so it has no recurrent mode; use "
                "__call__, or build the layer with bidirectional=False."
            )


class AbstractConvSSMLayer(AbstractSSMLayer):
    """A layer whose whole-sequence mode is a convolution with a kernel it computes (S4, S4D, DSS, HOPE)::

        y_t = Σ_{s≤t} K[t-s] u_s + D u_t                                    (causal)
        y_t = Σ_{s≤t} K₀[t-s] u_s + Σ_{s≥t} K₁[s-t] u_s + D u_t              (bidirectional)

    by FFTs of size 2L (:func:`ssm.kernels.fft_conv`). A subclass supplies only :meth:`kernel` (``(H, L)``, or
    ``(2, H, L)`` when bidirectional) and its recurrence.
    """

    D: eqx.AbstractVar[Float[Array, " H"]]

    @abc.abstractmethod
    def kernel(self, L: int, *, rate: Rate = 1.0) -> Float[Array, "H L"] | Float[Array, "2 H L"]:
        """The convolution kernel of length ``L``: ``(H, L)``, or ``(2, H, L)`` (forward, backward) if bidirectional."""

    def __call__(self, u: Float[Array, "L H"], *, rate: Rate = 1.0) -> Float[Array, "L H"]:
        return kernels.fft_conv(u, self.kernel(u.shape[0], rate=rate), self.D)


class GivenKernel(eqx.Module):
    """A convolutional layer's whole-sequence mode with its kernel's spectrum given: ``fft_conv_spectrum(u, Kf,
    D)``, exactly what :class:`AbstractConvSSMLayer` computes after ``kernel(L)`` (``fft_conv`` is
    ``fft_conv_spectrum`` of ``conv_spectrum(K, L)``). The stand-in for such a layer in a train step in
    micro-batches, which computes each kernel once per step (:mod:`ssm.train.shared_kernels`). Under
    ``scan_layers`` the arrays carry the stack's leading axis, which the scan slices as it slices the layer's
    parameters."""

    Kf: Complex[Array, "..."]  # (*stack, H, L + 1): conv_spectrum of the (H, L) or bidirectional (2, H, L) kernel
    D: Float[Array, "..."]  # (*stack, H)

    def __call__(self, u: Float[Array, "L H"], *, rate: Rate = 1.0) -> Float[Array, "L H"]:
        # ``rate`` is the one the kernel was computed at: shared_kernels.kernel_plan admits a single rate per layer.
        return kernels.fft_conv_spectrum(u, self.Kf, self.D)


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
