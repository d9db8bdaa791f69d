"""Mixed precision, in one place for every backbone.

The policy (``precision="mixed"``, ``--model.precision mixed``; ``"auto"`` is mixed on GPU/TPU, float32 on CPU):
parameters stay float32 (the optimizer updates them; the gradient of a cast flows back to them); the residual stream
and every matmul (embeddings, linear maps, FFNs, output heads) compute in bfloat16; norms and SSM layers (kernel,
FFT convolution, recurrence) compute in at least float32 and hand their output back in the stream's dtype; the
outputs (logits) come back in float32. Three helpers implement it:

- :func:`cast_floats`: a module with its floating-point arrays cast (the matmul weights, per call);
- :func:`widen`: an input in at least float32 (norms and SSM layers call it on the bfloat16 stream);
- :func:`mixed`: a whole :mod:`ssm.nn` model with every parameter cast to bfloat16 except those of the modules that
  compute wide (:func:`wide_modules`), so the embedding's output starts a bfloat16 stream.

The residual :class:`~ssm.model.SequenceModel` casts its encoder, block output maps and decoder with
:func:`cast_floats` and widens around its norms and layers; the :mod:`ssm.nn` backbones behind
:class:`~ssm.backbones.Backbone` run as :func:`mixed` of themselves, their norms and :class:`~ssm.nn.SSMMixer` widening.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

PRECISIONS = ("float32", "mixed", "auto")


def resolve_precision(precision: str) -> str:
    """``"float32"`` or ``"mixed"``; ``"auto"`` is mixed on an accelerator (GPU/TPU), float32 on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "float32" if jax.default_backend() == "cpu" else "mixed"
    return precision


def cast_floats(tree: Any, dtype: Any) -> Any:
    """``tree`` with its floating-point arrays cast to ``dtype`` (for bfloat16 matmuls against float32 weights;
    the gradient of the cast flows back to the float32 parameters)."""
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if eqx.is_array(x) and jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def widen(x: Array) -> Array:
    """``x`` in at least float32 (norms, SSM layers): a no-op unless ``x`` is bfloat16/float16."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def wide_modules() -> tuple[type, ...]:
    """The module types whose parameters :func:`mixed` leaves in float32: SSM layers (their kernels and recurrences
    need the range and precision: Δ spans decades, ``Ā^L`` decays over thousands of steps), norms (statistics over
    the channels), and the adaptive softmax's own parameters (its biases are added to the bfloat16 logits, so its
    log-softmax runs in float32, as the residual model's loss does on its float32 logits). An SSM layer's stand-in
    holding its given kernel in a step in micro-batches (``ssm.layers.base.GivenKernel``) counts as the layer."""
    from ssm.layers.base import AbstractSSMLayer, GivenKernel
    from ssm.nn.adaptive import AdaptiveLogSoftmax
    from ssm.nn.norm import LayerNorm, ScalarLayerNorm

    return (AbstractSSMLayer, GivenKernel, LayerNorm, ScalarLayerNorm, AdaptiveLogSoftmax)


def mixed(model: Any, dtype: Any = jnp.bfloat16) -> Any:
    """``model`` with the floating-point parameters of every module cast to ``dtype`` except those of
    :func:`wide_modules` (applied per call: the parameters themselves stay float32)."""
    keep = wide_modules()
    is_kept = lambda x: isinstance(x, keep)  # noqa: E731
    return jax.tree_util.tree_map(lambda x: x if is_kept(x) else cast_floats(x, dtype), model, is_leaf=is_kept)
