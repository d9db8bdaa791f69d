"""Random bytes for dropout masks: the Threefry-2x32 hash written out in ``jax.numpy``.

Threefry-2x32 with 20 rounds (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3",
SC'11) is the counter-based generator behind ``jax.random``'s default keys. Two things make ``jax.random.bits`` costly
for masks on CPU, and neither is the hash itself:

- JAX lowers the hash on CPU to a rolled ``while`` loop (five iterations of four rounds), so XLA cannot fuse it with
  the counters or with what reads the bits; every iteration reads and writes the whole state;
- with ``jax_threefry_partitionable`` (the default) a 32-bit draw keeps the XOR of the hash's two output words, so
  one evaluation of the hash yields 32 bits instead of 64.

:func:`random_octets` evaluates the same hash as straight-line array code (XLA fuses the 20 rounds into one loop over
the counters) and keeps both output words: 8 random bytes per evaluation, a quarter of the evaluations of
``jax.random.bits(key, (n // 4,), uint32)``. Its words equal ``jax.extend.random.threefry_2x32(key, iota(2m))``
(tested), so the bytes are Threefry's output, not a weaker generator.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, UInt32, UInt8

# Threefry-2x32's rotation constants (Salmon et al. 2011; the same as Random123's and jax.random's), alternating every
# four rounds, and the key-schedule parity constant.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotate_left(v: Array, r: int) -> Array:
    return (v << jnp.uint32(r)) | (v >> jnp.uint32(32 - r))


def threefry2x32(
    k0: UInt32[Array, ""], k1: UInt32[Array, ""], x0: UInt32[Array, " n"], x1: UInt32[Array, " n"]
) -> tuple[UInt32[Array, " n"], UInt32[Array, " n"]]:
    """Threefry-2x32-20 of the 64-bit counters ``(x0, x1)`` under the key ``(k0, k1)``: five groups of four
    add-rotate-xor rounds, each group followed by a key injection ``(k_{s+1 mod 3}, k_{s+2 mod 3} + s + 1)`` from the
    extended key ``(k0, k1, k0 ^ k1 ^ 0x1BD11BDA)``."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for s in range(5):
        for r in _ROTATIONS[s % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[(s + 1) % 3]
        x1 = x1 + ks[(s + 2) % 3] + jnp.uint32(s + 1)
    return x0, x1


def key_words(key: PRNGKeyArray) -> UInt32[Array, " 2"]:
    """The two 32-bit words of a Threefry key (a typed ``jax.random.key`` or a raw ``PRNGKey``); keys of another
    implementation are hashed down to two words with ``jax.random.bits``."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if data.shape != (2,) or data.dtype != jnp.uint32:
        return jax.random.bits(key, (2,), jnp.uint32)
    return data


def random_octets(key: PRNGKeyArray, n: int) -> UInt8[Array, " n"]:
    """``n`` uniform random bytes from ``key``: Threefry-2x32-20 of the counters ``(c, c + m)``, ``c < m =
    ceil(n / 8)``, the first output words then the second, as little-endian bytes (the words are those of
    ``jax.extend.random.threefry_2x32(key, iota(2m))``)."""
    m = max(1, math.ceil(n / 8))
    k = key_words(key)
    c = jax.lax.iota(jnp.uint32, m)
    y0, y1 = threefry2x32(k[0], k[1], c, c + jnp.uint32(m))
    words = jnp.concatenate([y0, y1])
    return jax.lax.bitcast_convert_type(words, jnp.uint8).reshape(-1)[:n]


def drop_threshold(rate: float) -> int:
    """The byte threshold of a dropout ``rate``: a byte below it drops, so the rate is rounded to a multiple of 1/256
    (0.1 drops 26/256 = 10.2 %, 0.25 exactly 64/256); at most 255, so that something is always kept."""
    return min(round(rate * 256), 255)


def byte_dropout(x: Array, rate: float, key: PRNGKeyArray, mask_shape: tuple[int, ...] | None = None) -> Array:
    """Inverted dropout of ``x`` with a mask of :func:`random_octets` bytes compared with :func:`drop_threshold`:
    kept values are scaled by the exact keep probability ``256 / (256 - threshold)``. ``mask_shape`` (default
    ``x.shape``) broadcasts against ``x``: ``(1, H)`` shares one mask per channel over time. The mask depends only on
    ``key`` and its shape."""
    shape = x.shape if mask_shape is None else tuple(mask_shape)
    threshold = drop_threshold(rate)
    keep = random_octets(key, math.prod(shape)).reshape(shape) >= threshold
    return jnp.where(keep, x * (256 / (256 - threshold)), 0.0).astype(x.dtype)
