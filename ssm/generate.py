"""Autoregressive generation with the backbone's recurrent mode.

A causal :class:`~ssm.model.SequenceModel` (``pool="none"``, token inputs) is run in two modes (a wrapped
:mod:`ssm.nn` model, e.g. SaShiMi, in its own ``prefill``/``step``, see :func:`_modes`):

- **prefill**: the prompt goes through every block in one parallel call (each layer's
  ``prefill``: convolution / scan over the whole prefix), which also returns every layer's
  recurrent state after the prefix (state-spaces/s4 ``SSMKernel.forward_state``: ``x_L = Ā^L x_0 + Σ_k Ā^{L-1-k} B̄ u_k``);
- **step**: one token at a time, each layer in its ``step`` recurrence (``O(H·N)`` per layer and
  token for diagonal layers), inside a jitted ``lax.scan``.

Both modes run the blocks' own code (norms, activation, GLU, residual) around the layer: the layer
of each block is swapped for a :class:`_Tap` that calls the layer's ``prefill``/``step`` and hands
the new recurrent state back to the caller. The per-layer states of a model form the *cache*: a tuple
with one entry per block (or one stacked entry when ``scan_layers``).

Sampling: temperature (0 = greedy arg-max) and nucleus (top-p) filtering.
"""

from __future__ import annotations

import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ssm.backbones import Backbone
from ssm.layers.base import AbstractSSMLayer
from ssm.model import SequenceModel, _to_dtype

Cache = PyTree[Array]


class _Tap(eqx.Module):
    """Stands in for a block's SSM layer: runs the layer's ``prefill`` (on ``(L, H)``) or ``step``
    (on ``(1, H)``) from ``state`` and appends the new state to ``sink``.

    ``sink`` is a plain list filled while tracing, inside the same trace as its reader
    (:func:`_run_block`), so the state never leaves its trace."""

    layer: AbstractSSMLayer
    state: Any
    mode: str = eqx.field(static=True)
    sink: list = eqx.field(static=True)

    def __call__(self, u: Float[Array, "L H"], *, rate: float = 1.0) -> Float[Array, "L H"]:
        if self.mode == "prefill":
            y, new = self.layer.prefill(u, self.state, rate=rate)
        else:
            y, new = self.layer.step(u[0], self.state, rate=rate)
            y = y[None]
        self.sink.append(new)
        return y


def _run_block(block: Any, x: Array, model_state: eqx.nn.State, layer_state: Any, mode: str, rate: float):
    sink: list = []
    tapped = eqx.tree_at(lambda b: b.layer, block, _Tap(block.layer, layer_state, mode, sink))
    x, _ = tapped(x, model_state, key=None, rate=rate)
    return x, sink[0]


def check_autoregressive(model: SequenceModel | Backbone) -> None:
    """A clear error unless ``model`` maps a token sequence to per-position next-token logits."""
    if isinstance(model, Backbone):
        if not all(hasattr(model.net, m) for m in ("prefill", "step", "init_state")):
            raise ValueError(f"{type(model.net).__name__} has no recurrent mode (prefill/step): it cannot generate; "
                             "train an autoregressive backbone (model:sashimi, model:adaptive_lm, model:residual)")  # fmt: skip
        return
    if not isinstance(model, SequenceModel):
        raise TypeError(f"expected an ssm.model.SequenceModel or ssm.backbones.Backbone, got {type(model).__name__}")
    if model.pool != "none" or model.retrieval:
        raise ValueError(
            f"generation needs a causal per-position model (model.pool='none', not retrieval); this one pools "
            f"with {model.pool!r}: train it with --model.pool none on an 'lm' or 'generation' task"
        )
    if not model.tokens:
        raise ValueError("generation needs token inputs (an embedding encoder): this model reads float inputs")


def _blocks(model: SequenceModel, x: Array, model_state: eqx.nn.State, cache: Cache | None, mode: str, rate: float):
    if model.scan_layers:
        params, static = eqx.partition(model.blocks, eqx.is_array)

        def body(h, xs):
            p, c = xs
            return _run_block(eqx.combine(p, static), h, model_state, c, mode, rate)

        return jax.lax.scan(body, x, (params, cache))
    states = []
    for i, block in enumerate(model.blocks):
        x, s = _run_block(block, x, model_state, None if cache is None else cache[i], mode, rate)
        states.append(s)
    return x, tuple(states)


def _embed(model: SequenceModel, tokens: Array) -> Array:
    # As SequenceModel.features: the encoder runs in bfloat16 under mixed precision.
    enc = _to_dtype(model.encoder, jnp.bfloat16) if getattr(model, "precision", "float32") == "mixed" else model.encoder
    return jax.vmap(enc)(tokens)


def _head(model: SequenceModel, x: Array, model_state: eqx.nn.State) -> Array:
    # As SequenceModel.features (final norm) and __call__ with pool="none": the decoder multiplies in the
    # features' dtype, the logits come back in the parameters' dtype.
    if model.final_norm is not None:
        x, _ = model.final_norm(x, model_state)
    out_dtype = model.encoder.weight.dtype
    if model.decoder is None:  # tied embeddings
        return (x @ model.encoder.weight.T.astype(x.dtype)).astype(out_dtype)
    return jax.vmap(_to_dtype(model.decoder, x.dtype))(x).astype(out_dtype)


def init_cache(model: SequenceModel, *, rate: float = 1.0) -> Cache:
    """Every layer's zero recurrent state (the cache before any token)."""

    def one(layer: AbstractSSMLayer) -> Any:
        return layer.init_state(rate=rate)

    if model.scan_layers:
        return eqx.filter_vmap(lambda b: one(b.layer))(model.blocks)
    return tuple(one(b.layer) for b in model.blocks)


def prefill(
    model: SequenceModel,
    model_state: eqx.nn.State,
    inputs: Int[Array, " L"],
    cache: Cache | None = None,
    *,
    rate: float = 1.0,
) -> tuple[Float[Array, "L V"], Cache]:
    """Logits ``(L, V)`` over a whole prefix and the cache after it, in one parallel call
    (from ``cache``, or from the zero state). Equals ``model(inputs)`` and stepping token by token.
    ``model`` should be in inference mode (``eqx.nn.inference_mode``), as :func:`generate` puts it."""
    x = _embed(model, inputs)
    x, cache = _blocks(model, x, model_state, cache, "prefill", rate)
    return _head(model, x, model_state), cache


def step(
    model: SequenceModel, model_state: eqx.nn.State, token: Int[Array, ""], cache: Cache, *, rate: float = 1.0
) -> tuple[Float[Array, " V"], Cache]:
    """One token in recurrent mode: the next-token logits ``(V,)`` and the updated cache."""
    x = _embed(model, token[None])
    x, cache = _blocks(model, x, model_state, cache, "step", rate)
    return _head(model, x, model_state)[0], cache


def top_p_filter(logits: Float[Array, " V"], top_p: float) -> Float[Array, " V"]:
    """Nucleus filtering: keep the most probable tokens whose probabilities, taken in decreasing order,
    first reach a total of at least ``top_p`` (at least the top token); the others get ``-inf``."""
    if top_p >= 1.0:
        return logits
    srt = jnp.sort(logits)[::-1]
    p = jax.nn.softmax(srt)
    keep = (jnp.cumsum(p) - p) < top_p  # the mass before this token is still short of top_p
    threshold = jnp.min(jnp.where(keep, srt, jnp.inf))
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def sample_token(key: PRNGKeyArray, logits: Float[Array, " V"], temperature: float, top_p: float) -> Int[Array, ""]:
    """A token from ``softmax(logits / temperature)`` restricted to the top-p nucleus; arg-max when
    ``temperature == 0`` (greedy)."""
    if temperature == 0.0:
        return jnp.argmax(logits).astype(jnp.int32)
    return jax.random.categorical(key, top_p_filter(logits / temperature, top_p)).astype(jnp.int32)


def _check_sampling(temperature: float, top_p: float) -> None:
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0 (0: greedy), got {temperature!r}")
    if not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] (1: no nucleus filtering), got {top_p!r}")


def _modes(model: Any, model_state: eqx.nn.State, rate: float) -> tuple[Any, Any]:
    """``(prefill(inputs) -> (scores (L, V), cache), step(token, cache) -> (scores (V,), cache))``: a wrapped
    :mod:`ssm.nn` model (:class:`~ssm.backbones.Backbone`) steps through its own ``prefill``/``step`` (SaShiMi's
    pooling buffers included; ``AdaptiveLM``'s scores are log-probabilities), a ``SequenceModel`` through its
    blocks' layers."""
    if isinstance(model, Backbone):
        if rate != 1.0:
            raise ValueError(f"{type(model.net).__name__} generates at its training rate only (got rate={rate})")
        return model.net.prefill, model.net.step
    return (lambda inputs: prefill(model, model_state, inputs, rate=rate),
            lambda tok, cache: step(model, model_state, tok, cache, rate=rate))  # fmt: skip


@eqx.filter_jit
def _generate(model, model_state, prompt, key, length, temperature, top_p, start_token, rate):
    P = prompt.shape[1]
    n_steps = length - P - 1
    run_prefill, run_step = _modes(model, model_state, rate)

    def one(prompt_row, k):
        inputs = prompt_row if start_token is None else jnp.concatenate([jnp.full((1,), start_token, prompt_row.dtype), prompt_row])
        logits, cache = run_prefill(inputs)
        k0, k_rest = jax.random.split(k)
        first = sample_token(k0, logits[-1], temperature, top_p)

        def body(carry, kt):
            tok, cache = carry
            logits, cache = run_step(tok, cache)
            nxt = sample_token(kt, logits, temperature, top_p)
            return (nxt, cache), nxt

        _, rest = jax.lax.scan(body, (first, cache), jax.random.split(k_rest, n_steps))
        return jnp.concatenate([prompt_row, first[None], rest.astype(prompt_row.dtype)])

    keys = jax.random.split(key, prompt.shape[0])
    return jax.vmap(one)(prompt, keys)


def generate(
    model: SequenceModel | Backbone,
    model_state: eqx.nn.State,
    prompt: Array | np.ndarray,
    *,
    length: int,
    key: PRNGKeyArray,
    temperature: float = 1.0,
    top_p: float = 1.0,
    start_token: int | None = None,
    rate: float = 1.0,
) -> Int[Array, "B {length}"]:
    """A batch of ``B`` sequences of ``length`` tokens continuing ``prompt (B, P)``: the first ``P``
    tokens are the prompt, the rest are sampled one at a time.

    The model sees ``[start_token] + prompt`` (``start_token`` as in training for models whose inputs
    are the targets shifted right, e.g. 128 for SaShiMi audio, 0 for MNIST pixels; ``None`` for
    language models, which then need ``P >= 1``). The prompt is prefilled in one call, then each new
    token is a recurrent step. ``temperature=0`` is greedy decoding. Runs in inference mode (no
    dropout, BatchNorm running statistics)."""
    check_autoregressive(model)
    _check_sampling(temperature, top_p)
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2:
        raise ValueError(f"prompt must be a (batch, P) array of tokens, got shape {prompt.shape}")
    P = prompt.shape[1]
    if start_token is None and P == 0:
        raise ValueError("an empty prompt needs a start_token (the first input the model was trained with)")
    if not (isinstance(length, int) and length > P):
        raise ValueError(f"length ({length}) must be an integer larger than the prompt length ({P})")
    model = eqx.nn.inference_mode(model)
    return _generate(model, model_state, prompt, key, length, float(temperature), float(top_p),
                     None if start_token is None else int(start_token), rate)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Benchmark: recurrent generation vs re-running the convolution over the growing prefix


def bench_generation(
    layer: str = "s4d",
    *,
    length: int = 4096,
    d_model: int = 64,
    d_state: int = 64,
    n_layers: int = 4,
    vocab: int = 256,
    naive_tokens: int = 32,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Tokens/s of greedy generation of ``length`` tokens in recurrent mode, against re-running the
    whole model in convolution mode over the ``length``-token buffer for each new token (the cost per
    token of generating without a recurrence, measured over ``naive_tokens`` tokens at the end of the
    buffer). Both are one jitted ``lax.scan``; times are medians of ``repeats`` after a warm-up.

    Returns ``{"layer", "length", ..., "recurrent_tokens_per_s", "conv_tokens_per_s", "ratio"}``."""
    from ssm.config import ModelConfig
    from ssm.data.base import DatasetInfo
    from ssm.model import make_model

    cfg = ModelConfig(layer=layer, d_model=d_model, d_state=d_state, n_layers=n_layers, pool="none")
    info = DatasetInfo(task="generation", d_input=vocab, d_output=vocab, seq_len=length, tokens=True)
    model, mstate = make_model(cfg, info, key=jax.random.PRNGKey(seed))
    if layer == "s4":  # S4's C̃ must be set up for a kernel as long as the buffer
        model = _with_l_max(model, length)
    model = eqx.nn.inference_mode(model)
    key = jax.random.PRNGKey(seed + 1)
    prompt = jnp.zeros((1, 1), jnp.int32)

    def timed(fn) -> float:
        jax.block_until_ready(fn())
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    t_rec = timed(lambda: _generate(model, mstate, prompt, key, length, 0.0, 1.0, None, 1.0))

    @eqx.filter_jit
    def naive(model, buf, start):
        def body(carry, _):
            buf, t = carry
            logits, _ = model(buf, mstate)
            nxt = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, t, keepdims=False)).astype(buf.dtype)
            return (buf.at[t + 1].set(nxt), t + 1), None

        (buf, _), _ = jax.lax.scan(body, (buf, start), None, length=naive_tokens)
        return buf

    buf = jax.random.randint(key, (length,), 0, vocab, jnp.int32)
    start = jnp.asarray(length - naive_tokens - 1, jnp.int32)
    t_naive = timed(lambda: naive(model, buf, start))
    rec = (length - 1) / t_rec
    conv = naive_tokens / t_naive
    return {
        "layer": layer, "length": length, "d_model": d_model, "d_state": d_state, "n_layers": n_layers,
        "vocab": vocab, "backend": jax.default_backend(), "dtype": str(jnp.zeros(()).dtype),
        "recurrent_tokens_per_s": rec, "conv_tokens_per_s": conv, "ratio": rec / conv,
    }  # fmt: skip


def _with_l_max(model: SequenceModel, l_max: int) -> SequenceModel:
    """``model`` with every S4 layer rebuilt for ``l_max`` (benchmark only; fresh parameters)."""
    import ssm.layers

    def rebuild(layer):
        if isinstance(layer, ssm.layers.S4) and layer.l_max < l_max:
            return ssm.layers.S4(layer.d_model, layer.d_state, key=jax.random.PRNGKey(0), l_max=l_max)
        return layer

    is_layer = lambda x: isinstance(x, AbstractSSMLayer)  # noqa: E731
    return jax.tree_util.tree_map(rebuild, model, is_leaf=is_layer)
