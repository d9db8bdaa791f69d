"""Autoregressive sampling: the one decoding loop of the project (:func:`ssm.generate.generate` runs every backbone
through it) and token sampling (temperature, nucleus/top-p).

:func:`decode` needs only two functions: ``prefill(inputs) -> (scores (L, V), state)`` over the whole input prefix in
one parallel call, and ``step(token, state) -> (scores (V,), state)`` for one new token; scores are logits or
log-probabilities. One example; ``jax.vmap`` it over prompts and keys for a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray


def top_p_filter(logits: Float[Array, " V"], top_p: float) -> Float[Array, " V"]:
    """Nucleus filtering (Holtzman et al. 2020): keep the most probable tokens whose probabilities, taken in
    decreasing order, first reach a total of at least ``top_p`` (at least the top token); the others get ``-inf``."""
    if top_p >= 1.0:
        return logits
    srt = jnp.sort(logits)[::-1]
    p = jax.nn.softmax(srt)
    keep = (jnp.cumsum(p) - p) < top_p  # the mass before this token is still short of top_p
    threshold = jnp.min(jnp.where(keep, srt, jnp.inf))
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def sample_token(
    scores: Float[Array, " V"], key: PRNGKeyArray, temperature: float = 1.0, top_p: float = 1.0
) -> Int[Array, ""]:
    """A draw from ``softmax(scores / temperature)`` restricted to the top-p nucleus; ``temperature == 0`` is the
    arg-max (greedy)."""
    if temperature == 0.0:
        return jnp.argmax(scores).astype(jnp.int32)
    return jax.random.categorical(key, top_p_filter(scores / temperature, top_p)).astype(jnp.int32)


def decode(
    prefill: Callable[[Array], tuple[Array, Any]],
    step: Callable[[Array, Any], tuple[Array, Any]],
    inputs: Int[Array, " P"],
    n_new: int,
    *,
    key: PRNGKeyArray,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> Int[Array, " {n_new}"]:
    """``n_new >= 1`` tokens following ``inputs``: one ``prefill`` of the inputs, the first token drawn from its
    last scores, then one ``step`` per further token, each sampled token fed back (inside one ``lax.scan``)."""
    scores, state = prefill(inputs)
    k0, k_rest = jax.random.split(key)
    first = sample_token(scores[-1], k0, temperature, top_p)

    def body(carry, k):
        token, state = carry
        scores, state = step(token, state)
        nxt = sample_token(scores, k, temperature, top_p)
        return (nxt, state), nxt

    _, rest = jax.lax.scan(body, (first, state), jax.random.split(k_rest, n_new - 1))
    return jnp.concatenate([first[None], rest])


def generate(
    model: Any, prompt: Int[Array, " P"], n_steps: int, *, key: PRNGKeyArray, temperature: float = 1.0,
    top_p: float = 1.0,
) -> Int[Array, " {n_steps}"]:
    """``n_steps`` tokens following ``prompt`` from an :mod:`ssm.nn` model with ``prefill(tokens)`` and
    ``step(token, state)`` (``SaShiMiModel``, ``AdaptiveLM``): :func:`decode` of its own recurrent mode."""
    return decode(model.prefill, model.step, prompt, n_steps, key=key, temperature=temperature, top_p=top_p)
