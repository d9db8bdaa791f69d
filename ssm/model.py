"""The sequence-model backbone of the S4 papers around any SSM layer.

``SequenceModel``: encoder (linear for float inputs, embedding for tokens) -> ``n_layers`` residual
blocks -> (final norm if pre-norm) -> pooling (mean / last / none, masked by the true lengths) ->
decoder (linear; tied embedding for language models; for two-sequence retrieval the pooled features
``[a, b, a*b, a-b]`` go through a GELU MLP). A block is

    pre-norm:   x + drop(out(drop(act(SSM(norm(x))))))
    post-norm:  norm(x + drop(out(drop(act(SSM(x))))))

with ``out`` a Linear(H, 2H) + GLU, a Linear(H, H), or nothing. BatchNorm keeps running statistics
in an ``eqx.nn.State`` and normalises over the (global) batch and time, per channel, like
``BatchNorm1d`` on ``(B, H, L)``; it needs the per-example call to be vmapped with
``axis_name="batch"``. With ``scan_layers`` (blocks stacked along a leading layer axis, one block traced and
compiled under ``lax.scan``) the blocks' running statistics are stacked the same way in the state, ``(n_layers, H)``,
and scanned with the parameters. The model acts on ONE example; batch it with ``eqx.filter_vmap``.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ssm.config import ModelConfig
from ssm.data.base import DatasetInfo
from ssm.layer_norm import layer_norm
from ssm.layer_configs import LAYER_CONFIGS, LayerConfig, layer_config_class
from ssm.layers.base import AbstractSSMLayer
# Mixed precision lives in ssm.precision (one policy for every backbone); the short names are this module's.
from ssm.precision import cast_floats as _to_dtype
from ssm.precision import resolve_precision
from ssm.precision import widen as _wide
from ssm.random_bits import byte_dropout


def available_layers() -> "_Layers":
    """The layer names (``model.layer:NAME``) whose class is implemented in :mod:`ssm.layers`, mapped to the
    class. ``cfg.model.layer in available_layers()`` accepts a layer config as well as a name."""
    import ssm.layers

    out = _Layers()
    for c in LAYER_CONFIGS:
        cls = getattr(ssm.layers, c.layer_class, None)
        if cls is not None:
            out[c.name] = cls
    return out


class _Layers(dict):
    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.name if isinstance(key, LayerConfig) else key)


def layer_class(name: str | LayerConfig) -> type[AbstractSSMLayer]:
    cfg = name if isinstance(name, LayerConfig) else layer_config_class(name)()
    cls = available_layers().get(cfg.name)
    if cls is None:
        raise ValueError(f"model.layer: layer {cfg.name!r} (ssm.layers.{cfg.layer_class}) is not implemented in "
                         f"this installation; available: {sorted(available_layers())}")  # fmt: skip
    return cls


def make_layer(cfg: ModelConfig, *, key: PRNGKeyArray, seq_len: int | None = None) -> AbstractSSMLayer:
    """The layer of ``cfg`` (built by its layer config); options that default to the data's length (S4's
    ``l_max``) get the dataset's ``seq_len``."""
    layer_class(cfg.layer)  # a clear error if the class is missing
    return cfg.layer.build(cfg.d_model, key=key, seq_len=seq_len)


def _dropout(x: Array, rate: float, key: PRNGKeyArray | None, tie: bool) -> Array:
    """Inverted dropout on ``(L, H)``; ``tie`` shares one mask per channel over time.

    The mask compares random bytes with ``round(rate * 256)``, so the rate is rounded to a multiple of 1/256 (0.1
    drops 26/256 = 10.2%); kept values are scaled by the exact keep probability. The bytes are Threefry-2x32's, 8 per
    evaluation of the hash, written out so that XLA fuses it (:func:`ssm.random_bits.random_octets`): JAX's own
    ``jax.random.bits`` runs the hash as a rolled loop on CPU and keeps 32 of its 64 output bits. Each site's mask
    depends only on its key (per example, block and site: split from the step's key), so an example's masks do not
    depend on the batch it is in. ``jax.random.bernoulli`` masks took 76 ms fwd+bwd over a (16, 6400, 64) tensor
    on CPU, ``jax.random.bits`` bytes 8.9 ms (docs/benchmarks.md has the fused hash's measurements).
    """
    if key is None or rate == 0.0:
        return x
    return byte_dropout(x, rate, key, (1, x.shape[-1]) if tie else None)


def _activation(name: str, x: Array) -> Array:
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    if name == "relu":
        return jax.nn.relu(x)
    return x


class Norm(eqx.Module):
    """LayerNorm per time step, BatchNorm over (batch, time) per channel, or identity."""

    kind: str = eqx.field(static=True)
    ln: eqx.nn.LayerNorm | None
    bn: eqx.nn.BatchNorm | None

    def __init__(self, kind: str, d: int, momentum: float):
        self.kind = kind
        self.ln = eqx.nn.LayerNorm(d) if kind == "layer" else None
        self.bn = (
            eqx.nn.BatchNorm(d, axis_name="batch", momentum=momentum, mode="batch")
            if kind == "batch"
            else None
        )

    def __call__(self, x: Array, state: eqx.nn.State) -> tuple[Array, eqx.nn.State]:
        # Statistics in at least float32; the output keeps the input's dtype.
        if self.ln is not None:
            return layer_norm(_wide(x), self.ln.weight, self.ln.bias, self.ln.eps).astype(x.dtype), state
        if self.bn is not None:
            y, state = _batch_norm(self.bn, _wide(x), state)
            return y.astype(x.dtype), state
        return x, state


def _batch_norm(bn: eqx.nn.BatchNorm, y: Array, state: eqx.nn.State) -> tuple[Array, eqx.nn.State]:
    """``bn`` (``mode="batch"``) applied to ``y`` ``(L, H)`` in that layout: the same statistics, running-state
    update and arithmetic as ``bn(y.T, state)``, in the same order (mean of the per-example means over the named
    batch axis, then the mean squared deviation from it, clipped at 0; inference: the zero-debiased running
    averages), without the two ``(L, H) <-> (H, L)`` transposes and the per-channel ``vmap`` of that call (which
    measured 3.5x a plain batch-statistics norm; this one cut ListOps' no-SSM step ~3x, docs/benchmarks.md)."""
    counter = state.get(bn.batch_counter)
    hidden_mean, hidden_var = state.get(bn.batch_state_index)
    if bn.inference:
        scale = jnp.where(counter == 0, 1, 1 - bn.momentum**counter)
        mean, var = hidden_mean / scale, hidden_var / scale
    else:
        mean = jax.lax.pmean(jnp.mean(y, axis=0), bn.axis_name)
        dev = y - mean
        var = jnp.maximum(0.0, jax.lax.pmean(jnp.mean(dev * dev, axis=0), bn.axis_name))
        state = state.set(bn.batch_counter, counter + 1)
        state = state.set(
            bn.batch_state_index,
            (hidden_mean * bn.momentum + mean * (1 - bn.momentum), hidden_var * bn.momentum + var * (1 - bn.momentum)),
        )
    out = (y - mean) / jnp.sqrt(var + bn.eps)
    if bn.channelwise_affine:
        out = out * bn.weight + bn.bias
    return out, state


class Block(eqx.Module):
    """One residual block around an SSM layer (see the module docstring)."""

    layer: AbstractSSMLayer
    norm: Norm
    out: eqx.nn.Linear | None
    prenorm: bool = eqx.field(static=True)
    residual: bool = eqx.field(static=True)
    output: str = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    tie_dropout: bool = eqx.field(static=True)

    def __init__(self, cfg: ModelConfig, *, key: PRNGKeyArray, seq_len: int | None = None):
        k_layer, k_out = jax.random.split(key)
        h = cfg.d_model
        self.layer = make_layer(cfg, key=k_layer, seq_len=seq_len)
        self.norm = Norm(cfg.norm, h, cfg.bn_momentum)
        if cfg.output == "glu":
            self.out = eqx.nn.Linear(h, 2 * h, key=k_out)
        elif cfg.output == "linear":
            self.out = eqx.nn.Linear(h, h, key=k_out)
        else:
            self.out = None
        self.prenorm = cfg.prenorm
        self.residual = cfg.residual
        self.output = cfg.output
        self.activation = cfg.activation
        self.dropout = cfg.dropout
        self.tie_dropout = cfg.tie_dropout

    def __call__(
        self,
        x: Array,
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        rate: float = 1.0,
        valid: Array | None = None,
    ) -> tuple[Array, eqx.nn.State]:
        """``valid`` (``(L, 1)`` bool, optional): the steps before the example's true length. Padding is
        zeroed at the SSM's input, so a bidirectional layer's outputs on the real steps do not depend on
        how much padding follows (a causal layer's never do)."""
        k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
        z = x
        if self.prenorm:
            z, state = self.norm(z, state)
        if valid is not None:
            z = jnp.where(valid, z, jnp.zeros((), z.dtype))
        # The block computes in the residual stream's dtype (bfloat16 under mixed precision), except the SSM
        # layer: its kernel and FFT convolution run in at least float32.
        z = self.layer(_wide(z), rate=rate).astype(x.dtype)
        z = _dropout(_activation(self.activation, z), self.dropout, k1, self.tie_dropout)
        if self.out is not None:
            # One (L, H) @ (H, H') product: a vmapped Linear (W z_t per step) made XLA compute (H', L) and transpose
            # it back, forward and backward.
            z = z @ self.out.weight.T.astype(x.dtype)
            if self.out.bias is not None:
                z = z + self.out.bias.astype(x.dtype)
            if self.output == "glu":
                z = jax.nn.glu(z, axis=-1)
            z = _dropout(z, self.dropout, k2, self.tie_dropout)
        if self.residual:
            z = z + x
        if not self.prenorm:
            z, state = self.norm(z, state)
        return z, state

    # Recurrent (inference) mode -------------------------------------------------------------------------------
    # The block's own body (``__call__``: norms, activation, output map, residual) runs around the layer's
    # ``prefill``/``step``: the layer is swapped for a :class:`_Tap`, so the recurrent modes cannot drift from the
    # convolutional one. ``__call__`` must therefore call ``self.layer`` exactly once. ``model_state`` is the
    # ``eqx.nn.State`` of BatchNorm (read in inference mode); ``state`` is the layer's recurrent state.

    def init_state(self, *, rate: float = 1.0) -> PyTree[Array]:
        """The layer's zero recurrent state."""
        return self.layer.init_state(rate=rate)

    def prefill(
        self, x: Float[Array, "L H"], model_state: eqx.nn.State, state: PyTree[Array] | None = None, *,
        rate: float = 1.0,
    ) -> tuple[Float[Array, "L H"], PyTree[Array]]:
        """Outputs over a prefix in one parallel call (the layer's ``prefill``) and the recurrent state after it,
        from ``state`` (the zero state if None). Equal to ``__call__`` without dropout, and to :meth:`step` run
        over ``x``."""
        return self._tapped(x, model_state, state, "prefill", rate)

    def step(
        self, x_t: Float[Array, " H"], model_state: eqx.nn.State, state: PyTree[Array], *, rate: float = 1.0
    ) -> tuple[Float[Array, " H"], PyTree[Array]]:
        """One time step in recurrent mode (the layer's ``step``): ``(y_t, new_state)``."""
        y, state = self._tapped(x_t[None], model_state, state, "step", rate)
        return y[0], state

    def _tapped(self, x: Array, model_state: eqx.nn.State, state: Any, mode: str, rate: float) -> tuple[Array, Any]:
        sink: list = []
        tapped = eqx.tree_at(lambda b: b.layer, self, _Tap(self.layer, state, mode, sink))
        y, _ = tapped(x, model_state, key=None, rate=rate)
        return y, sink[0]


class _Tap(eqx.Module):
    """Stands in for a block's SSM layer: runs the layer's ``prefill`` (on ``(L, H)``) or ``step`` (on ``(1, H)``)
    from ``state`` and appends the new state to ``sink``, a plain list filled and read within one trace
    (:meth:`Block._tapped`), so the state never leaves its trace."""

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


def _pool(x: Array, mode: str, length: Array | None) -> Array:
    """``(L, H) -> (H,)`` (mean, last) or ``(L, H)`` (none), over the first ``length`` steps."""
    if mode == "none":
        return x
    n = x.shape[0] if length is None else length
    if mode == "last":
        return x[jnp.asarray(n) - 1]
    if length is None:
        return jnp.mean(x, axis=0)
    mask = (jnp.arange(x.shape[0]) < length)[:, None]
    return jnp.sum(jnp.where(mask, x, 0.0), axis=0) / jnp.maximum(length, 1)


class SequenceModel(eqx.Module):
    """Encoder -> residual SSM blocks -> pooling -> decoder, on one example.

    ``model(inputs, state, key=..., lengths=..., inputs2=..., lengths2=...)`` returns
    ``(outputs, state)``: logits ``(d_output,)`` (pooled) or ``(L, d_output)`` (``pool="none"``).
    """

    encoder: eqx.nn.Linear | eqx.nn.Embedding
    blocks: tuple[Block, ...] | Block  # a stacked Block (leading layer axis) when scan_layers
    final_norm: Norm | None
    decoder: eqx.nn.Linear | eqx.nn.MLP | None
    pool: str = eqx.field(static=True)
    tokens: bool = eqx.field(static=True)
    retrieval: bool = eqx.field(static=True)
    scan_layers: bool = eqx.field(static=True)
    n_layers: int = eqx.field(static=True)
    mask_padding: bool = eqx.field(static=True)
    precision: str = eqx.field(static=True, default="float32")  # "float32" | "mixed" (resolved, see ModelConfig)

    def __init__(self, cfg: ModelConfig, info: DatasetInfo, *, key: PRNGKeyArray):
        k_enc, k_blocks, k_dec = jax.random.split(key, 3)
        h = cfg.d_model
        self.tokens = info.tokens
        self.retrieval = info.task == "retrieval"
        self.pool = cfg.pool
        self.scan_layers = cfg.scan_layers
        self.n_layers = cfg.n_layers
        self.mask_padding = cfg.mask_padding
        self.precision = resolve_precision(cfg.precision)
        if info.task in ("lm", "generation") and cfg.pool != "none":
            raise ValueError(f"model.pool must be 'none' for the {info.task!r} task (got {cfg.pool!r}): "
                             "pass --model.pool none")  # fmt: skip
        if self.retrieval and cfg.pool == "none":
            raise ValueError("model.pool must be 'mean' or 'last' for retrieval: pass --model.pool mean")
        self.encoder = (
            eqx.nn.Embedding(info.d_input, h, key=k_enc) if info.tokens else eqx.nn.Linear(info.d_input, h, key=k_enc)
        )
        keys = jax.random.split(k_blocks, cfg.n_layers)
        if cfg.scan_layers:
            self.blocks = eqx.filter_vmap(lambda k: Block(cfg, key=k, seq_len=info.seq_len))(keys)
        else:
            self.blocks = tuple(Block(cfg, key=k, seq_len=info.seq_len) for k in keys)
        self.final_norm = Norm(cfg.norm, h, cfg.bn_momentum) if cfg.prenorm else None
        if cfg.tie_embeddings:
            if not info.tokens or info.d_input != info.d_output:
                raise ValueError("model.tie_embeddings needs token inputs with d_input == d_output (an LM)")
            self.decoder = None
        elif self.retrieval:
            self.decoder = eqx.nn.MLP(4 * h, info.d_output, h, 1, activation=jax.nn.gelu, key=k_dec)
        else:
            self.decoder = eqx.nn.Linear(h, info.d_output, key=k_dec)

    def features(
        self,
        inputs: Array,
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        rate: float = 1.0,
        lengths: Array | None = None,
    ) -> tuple[Array, eqx.nn.State]:
        """``(L,)`` tokens or ``(L, C)`` floats -> ``(L, H)`` after the block stack (bfloat16 under mixed
        precision). With ``lengths`` (the true length) and ``mask_padding``, the features of the real steps
        do not depend on the padding after them, so batches cut to their longest example give the same
        results."""
        x = self._encode(inputs)
        keys = [None] * self.n_layers if key is None else list(jax.random.split(key, self.n_layers))
        valid = None if lengths is None or not self.mask_padding else (jnp.arange(x.shape[0]) < lengths)[:, None]
        if self.scan_layers:
            # The blocks' state (BatchNorm's running statistics, built stacked by the vmapped constructor) is
            # scanned with the parameters: each step reads its own layer's slice and writes the updated slice.
            params, static = eqx.partition(self.blocks, eqx.is_array)
            ks = None if key is None else jnp.stack(keys)

            def body(h, xs):
                p, k, s = xs
                return eqx.combine(p, static)(h, s, key=k, rate=rate, valid=valid)

            x, per_layer = jax.lax.scan(body, x, (params, ks, state.substate(self.blocks)))
            # ``update`` invalidates the State it is called on: a copy keeps the caller's valid, as the unrolled
            # blocks do in inference mode (they never write it), e.g. an eager model(x, state) called twice.
            leaves, treedef = jax.tree_util.tree_flatten(state)
            state = jax.tree_util.tree_unflatten(treedef, leaves).update(per_layer)
        else:
            for block, k in zip(self.blocks, keys):
                x, state = block(x, state, key=k, rate=rate, valid=valid)
        if self.final_norm is not None:
            x, state = self.final_norm(x, state)
        return x, state

    def __call__(
        self,
        inputs: Array,
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        lengths: Array | None = None,
        inputs2: Array | None = None,
        lengths2: Array | None = None,
        rate: float = 1.0,
    ) -> tuple[Array, eqx.nn.State]:
        k1, k2 = (None, None) if key is None else tuple(jax.random.split(key))
        x, state = self.features(inputs, state, key=k1, rate=rate, lengths=lengths)
        x = _pool(x, self.pool, lengths)
        if self.retrieval:
            if inputs2 is None:
                raise ValueError("retrieval model needs 'inputs2' in the batch")
            x2, state = self.features(inputs2, state, key=k2, rate=rate, lengths=lengths2)
            x2 = _pool(x2, self.pool, lengths2)
            x = jnp.concatenate([x, x2, x * x2, x - x2])
        return self._decode(x), state

    def _encode(self, inputs: Array) -> Array:
        """Tokens ``(L,)`` or floats ``(L, C)`` -> ``(L, H)``, in bfloat16 under mixed precision."""
        enc, x = self.encoder, inputs
        if self.precision == "mixed":
            enc = _to_dtype(enc, jnp.bfloat16)
            x = x if self.tokens else x.astype(jnp.bfloat16)
        if not self.tokens and x.shape[-1] == 1:
            # One input channel (pixels, audio): the product x_t·w written as a broadcast, the same numbers as the
            # matmul. As a vmapped (or (L, 1) @ (1, H)) matmul, the weight's gradient Σ_t dY_t x_t made XLA:CPU
            # transpose dY to (H, L), and it fused the whole backward residual chain into that transposing loop
            # (lra.pathx, batch 2: 0.43 s of CPU per step, the step 11 % slower; docs/benchmarks.md).
            y = x * enc.weight[:, 0]
            return y if enc.bias is None else y + enc.bias
        return jax.vmap(enc)(x)

    def _decode(self, x: Array) -> Array:
        """Features ``(L, H)`` or pooled ``(H,)`` (retrieval: ``(4H,)``) -> outputs. The decoder multiplies in the
        features' dtype (bfloat16 under mixed precision); the outputs come back in the parameters' dtype."""
        out_dtype = self.encoder.weight.dtype
        decoder = _to_dtype(self.decoder, x.dtype)
        if decoder is None:
            return (x @ self.encoder.weight.T.astype(x.dtype)).astype(out_dtype)
        if x.ndim == 2:
            return jax.vmap(decoder)(x).astype(out_dtype)
        return decoder(x).astype(out_dtype)

    # Recurrent (inference) mode: autoregressive generation (ssm.generate) -------------------------------------
    # For a causal per-position model (pool="none", not retrieval); the recurrent state of the whole model, the
    # *cache*, holds one layer state per block (one stacked entry when scan_layers). Run in inference mode
    # (eqx.nn.inference_mode): no dropout, BatchNorm's running statistics from ``model_state``.

    def init_state(self, *, rate: float = 1.0) -> PyTree[Array]:
        """Every block's zero recurrent state (the cache before any input)."""
        if self.scan_layers:
            return eqx.filter_vmap(lambda b: b.init_state(rate=rate))(self.blocks)
        return tuple(b.init_state(rate=rate) for b in self.blocks)

    def prefill(
        self, inputs: Int[Array, " L"] | Float[Array, "L C"], model_state: eqx.nn.State,
        cache: PyTree[Array] | None = None, *, rate: float = 1.0,
    ) -> tuple[Float[Array, "L V"], PyTree[Array]]:
        """Outputs ``(L, V)`` over a whole prefix and the cache after it, in one parallel call per block (from
        ``cache``, or from the zero state). Equals ``model(inputs, model_state)`` and :meth:`step` run over the
        inputs."""
        x, cache = self._through_blocks("prefill", self._encode(inputs), model_state, cache, rate)
        return self._decode(self._final_norm(x, model_state)), cache

    def step(
        self, token: Int[Array, ""] | Float[Array, " C"], model_state: eqx.nn.State, cache: PyTree[Array], *,
        rate: float = 1.0,
    ) -> tuple[Float[Array, " V"], PyTree[Array]]:
        """One input in recurrent mode (every block's ``step``): the outputs ``(V,)`` and the updated cache."""
        x, cache = self._through_blocks("step", self._encode(token[None])[0], model_state, cache, rate)
        return self._decode(self._final_norm(x[None], model_state))[0], cache

    def _through_blocks(
        self, method: str, x: Array, model_state: eqx.nn.State, cache: PyTree[Array] | None, rate: float
    ) -> tuple[Array, PyTree[Array]]:
        """Every block's ``prefill`` or ``step`` in turn (a scan over the stacked blocks with ``scan_layers``), each
        from its own cache entry (``None``: the zero state)."""
        if self.scan_layers:
            params, static = eqx.partition(self.blocks, eqx.is_array)

            def body(h, xs):
                p, c, s = xs  # s: this layer's slice of the stacked BatchNorm statistics
                return getattr(eqx.combine(p, static), method)(h, s, c, rate=rate)

            return jax.lax.scan(body, x, (params, cache, model_state.substate(self.blocks)))
        new = []
        for block, c in zip(self.blocks, (None,) * len(self.blocks) if cache is None else cache):
            x, c = getattr(block, method)(x, model_state, c, rate=rate)
            new.append(c)
        return x, tuple(new)

    def _final_norm(self, x: Array, model_state: eqx.nn.State) -> Array:
        return x if self.final_norm is None else self.final_norm(x, model_state)[0]


def make_model(cfg: Any, info: DatasetInfo, *, key: PRNGKeyArray) -> tuple[Any, eqx.nn.State]:
    """The model of the backbone config ``cfg`` and its initial state (BatchNorm running statistics; empty
    otherwise). A :class:`~ssm.config.ModelConfig` builds the residual :class:`SequenceModel`; the other backbone
    configs (``model:sashimi``, ``model:adaptive_lm``, ``model:pooled``) build their :mod:`ssm.nn` model wrapped
    in :class:`ssm.backbones.Backbone` (the same call signature).

    BatchNorm's running mean and variance start at zero, so that Equinox's zero-debiased average
    (hidden / (1 - momentum^count)) is exactly the debiased EMA of the batch statistics (Equinox
    starts the variance at one, which inflates it by momentum^count / (1 - momentum^count))."""
    if not isinstance(cfg, ModelConfig):
        from ssm.backbones import Backbone

        net = cfg.build(info, key=key)
        precision = resolve_precision(cfg.precision)
        model = Backbone(net, "log_probs" if hasattr(net, "log_probs") else "logits", precision)
        return model, eqx.nn.State(model)
    model, state = eqx.nn.make_with_state(SequenceModel)(cfg, info, key=key)
    is_bn = lambda n: isinstance(n, eqx.nn.BatchNorm)  # noqa: E731
    for bn in jax.tree_util.tree_leaves(model, is_leaf=is_bn):
        if is_bn(bn):
            mean, var = state.get(bn.batch_state_index)
            state = state.set(bn.batch_state_index, (jnp.zeros_like(mean), jnp.zeros_like(var)))
    return model, state


def count_params(model: Any) -> int:
    """Scalars in the arrays of ``model`` (also of an abstract one), as :func:`ssm.nn.count_params`."""
    from ssm.nn import count_params as count

    return count(model)
