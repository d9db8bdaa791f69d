"""Autoregressive generation with the backbone's own recurrent mode, one code path for every backbone.

Every generating backbone owns ``init_state(*, rate)``, ``prefill(inputs, model_state, cache=None, *, rate)`` and
``step(token, model_state, cache, *, rate)``: the residual :class:`~ssm.model.SequenceModel` (its blocks' own
``prefill``/``step`` around each SSM layer's) and :class:`~ssm.backbones.Backbone` around an :mod:`ssm.nn` model
(SaShiMi with its streaming pooling buffers, the adaptive-softmax LM). Generation calls them and nothing else:

- **prefill**: the prompt goes through the model in one parallel call (each layer's ``prefill``: convolution / scan
  over the whole prefix), which also returns every layer's recurrent state after the prefix (state-spaces/s4
  ``SSMKernel.forward_state``: ``x_L = Ā^L x_0 + Σ_k Ā^{L-1-k} B̄ u_k``);
- **step**: one token at a time, each layer in its ``step`` recurrence (``O(H·N)`` per layer and token for
  diagonal layers), inside a jitted ``lax.scan`` (:func:`ssm.nn.sampling.decode`, the one decoding loop).

The recurrent state of a whole model is its *cache* (for ``SequenceModel``: a tuple with one entry per block, or
one stacked entry when ``scan_layers``). Sampling: temperature (0 = greedy arg-max) and nucleus (top-p) filtering.
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
from ssm.model import SequenceModel
from ssm.nn.sampling import decode, top_p_filter
from ssm.nn.sampling import sample_token as _sample

__all__ = ["generate", "prefill", "step", "init_cache", "sample_token", "top_p_filter", "check_autoregressive",
           "bench_generation"]  # fmt: skip

Cache = PyTree[Array]


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


def init_cache(model: SequenceModel | Backbone, *, rate: float = 1.0) -> Cache:
    """Every layer's zero recurrent state (the cache before any token): ``model.init_state(rate=rate)``."""
    return model.init_state(rate=rate)


def prefill(
    model: SequenceModel | Backbone,
    model_state: eqx.nn.State,
    inputs: Int[Array, " L"],
    cache: Cache | None = None,
    *,
    rate: float = 1.0,
) -> tuple[Float[Array, "L V"], Cache]:
    """Logits ``(L, V)`` over a whole prefix and the cache after it, in one parallel call (from ``cache``, or from
    the zero state): ``model.prefill``. Equals ``model(inputs)`` and stepping token by token. ``model`` should be
    in inference mode (``eqx.nn.inference_mode``), as :func:`generate` puts it."""
    return model.prefill(inputs, model_state, cache, rate=rate)


def step(
    model: SequenceModel | Backbone, model_state: eqx.nn.State, token: Int[Array, ""], cache: Cache, *,
    rate: float = 1.0,
) -> tuple[Float[Array, " V"], Cache]:
    """One token in recurrent mode: the next-token logits ``(V,)`` and the updated cache (``model.step``)."""
    return model.step(token, model_state, cache, rate=rate)


def sample_token(key: PRNGKeyArray, logits: Float[Array, " V"], temperature: float, top_p: float) -> Int[Array, ""]:
    """A token from ``softmax(logits / temperature)`` restricted to the top-p nucleus; arg-max when
    ``temperature == 0`` (greedy). (:func:`ssm.nn.sampling.sample_token` with the key first.)"""
    return _sample(logits, key, temperature, top_p)


def _check_sampling(temperature: float, top_p: float) -> None:
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0 (0: greedy), got {temperature!r}")
    if not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] (1: no nucleus filtering), got {top_p!r}")


@eqx.filter_jit
def _generate(model, model_state, prompt, key, length, temperature, top_p, start_token, rate):
    P = prompt.shape[1]

    def one(prompt_row, k):
        inputs = prompt_row if start_token is None else jnp.concatenate([jnp.full((1,), start_token, prompt_row.dtype), prompt_row])
        new = decode(lambda x: model.prefill(x, model_state, rate=rate),
                     lambda t, c: model.step(t, model_state, c, rate=rate),
                     inputs, length - P, key=k, temperature=temperature, top_p=top_p)  # fmt: skip
        return jnp.concatenate([prompt_row, new.astype(prompt_row.dtype)])

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
    model: str = "flat",
    length: int = 4096,
    d_model: int = 64,
    d_state: int = 64,
    n_layers: int = 4,
    vocab: int = 256,
    naive_tokens: int = 32,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Tokens/s of greedy generation of ``length`` tokens in recurrent mode (:func:`generate`: one prefill of the
    first token, then ``length - 1`` steps), against re-running the whole model in convolution mode over the
    ``length``-token buffer for each new token (the cost per token of generating without a recurrence, measured over
    ``naive_tokens`` tokens at the end of the buffer). Both are one jitted ``lax.scan``; times are medians of
    ``repeats`` after a warm-up.

    ``model``: ``"flat"`` (the residual ``SequenceModel``: ``n_layers`` blocks of ``layer``), ``"sashimi"`` (the
    SC09 SaShiMi U-Net, ``pool=[4, 4]``, ``expand=2``, ``ff=2``, ``n_layers`` (S4 + FFN) residual layers per stage,
    S4 ``n_ssm=1``; ``length`` a multiple of 16) or ``"adaptive_lm"`` (``n_layers`` × [S4, S4, FFN], adaptive
    softmax with cutoffs at ``vocab/4`` and ``vocab/2``, ``div_val=4``). ``layer`` is the SSM layer of every model.

    Returns ``{"model", "layer", "length", ..., "params", "recurrent_tokens_per_s", "conv_tokens_per_s", "ratio"}``."""
    from ssm.config import AdaptiveLMConfig, ModelConfig, SaShiMiConfig
    from ssm.data.base import DatasetInfo
    from ssm.layer_configs import layer_config_class
    from ssm.model import count_params, make_model

    task = "lm" if model == "adaptive_lm" else "generation"
    info = DatasetInfo(task=task, d_input=vocab, d_output=vocab, seq_len=length, tokens=True)
    # The backbones' S4 has one shared (A, B) per layer (n_ssm=1), as the official SaShiMi and WikiText-103 models.
    layer_cfg = layer_config_class(layer)(d_state=d_state, **({"n_ssm": 1} if layer == "s4" else {}))
    if model == "flat":
        cfg: Any = ModelConfig(layer=layer, d_model=d_model, d_state=d_state, n_layers=n_layers, pool="none")
    elif model == "sashimi":
        cfg = SaShiMiConfig(layer=layer_cfg, d_model=d_model, n_layers=n_layers)
    elif model == "adaptive_lm":
        cfg = AdaptiveLMConfig(layer=layer_cfg, d_model=d_model, n_layers=n_layers, cutoffs=(vocab // 4, vocab // 2),
                               dropout=0.0, dropemb=0.0, dropsoft=0.0)  # fmt: skip
    else:
        raise ValueError(f"bench_generation: model must be 'flat', 'sashimi' or 'adaptive_lm', got {model!r}")
    net, mstate = make_model(cfg, info, key=jax.random.PRNGKey(seed))
    if model == "flat" and layer == "s4":  # S4's C̃ must be set up for a kernel as long as the buffer
        net = _with_l_max(net, length)
    net = eqx.nn.inference_mode(net)
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

    t_rec = timed(lambda: _generate(net, mstate, prompt, key, length, 0.0, 1.0, None, 1.0))

    @eqx.filter_jit
    def naive(net, buf, start):
        def body(carry, _):
            buf, t = carry
            scores, _ = net(buf, mstate)
            nxt = jnp.argmax(jax.lax.dynamic_index_in_dim(scores, t, keepdims=False)).astype(buf.dtype)
            return (buf.at[t + 1].set(nxt), t + 1), None

        (buf, _), _ = jax.lax.scan(body, (buf, start), None, length=naive_tokens)
        return buf

    buf = jax.random.randint(key, (length,), 0, vocab, jnp.int32)
    start = jnp.asarray(length - naive_tokens - 1, jnp.int32)
    t_naive = timed(lambda: naive(net, buf, start))
    rec = (length - 1) / t_rec
    conv = naive_tokens / t_naive
    return {
        "model": model, "layer": layer, "length": length, "d_model": d_model, "d_state": d_state,
        "n_layers": n_layers, "vocab": vocab, "params": count_params(net), "backend": jax.default_backend(),
        "dtype": str(jnp.zeros(()).dtype), "recurrent_tokens_per_s": rec, "conv_tokens_per_s": conv,
        "ratio": rec / conv,
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
