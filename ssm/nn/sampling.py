"""Autoregressive sampling from any model with ``prefill(tokens) -> (scores (L, V), state)`` and
``step(token, state) -> (scores (V,), state)`` (``SaShiMiModel``, ``AdaptiveLM``; scores are logits or
log-probabilities). One example; ``jax.vmap`` it over prompts and keys for a batch."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray


def sample_token(scores: Float[Array, " V"], key: PRNGKeyArray, temperature: float = 1.0) -> Int[Array, ""]:
    """A draw from ``softmax(scores / temperature)``; ``temperature == 0`` is the argmax."""
    if temperature == 0.0:
        return jnp.argmax(scores).astype(jnp.int32)
    return jax.random.categorical(key, scores / temperature).astype(jnp.int32)


def generate(
    model: Any, prompt: Int[Array, " P"], n_steps: int, *, key: PRNGKeyArray, temperature: float = 1.0
) -> Int[Array, " n"]:
    """``n_steps`` tokens following ``prompt``: one parallel ``prefill`` of the prompt, then one ``step`` per token,
    each sampled token fed back."""
    scores, state = model.prefill(prompt)

    def body(carry, k):
        last, state = carry
        token = sample_token(last, k, temperature)
        scores, state = model.step(token, state)
        return (scores, state), token

    _, tokens = jax.lax.scan(body, (scores[-1], state), jax.random.split(key, n_steps))
    return tokens
