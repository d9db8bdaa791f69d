"""Floors for the benchmark (``scripts/bench.py --suites step`` and the layers suite's floor ratio): the work a
train step or a layer must do, timed as bare primitives in the same process, interleaved with the real thing.

A preset's train step (forward, backward, AdamW update: ``ssm.train.step.make_train_step``) is set against

- **FFT convolutions**: per block, one convolution with a *given* kernel by real FFTs of size 2L along the
  contiguous last axis of a ``(B, H, L)`` array, gradients w.r.t. input, kernel and skip ``D``. A bidirectional
  layer's two kernels form one circular kernel of length 2L (what ``ssm.kernels.fft_conv`` does), so it costs one
  convolution of the same size, not two;
- **dense matmuls**: every ``Linear`` of the model at its shapes (encoder, each block's output projection,
  decoder; a tied LM decoder is ``x @ E^T``), with the gradients the step needs;
- **elementwise**: a plain re-statement of the rest of the block (norm, activation, dropout masks, GLU gate,
  residual), the final norm, pooling, the embedding gather and the loss, with no layout changes;
- **optimizer update**: the preset's own optax transformation and ``apply_updates`` on the model's parameters.

The floor is their sum. Not in it, shown beside it: the SSM kernels (each layer's ``kernel(L)`` forward and
backward), the model's own SSM layers (``jax.vmap(layer)``, gradients w.r.t. input and parameters) and the same
train step with every SSM layer replaced by the identity, so that the step splits into an SSM part
(step minus the no-SSM step) and the rest, each against its share of the floor.

Everything is compiled first (``jax.jit(...).lower(...).compile()``; the compile time of each is reported), then
timed in rounds, one call of every component per round in a fixed order (A, B, C, A, B, C, ...), and the
median per component is quoted. Times are wall-clock with ``jax.block_until_ready`` on every output;
process CPU time (all threads) is recorded too.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Dataset shapes for presets whose DatasetInfo needs the dataset's files (a vocabulary); only the embedding
# size depends on them. ListOps: 10 digits, 4 operators, "]", and <pad>/<unk>/<eos> (ssm.data.listops);
# WikiText: the dataset paper's vocabulary sizes (Merity et al. 2016).
VOCAB_WITHOUT_DATA = {"listops": 18, "wt2": 33278, "wt103": 267735}


# ------------------------------------------------------------------------------------------------- utilities


def commit() -> str:
    """``git describe``-like id of the working tree the benchmark runs from (``+dirty`` if modified)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def load() -> float:
    return round(os.getloadavg()[0], 2)


class Timed:
    """One component: ``prepare()`` builds the arguments of a call outside the timed region (e.g. a fresh batch
    for a step that donates it), ``run(args)`` makes the call and returns its outputs."""

    def __init__(self, run: Callable[[Any], Any], prepare: Callable[[], Any] = lambda: None):
        self.run, self.prepare = run, prepare


def compile_timed(fn, *args) -> tuple[Any, float]:
    """``(compiled, seconds)`` of ``fn.lower(*args).compile()``."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def interleave(components: dict[str, Timed], rounds: int) -> dict[str, dict[str, float]]:
    """Warm every component once, then ``rounds`` rounds of one call each in a fixed order; per component the
    median (and min) wall ms and median process-CPU ms."""
    import jax

    for c in components.values():
        jax.block_until_ready(c.run(c.prepare()))
    wall: dict[str, list[float]] = {n: [] for n in components}
    cpu: dict[str, list[float]] = {n: [] for n in components}
    for _ in range(rounds):
        for name, c in components.items():
            args = c.prepare()
            jax.block_until_ready(args)
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(c.run(args))
            wall[name].append((time.perf_counter() - t0) * 1e3)
            cpu[name].append((time.process_time() - c0) * 1e3)
    return {n: {"ms": statistics.median(wall[n]), "min_ms": min(wall[n]), "cpu_ms": statistics.median(cpu[n])}
            for n in components}


# --------------------------------------------------------------------------------------------- bare floors


def conv_loss(u, k, D, w):
    """``sum(w * y)`` of the causal (``k`` of length L) or circular (``k`` of length 2L: both directions of a
    bidirectional layer) FFT convolution of ``u (B, H, L)`` with ``k (H, Lk)`` plus ``D u``, in the layout
    where every FFT runs along the contiguous last axis."""
    import jax.numpy as jnp

    L = u.shape[-1]
    n = 2 * L
    y = jnp.fft.irfft(jnp.fft.rfft(u, n=n) * jnp.fft.rfft(k, n=n), n=n)[..., :L] + D[:, None] * u
    return jnp.sum(y * w)


def conv_floor(n: int, B: int, H: int, L: int, bidirectional: bool, key) -> tuple[Any, tuple]:
    """The jitted forward+backward (w.r.t. ``u``, ``k``, ``D``) of ``n`` blocks' convolutions (distinct inputs and
    kernels, so that nothing is shared between them), and its arguments."""
    import jax

    def loss(us, ks, Ds, ws):
        return sum(conv_loss(u, k, D, w) for u, k, D, w in zip(us, ks, Ds, ws))

    keys = jax.random.split(key, 3 * n)
    us = [jax.random.normal(keys[3 * i], (B, H, L)) for i in range(n)]
    ks = [jax.random.normal(keys[3 * i + 1], (H, 2 * L if bidirectional else L)) / L for i in range(n)]
    Ds = [jax.numpy.ones((H,)) for _ in range(n)]
    ws = [jax.random.normal(keys[3 * i + 2], (B, H, L)) for i in range(n)]
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))), (us, ks, Ds, ws)


def conv_gelu_floor(B: int, H: int, L: int, key) -> tuple[Any, tuple]:
    """The layers suite's floor: causal FFT convolution with a given kernel, skip ``D``, then GELU, in the
    ``(B, H, L)`` layout; forward+backward w.r.t. ``u``, ``k``, ``D``."""
    import jax
    import jax.numpy as jnp

    def loss(u, k, D, w):
        L = u.shape[-1]
        n = 2 * L
        y = jnp.fft.irfft(jnp.fft.rfft(u, n=n) * jnp.fft.rfft(k, n=n), n=n)[..., :L] + D[:, None] * u
        return jnp.sum(jax.nn.gelu(y, approximate=False) * w)

    ku, kk, kw = jax.random.split(key, 3)
    args = (jax.random.normal(ku, (B, H, L)), jax.random.normal(kk, (H, L)) / L, jnp.ones((H,)),
            jax.random.normal(kw, (B, H, L)))
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))), args


def matmul_shapes(cfg, info, B: int) -> list[tuple[str, int, int, int, bool, bool]]:
    """``(name, rows, d_in, d_out, bias, needs input gradient)`` of every dense matmul of the model's step."""
    m = cfg.model
    if getattr(m, "name", "residual") != "residual":
        raise ValueError(f"the step floor is written for the residual backbone (model:residual); {m.name!r} "
                         "(SaShiMi, adaptive LM, pooled) is not covered yet")
    H, L = m.d_model, info.seq_len
    n_seq = 2 if info.task == "retrieval" else 1
    rows = n_seq * B * L
    out = []
    if not info.tokens:
        out.append(("encoder", rows, info.d_input, H, True, False))
    width = {"glu": 2 * H, "linear": H}.get(m.output)
    if width is not None:
        out += [(f"block {i} {m.output}", rows, H, width, True, True) for i in range(m.n_layers)]
    if info.task == "retrieval":
        out += [("decoder mlp", B, 4 * H, H, True, True), ("decoder out", B, H, info.d_output, True, True)]
    elif m.pool == "none":
        out.append(("decoder (tied)" if m.tie_embeddings else "decoder", B * L, H, info.d_output,
                    not m.tie_embeddings, True))
    else:
        out.append(("decoder", B, H, info.d_output, True, True))
    return out


def matmul_floor(shapes, key) -> tuple[Any, tuple]:
    """All matmuls of ``shapes`` in one program, forward+backward (weights, biases, and inputs where needed)."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(key, 3 * len(shapes))
    xs, ws, gs = [], [], []
    for i, (_, rows, d_in, d_out, bias, _) in enumerate(shapes):
        xs.append(jax.random.normal(keys[3 * i], (rows, d_in)))
        ws.append((jax.random.normal(keys[3 * i + 1], (d_in, d_out)) / math.sqrt(d_in),
                   jnp.zeros((d_out,)) if bias else None))
        gs.append(jax.random.normal(keys[3 * i + 2], (rows, d_out)))
    need_dx = [s[5] for s in shapes]

    def loss(ws, xs_dx, xs_const, gs):
        total = 0.0
        it_dx, it_const = iter(xs_dx), iter(xs_const)
        for (W, b), dx, g in zip(ws, need_dx, gs):
            x = next(it_dx) if dx else next(it_const)
            y = x @ W if b is None else x @ W + b
            total = total + jnp.sum(y * g)
        return total

    xs_dx = [x for x, d in zip(xs, need_dx) if d]
    xs_const = [x for x, d in zip(xs, need_dx) if not d]
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (ws, xs_dx, xs_const, gs)


def elementwise_floor(cfg, info, B: int, key) -> tuple[Any, tuple]:
    """Everything of the step but the SSM layers, the matmuls and the optimizer, written plainly: per block the
    norm (LayerNorm over channels / BatchNorm over batch and time), the activation, the dropout masks (random
    bytes against a threshold, one 32-bit draw per four elements), the GLU gate (``a * sigmoid(b)``, with the
    matmul's two halves standing in as ``a = b = z``), the residual; the final norm, the pooling, the embedding
    gather (tokens) and the loss on logits of the decoder's shape. Forward+backward w.r.t. the activations, the
    norms' parameters, the embedding table and the logits."""
    import jax
    import jax.numpy as jnp

    m = cfg.model
    if getattr(m, "name", "residual") != "residual":
        raise ValueError(f"the step floor is written for the residual backbone (model:residual); {m.name!r} "
                         "(SaShiMi, adaptive LM, pooled) is not covered yet")
    H, L = m.d_model, info.seq_len
    Bn = (2 if info.task == "retrieval" else 1) * B
    train_dropout = m.dropout > 0

    def norm(x, p):
        if m.norm == "layer":
            mu = jnp.mean(x, -1, keepdims=True)
            var = jnp.mean((x - mu) ** 2, -1, keepdims=True)
        elif m.norm == "batch":
            mu = jnp.mean(x, (0, 1), keepdims=True)
            var = jnp.mean((x - mu) ** 2, (0, 1), keepdims=True)
        else:
            return x
        return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p[0] + p[1]

    def act(x):
        return {"gelu": lambda v: jax.nn.gelu(v, approximate=False), "relu": jax.nn.relu}.get(m.activation,
                                                                                             lambda v: v)(x)

    def dropout(x, k):
        if not train_dropout:
            return x
        shape = (x.shape[0], 1, x.shape[-1]) if m.tie_dropout else x.shape
        size = math.prod(shape)
        bits = jax.random.bits(k, ((size + 3) // 4,), jnp.uint32)
        octets = jax.lax.bitcast_convert_type(bits, jnp.uint8).reshape(-1)[:size].reshape(shape)
        t = min(round(m.dropout * 256), 255)
        return jnp.where(octets >= t, x * (256 / (256 - t)), 0.0)

    def loss(x, norms, table, logits, tokens, targets, w, k):
        if info.tokens:
            x = table[tokens]
        ks = jax.random.split(k, 2 * m.n_layers)
        for i in range(m.n_layers):
            z = norm(x, norms[i]) if m.prenorm else x
            z = dropout(act(z), ks[2 * i])
            if m.output == "glu":
                z = z * jax.nn.sigmoid(z)
            if m.output != "none":
                z = dropout(z, ks[2 * i + 1])
            z = z + x if m.residual else z
            x = z if m.prenorm else norm(z, norms[i])
        if m.prenorm:
            x = norm(x, norms[-1])
        if m.pool == "mean":
            x = jnp.mean(x, 1)
        elif m.pool == "last":
            x = x[:, -1]
        features = jnp.sum(x * w)
        if info.task == "regression":
            return features + jnp.mean((logits - targets) ** 2)
        logp = jax.nn.log_softmax(logits, -1)
        return features - jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))

    k = jax.random.split(key, 6)
    x = jax.random.normal(k[0], (Bn, L, H))
    norms = [(jnp.ones((H,)), jnp.zeros((H,))) for _ in range(m.n_layers + 1)]
    table = jax.random.normal(k[1], (info.d_input, H)) if info.tokens else jnp.zeros((1, H))
    tokens = jax.random.randint(k[2], (Bn, L), 0, info.d_input) if info.tokens else jnp.zeros((1, 1), jnp.int32)
    per_step = m.pool == "none"
    lshape = (B, L, info.d_output) if per_step else (B, info.d_output)
    logits = jax.random.normal(k[3], lshape)
    if info.task == "regression":
        targets = jax.random.normal(k[4], lshape)
    else:
        targets = jax.random.randint(k[4], lshape[:-1], 0, info.d_output)
    w = jax.random.normal(k[5], (Bn, L, H) if per_step else (Bn, H))
    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
    return fn, (x, norms, table, logits, tokens, targets, w, jax.random.key(7))


# ------------------------------------------------------------------------------------------- model surgery


def ssm_layers(model) -> list:
    """The SSM layers of ``model``, in order (a stacked layer counts once under ``scan_layers``)."""
    import jax

    from ssm.layers.base import AbstractSSMLayer

    is_layer = lambda n: isinstance(n, AbstractSSMLayer)  # noqa: E731
    return [n for n in jax.tree_util.tree_leaves(model, is_leaf=is_layer) if is_layer(n)]


def without_ssm(model):
    """``model`` with every SSM layer replaced by the identity (same call signature)."""
    import equinox as eqx
    import jax

    from ssm.layers.base import AbstractSSMLayer

    class Identity(eqx.Module):
        def __call__(self, u, *, rate=1.0):
            return u

    is_layer = lambda n: isinstance(n, AbstractSSMLayer)  # noqa: E731
    return jax.tree_util.tree_map(lambda n: Identity() if is_layer(n) else n, model, is_leaf=is_layer)
