"""Inverted dropout on one example (``nn.Dropout`` semantics: zero each element independently with probability
``rate``, scale the kept values by the inverse keep probability).

The mask is the residual model's (:func:`ssm.random_bits.byte_dropout`): Threefry-2x32 bytes from a hash XLA fuses
with the mask's use, compared with ``round(256 · rate)``, so the rate is rounded to a multiple of 1/256 (0.3 drops
77/256 = 30.1 %, 0.25 exactly a quarter) and kept values are scaled by ``256 / (256 - round(256 · rate))``. The mask
depends only on the key (split per example, block and site by the callers), so an example's masks do not depend on
its batch, and a resumed run draws the same masks. ``jax.random.bernoulli`` drew a 32-bit uniform per element
through JAX's rolled Threefry loop (docs/benchmarks.md, the ``ssm.nn`` section, has the measured difference).
"""

from __future__ import annotations

from jaxtyping import Array, Float, PRNGKeyArray

from ssm.random_bits import byte_dropout


def dropout(x: Float[Array, "*shape"], rate: float, key: PRNGKeyArray | None) -> Float[Array, "*shape"]:
    """Identity when ``key`` is None (evaluation, recurrent modes) or ``rate == 0``."""
    if key is None or rate == 0.0:
        return x
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}.")
    return byte_dropout(x, rate, key)
