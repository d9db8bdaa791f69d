"""One SSM kernel per optimizer step under gradient accumulation.

A convolutional SSM layer (:class:`ssm.layers.AbstractConvSSMLayer`) computes its kernel ``K = kernel(θ, L)`` from
its parameters alone, independently of the input: ``y = fft_conv(u, K, D)``. With ``grad_accum`` micro-batches the
plain step computes every kernel, and its gradient, once per micro-batch. Here each is computed once per step: the
kernels, their spectra (:func:`ssm.kernels.conv_spectrum`: the real FFT of size ``2L`` that every micro-batch's
convolution would take again) and their pullback come from one ``vjp`` before the micro-batches; the micro-batches
run a copy of the model whose convolutional layers hold those spectra as arrays (:class:`GivenKernel`), so their
gradients accumulate the cotangents ``∂ℓ/∂K̂`` (and ``∂ℓ/∂D``); one pullback after the last maps ``Σ ∂ℓ/∂K̂``
through the FFT and the kernel to the layers' parameters. By
linearity of the pullback this is the plain step's gradient, up to the order of floating-point sums
(``tests/test_shared_kernels.py``).

What each layer needs (its length ``L`` and ``rate``) is read by tracing the model once, abstractly, with every
convolutional layer wrapped in a recorder (:func:`kernel_plan`). A model in which some layer is called at several
lengths or rates, or with a traced rate, keeps the plain step (:func:`kernel_plan` returns None). On the cost: a
kernel's forward and backward do not depend on the batch (S4's Cauchy sums at ``lra.pathx``: 2.06 s of a 7.8 s
train step at batch 4 on a 2-core CPU, docs/benchmarks.md), so at ``grad_accum = n`` the plain step pays them ``n``
times.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float

from ssm import kernels
from ssm.layers.base import AbstractConvSSMLayer, GivenKernel


def _is_conv(node: Any) -> bool:
    return isinstance(node, AbstractConvSSMLayer)


def conv_layers(model: Any) -> list[AbstractConvSSMLayer]:
    """The convolutional SSM layers of ``model`` in tree order (a layer stacked for ``scan_layers`` counts once)."""
    return [n for n in jax.tree_util.tree_leaves(model, is_leaf=_is_conv) if _is_conv(n)]


def _replace_nodes(tree: Any, is_node: Callable[[Any], bool], make: Callable[[int, Any], Any]) -> Any:
    """``tree`` with its ``i``-th node satisfying ``is_node`` (tree order) replaced by ``make(i, node)``."""
    counter = itertools.count()
    return jax.tree_util.tree_map(lambda n: make(next(counter), n) if is_node(n) else n, tree, is_leaf=is_node)


def replace_conv_layers(model: Any, make: Callable[[int, AbstractConvSSMLayer], Any]) -> Any:
    """``model`` with its ``i``-th convolutional layer (tree order, :func:`conv_layers`) replaced by ``make(i, layer)``."""
    return _replace_nodes(model, _is_conv, make)


class _Sink:
    """Where the recorders write during one abstract trace (hashed by identity, so it can sit in a static field)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, Any]] = []


class _Recorder(eqx.Module):
    """A convolutional layer that notes ``(index, L, rate)`` of each call, then runs the layer."""

    layer: AbstractConvSSMLayer
    index: int = eqx.field(static=True)
    sink: _Sink = eqx.field(static=True)

    def __call__(self, u: Float[Array, "L H"], *, rate: Any = 1.0) -> Float[Array, "L H"]:
        self.sink.calls.append((self.index, u.shape[0], rate))
        return self.layer(u, rate=rate)


def kernel_plan(run: Callable[..., Any], model: Any, *args: Any) -> list[tuple[int, float]] | None:
    """``(L, rate)`` of each convolutional layer of ``model`` as ``run(model, *args)`` calls it (an abstract trace:
    nothing is computed, and ``args`` are rebuilt, so a State among them is not spent), or None where sharing a
    kernel across micro-batches does not apply: no such layer, a layer not called, or called at several lengths or
    rates, or with a rate that is not a Python number."""
    layers = conv_layers(model)
    if not layers:
        return None
    sink = _Sink()
    eqx.filter_eval_shape(lambda m, a: run(replace_conv_layers(m, lambda i, l: _Recorder(l, i, sink)), *a), model, args)
    seen: dict[int, set] = {}
    for i, L, rate in sink.calls:
        if not isinstance(rate, (int, float)):
            return None
        seen.setdefault(i, set()).add((L, float(rate)))
    if sorted(seen) != list(range(len(layers))) or any(len(v) != 1 for v in seen.values()):
        return None
    return [next(iter(seen[i])) for i in range(len(layers))]


def _stack_depth(layer: AbstractConvSSMLayer) -> int:
    """Leading stack axes of a layer's arrays (``scan_layers`` stacks every block's arrays): ``D`` is ``(H,)`` alone."""
    return layer.D.ndim - 1


def layer_spectrum(layer: AbstractConvSSMLayer, L: int, rate: float) -> Array:
    """``conv_spectrum(layer.kernel(L, rate=rate), L)``, mapped over the stack axes of a stacked layer."""
    if _stack_depth(layer) == 0:
        return kernels.conv_spectrum(layer.kernel(L, rate=rate), L)
    return eqx.filter_vmap(lambda l: layer_spectrum(l, L, rate))(layer)


def with_given_kernels(model: Any, plan: list[tuple[int, float]]) -> tuple[Any, Callable[[list[Array]], list[Any]]]:
    """``(fixed, pullback)``: ``model`` with every convolutional layer replaced by a :class:`GivenKernel` of its
    kernel's spectrum (one ``vjp`` of all kernels and their FFTs), and the map from the spectra's cotangents to the
    layers' gradients (structure of each layer, None where :func:`equinox.filter_grad` has None)."""
    layers = conv_layers(model)
    Kfs, pull = eqx.filter_vjp(lambda ls: [layer_spectrum(l, L, r) for l, (L, r) in zip(ls, plan)], layers)
    fixed = replace_conv_layers(model, lambda i, l: GivenKernel(Kfs[i], l.D))
    return fixed, lambda dKs: pull(list(dKs))[0]


def gradients_through_kernels(grads_fixed: Any, pullback: Callable[[list[Array]], list[Any]]) -> Any:
    """The model's gradient from the gradient w.r.t. the :func:`with_given_kernels` copy: each :class:`GivenKernel`'s
    ``(dKf, dD)`` becomes its layer's gradient, the pullback of ``dKf`` with ``dD`` added to the skip ``D``."""
    is_given = lambda n: isinstance(n, GivenKernel)  # noqa: E731
    given = [n for n in jax.tree_util.tree_leaves(grads_fixed, is_leaf=is_given) if is_given(n)]
    dlayers = pullback([g.Kf for g in given])
    dlayers = [eqx.tree_at(lambda l: l.D, dl, dl.D + g.D) for dl, g in zip(dlayers, given)]
    return _replace_nodes(grads_fixed, is_given, lambda i, _: dlayers[i])
