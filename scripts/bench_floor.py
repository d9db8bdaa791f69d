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
from typing import Any, NamedTuple

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
    for a step that donates it), ``run(args)`` makes the call and returns its outputs. ``rewarm``: every timed call
    is preceded by one untimed call, so that it follows the same program, as a training loop's step follows the
    previous step, and not another program: on this CPU the SaShiMi step (``audio.sc09``, batch 2) took 4.0–4.2 s
    called back to back and 5.9–7.3 s right after other programs of the suite, in one process (the extra time is
    the process's own, mostly in the kernel; docs/benchmarks.md)."""

    def __init__(self, run: Callable[[Any], Any], prepare: Callable[[], Any] = lambda: None, rewarm: bool = False):
        self.run, self.prepare, self.rewarm = run, prepare, rewarm


def compile_timed(fn, *args) -> tuple[Any, float]:
    """``(compiled, seconds)`` of ``fn.lower(*args).compile()``."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def machine_cpu() -> tuple[float, float] | None:
    """``(busy, steal)`` seconds of the whole machine since boot, all CPUs (``/proc/stat``'s first line: busy =
    user + nice + system + irq + softirq; steal = time the hypervisor ran something else on our virtual CPUs), or
    ``None`` where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _own_cpu() -> tuple[float, float, int]:
    """This process's user and system CPU seconds and minor page faults."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def timed_call(c: Timed) -> dict[str, float | None]:
    """One call of ``c`` (arguments prepared outside the timed region): wall ms, this process's CPU ms (of which
    ``sys_ms`` in the kernel: page faults, thread wake-ups), its minor page faults (``minflt``: fresh pages of
    memory the call touched), and what disturbed it from outside: ``other_cpu_ms``, the CPU time every *other*
    process of the machine used meanwhile (another job on the 2 cores), and ``steal_ms``, the time the
    hypervisor took our virtual CPUs away (``None`` without ``/proc/stat``; both at the kernel's tick, 10 ms)."""
    import jax

    args = c.prepare()
    jax.block_until_ready(args)
    m0, o0 = machine_cpu(), _own_cpu()
    t0 = time.perf_counter()
    jax.block_until_ready(c.run(args))
    wall = (time.perf_counter() - t0) * 1e3
    m1, o1 = machine_cpu(), _own_cpu()
    # CPU and its system part from the same two getrusage readings, so that sys_ms <= cpu_ms always holds (read
    # over different windows, time.process_time() and getrusage once gave sys 0.118 > cpu 0.077 ms for a tiny call).
    cpu = (o1[0] + o1[1] - o0[0] - o0[1]) * 1e3
    other = steal = None
    if m0 is not None and m1 is not None:
        other = max(0.0, (m1[0] - m0[0]) - (o1[0] + o1[1] - o0[0] - o0[1])) * 1e3
        steal = (m1[1] - m0[1]) * 1e3
    return {"ms": wall, "cpu_ms": cpu, "sys_ms": (o1[1] - o0[1]) * 1e3, "minflt": o1[2] - o0[2],
            "other_cpu_ms": other, "steal_ms": steal}


def interleave(components: dict[str, Timed], rounds: int) -> dict[str, dict[str, Any]]:
    """Warm every component once, then ``rounds`` rounds of one timed call each in a fixed order (after an untimed
    one for a ``rewarm`` component); per component the
    median (and min) wall ms and median process-CPU ms, and every round's call (:func:`timed_call`) under
    ``"calls"``, so that a slow round can be told apart: disturbed from outside (other processes' CPU, steal) or
    not."""
    import jax

    for c in components.values():
        jax.block_until_ready(c.run(c.prepare()))
    calls: dict[str, list[dict]] = {n: [] for n in components}
    for _ in range(rounds):
        for name, c in components.items():
            if c.rewarm:
                jax.block_until_ready(c.run(c.prepare()))
            calls[name].append(timed_call(c))
    out = {}
    for n, cs in calls.items():
        wall = [x["ms"] for x in cs]
        out[n] = {"ms": statistics.median(wall), "min_ms": min(wall),
                  "cpu_ms": statistics.median(x["cpu_ms"] for x in cs), "calls": cs}
    return out


# --------------------------------------------------------------------------------------------- bare floors


def conv_loss(u, k, D, w):
    """``sum(w * y)`` of the causal (``k`` of length L) or circular (``k`` of length 2L: both directions of a
    bidirectional layer) FFT convolution of ``u (B, H, L)`` with ``k (H, Lk)`` plus ``D u``, in the layout
    where every FFT runs along the contiguous last axis. A complex ``k (H, L + 1)`` is the kernel's spectrum, given
    (a step in micro-batches takes each kernel's FFT once: ``ssm.train.shared_kernels``)."""
    import jax.numpy as jnp

    L = u.shape[-1]
    n = 2 * L
    kf = k if jnp.iscomplexobj(k) else jnp.fft.rfft(k, n=n)
    y = jnp.fft.irfft(jnp.fft.rfft(u, n=n) * kf, n=n)[..., :L] + D[:, None] * u
    return jnp.sum(y * w)


def conv_floor(n: int, B: int, H: int, L: int, bidirectional: bool, key) -> tuple[Any, tuple]:
    """The jitted forward+backward (w.r.t. ``u``, ``k``, ``D``) of ``n`` blocks' convolutions (distinct inputs and
    kernels, so that nothing is shared between them), and its arguments."""
    return conv_floor_shapes([(f"block {i}", B, H, L, bidirectional) for i in range(n)], key)


def conv_floor_shapes(convs, key, spectra: bool = False) -> tuple[Any, tuple]:
    """As :func:`conv_floor` for convolutions of different shapes: ``convs`` holds ``(name, B, H, L,
    bidirectional)`` per SSM layer (:func:`step_plan`). ``spectra``: each kernel given as its spectrum ``(H, L + 1)``
    (complex), its FFT left to :func:`kernel_fft_floor`."""
    import jax

    def loss(us, ks, Ds, ws):
        return sum(conv_loss(u, k, D, w) for u, k, D, w in zip(us, ks, Ds, ws))

    keys = jax.random.split(key, 3 * max(len(convs), 1))
    us, ks, Ds, ws = [], [], [], []
    for i, (_, B, H, L, bidirectional) in enumerate(convs):
        us.append(jax.random.normal(keys[3 * i], (B, H, L)))
        if spectra:
            ks.append(jax.random.normal(keys[3 * i + 1], (H, L + 1), jax.numpy.complex64))
        else:
            ks.append(jax.random.normal(keys[3 * i + 1], (H, 2 * L if bidirectional else L)) / L)
        Ds.append(jax.numpy.ones((H,)))
        ws.append(jax.random.normal(keys[3 * i + 2], (B, H, L)))
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))), (us, ks, Ds, ws)


def kernel_fft_floor(convs, key) -> tuple[Any, tuple]:
    """The jitted forward+backward of every SSM kernel's real FFT of size ``2L`` (``ssm.kernels.conv_spectrum``:
    of ``(H, L)``, or of the assembled ``(H, 2L)`` circular kernel of a bidirectional layer), which a step in
    micro-batches takes once per step: the part of :func:`conv_floor_shapes` that ``spectra=True`` leaves out."""
    import jax
    import jax.numpy as jnp

    def loss(ks, ws):
        return sum(jnp.sum(jnp.real(jnp.fft.rfft(k, n=2 * w.shape[-1] - 2) * w)) for k, w in zip(ks, ws))

    keys = jax.random.split(key, 2 * max(len(convs), 1))
    ks = [jax.random.normal(keys[2 * i], (H, 2 * L if bidirectional else L)) / L
          for i, (_, _, H, L, bidirectional) in enumerate(convs)]
    ws = [jax.random.normal(keys[2 * i + 1], (H, L + 1), jnp.complex64) for i, (_, _, H, L, _) in enumerate(convs)]
    return jax.jit(jax.value_and_grad(loss)), (ks, ws)


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
    """``(name, rows, d_in, d_out, bias, needs input gradient)`` of every dense matmul of the model's step (the
    :mod:`ssm.nn` backbones: :func:`step_plan`)."""
    m = cfg.model
    if m.name != "residual":
        return step_plan(cfg, info, B).matmuls
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
    """Everything of the step but the SSM layers, the matmuls and the optimizer. The :mod:`ssm.nn` backbones: the
    fused elementwise groups of :func:`step_plan` (:func:`groups_floor`). The residual backbone, written plainly
    as one chain: per block the
    norm (LayerNorm over channels / BatchNorm over batch and time), the activation, the dropout masks (random
    bytes against a threshold, drawn as the residual model draws them: ``ssm.random_bits.random_octets``), the GLU gate (``a * sigmoid(b)``, with the
    matmul's two halves standing in as ``a = b = z``), the residual; the final norm, the pooling, the embedding
    gather (tokens) and the loss on logits of the decoder's shape. Forward+backward w.r.t. the activations, the
    norms' parameters, the embedding table and the logits."""
    import jax
    import jax.numpy as jnp

    from ssm.random_bits import random_octets

    m = cfg.model
    if m.name != "residual":
        return groups_floor(step_plan(cfg, info, B).groups, key)
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
        # the model's own generator (fused Threefry bytes), one draw for the batch's mask
        octets = random_octets(k, math.prod(shape)).reshape(shape)
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


# ----------------------------------------------------------- the ssm.nn backbones: SaShiMi, adaptive LM, pooled
#
# One description per backbone (:func:`step_plan`), read off the model's structure in ``ssm/nn`` and its config:
# the SSM convolutions (one per SSM layer, at that layer's width and length), the dense matmuls, and the
# elementwise work as *groups*: the elementwise ops between two matmuls/FFTs, which XLA can fuse into one loop, on
# the shape they act on. One executor per component times them (conv_floor_shapes, matmul_floor, groups_floor).


class Plan(NamedTuple):
    """``convs``: ``(name, B, H, L, bidirectional)`` per SSM layer, in the order of :func:`ssm_layers`;
    ``matmuls``: ``(name, rows, d_in, d_out, bias, needs input gradient)``; ``groups``: ``(name, shape, ops)``,
    the ops of :func:`groups_floor` applied in turn to one input of ``shape``."""

    convs: list
    matmuls: list
    groups: list


def _norm_op(kind: str) -> tuple:
    """The ops of an ``ssm.nn.norm.make_norm`` kind ("layer", "scalar", "none")."""
    return {"layer": (("layernorm",),), "scalar": (("scalarnorm",),), "none": ()}[kind]


def _drop(rate: float) -> tuple:
    return (("dropout", rate),) if rate > 0 else ()


def _residual_block(plan: Plan, name: str, B: int, L: int, h: int, kind: str, *, norm: str, prenorm: bool,
                    dropout: float, dropres: float, expand: int = 2, after: tuple = ()) -> None:
    """One ``ssm.nn.Residual`` (pre-norm ``x + drop(F(norm(x)))``, post-norm ``norm(x + drop(F(x)))``) with ``F``
    an ``SSMMixer`` (``kind`` "glu": SSM -> GELU -> dropout -> Linear(h, 2h) -> GLU; "id": Linear(h, h)) or an
    ``FFN`` (``kind`` "ffn": Linear(h, e·h) -> GELU -> dropout -> Linear(e·h, h)); ``after``: ops that follow the
    block (the pooled backbone's pooling and dropout)."""
    rows, shape = B * L, (B, L, h)
    if prenorm and norm != "none":
        plan.groups.append((f"{name} norm", shape, _norm_op(norm)))
    tail = (*_drop(dropres), ("add",)) + (() if prenorm else _norm_op(norm)) + tuple(after)
    if kind == "ffn":
        plan.matmuls.append((f"{name} in", rows, h, expand * h, True, True))
        plan.groups.append((f"{name} GELU, dropout", (B, L, expand * h), (("gelu",), *_drop(dropout))))
        plan.matmuls.append((f"{name} out", rows, expand * h, h, True, True))
        plan.groups.append((f"{name} residual", shape, tail))
        return
    plan.convs.append((name, B, h, L, False))
    plan.groups.append((f"{name} GELU, dropout", shape, (("gelu",), *_drop(dropout))))
    plan.matmuls.append((f"{name} {kind}", rows, h, 2 * h if kind == "glu" else h, True, True))
    gate = (("glu",),) if kind == "glu" else ()
    plan.groups.append((f"{name} residual", (B, L, 2 * h) if kind == "glu" else shape, gate + tail))


def _sashimi_plan(m, info, B: int) -> Plan:
    """``ssm.nn.SaShiMiModel``: embedding gather -> DownPool per level -> centre stack (+ skip) -> per level
    UpPool (+ skip), stack (+ its input) -> LayerNorm -> Linear(d_model, classes) -> cross-entropy. Level ``i``
    runs at length ``L / (p₁…p_i)`` and width ``d_model · expand^i``."""
    plan = Plan([], [], [])
    L, V, n = info.seq_len, info.d_input, len(m.pool)
    widths = [m.d_model * m.expand**i for i in range(n + 1)]
    lengths = [L // math.prod(m.pool[:i]) for i in range(n + 1)]
    plan.groups.append(("embedding gather", (V, widths[0]), (("gather", B * L),)))
    for i, p in enumerate(m.pool):
        plan.matmuls.append((f"down {i}", B * lengths[i + 1], widths[i] * p, widths[i + 1], True, True))
        plan.matmuls.append((f"up {i}", B * lengths[i + 1], widths[i + 1], widths[i] * p, True, True))
        if m.weight_norm:
            plan.groups.append((f"down {i} weight norm", (widths[i + 1], widths[i] * p), (("rownorm",),)))
            plan.groups.append((f"up {i} weight norm", (widths[i] * p, widths[i + 1]), (("rownorm",),)))
        plan.groups.append((f"up {i} + skip", (B, lengths[i], widths[i]), (("add",),)))

    def stack(tag: str, level: int) -> None:
        for j in range(m.n_layers):
            common = dict(norm=m.norm, prenorm=m.prenorm, dropout=m.dropout, dropres=m.dropres)
            _residual_block(plan, f"{tag} {j} ssm", B, lengths[level], widths[level], "glu", **common)
            if m.ff > 0:
                _residual_block(plan, f"{tag} {j} ffn", B, lengths[level], widths[level], "ffn", expand=m.ff,
                                **common)
        plan.groups.append((f"{tag} + skip", (B, lengths[level], widths[level]), (("add",),)))

    stack("centre", n)  # the order of the model's fields: centre, then the up stacks from the outer level in
    for i in range(n):
        stack(f"up {i}", i)
    plan.groups.append(("final norm", (B, L, widths[0]), (("layernorm",),)))
    plan.matmuls.append(("decoder", B * L, widths[0], V, True, True))
    plan.groups.append(("loss", (B * L, V), (("xent",),)))
    return plan


def _adaptive_lm_plan(m, info, B: int) -> Plan:
    """``ssm.nn.AdaptiveLM`` through its targets-only loss (``AdaptiveLogSoftmax.scores``): adaptive embedding
    (every cluster looked up and projected at every position, the owner selected) -> ``n_layers`` × [SSM, SSM,
    FFN] pre-norm blocks -> LayerNorm -> per cluster the projection ``h P_i`` (dropout) and the logits of the whole
    cluster ``x W_iᵀ + b_i`` with their log-sum-exp and the target's logit, plus the head's cluster logits. The
    vocabulary rows count once (no padding to the block size, no recomputation in the backward pass)."""
    plan = Plan([], [], [])
    L, V, H, n = info.seq_len, info.d_input, m.d_model, B * info.seq_len
    ends = tuple(c for c in m.cutoffs if c < V) + (V,)
    sizes = [r - l for l, r in zip((0,) + ends[:-1], ends)]
    dims = [H if m.div_val == 1 else H // m.div_val**i for i in range(len(ends))]
    has_proj = m.div_val != 1  # d_proj = d_embed = d_model
    for i, (size, d) in enumerate(zip(sizes, dims)):
        plan.groups.append((f"embedding {i} gather, dropout", (size, d), (("gather", n), *_drop(m.dropemb))))
        if has_proj:
            plan.matmuls.append((f"embedding {i} projection", n, d, H, False, True))
            plan.groups.append((f"embedding {i} select", (B, L, H), (("add",),)))
    for j in range(m.n_layers):
        common = dict(norm="layer", prenorm=m.prenorm, dropout=m.dropout, dropres=m.dropout)
        _residual_block(plan, f"block {j} ssm a", B, L, H, "glu", **common)
        _residual_block(plan, f"block {j} ssm b", B, L, H, "glu", **common)
        _residual_block(plan, f"block {j} ffn", B, L, H, "ffn", expand=m.ff, **common)
    plan.groups.append(("final norm", (B, L, H), (("layernorm",),)))
    for i, (size, d) in enumerate(zip(sizes, dims)):
        if has_proj:
            plan.matmuls.append((f"softmax {i} projection", n, H, d, False, True))
            plan.groups.append((f"softmax {i} dropout", (B, L, d), _drop(m.dropsoft)))
        plan.matmuls.append((f"softmax {i} logits", n, d if has_proj else H, size, True, True))
        plan.groups.append((f"softmax {i} log-sum-exp", (n, size), (("lse",),)))
    if len(ends) > 1:
        plan.matmuls.append(("softmax cluster logits", n, dims[0] if has_proj else H, len(ends) - 1, True, True))
        plan.groups.append(("softmax cluster log-sum-exp", (n, len(ends) - 1), (("lse",),)))
    return plan


def _pooled_plan(m, info, B: int) -> Plan:
    """``ssm.backbones.PooledClassifier``: encoder (Linear, or a gather for tokens) -> ``n_layers`` residual
    blocks (SSM -> GELU -> dropout -> Linear(H, H), post- or pre-norm), each followed by ``AvgPool(k)`` where
    S4Torch's schedule allows it and dropout -> mean over time -> Linear(H, classes) -> cross-entropy."""
    from ssm.nn.pooled import s4torch_schedule

    plan = Plan([], [], [])
    L, H = info.seq_len, m.d_model
    if info.tokens:
        plan.groups.append(("embedding gather", (info.d_input, H), (("gather", B * L),)))
    else:
        plan.matmuls.append(("encoder", B * L, info.d_input, H, True, False))
    for j, (_, pool_ok) in enumerate(s4torch_schedule(m.n_layers, L, m.pool_kernel)[: m.n_layers]):
        use_pool = m.pool_kernel is not None and pool_ok
        after = ((("avgpool", m.pool_kernel),) if use_pool else ()) + _drop(m.dropout)
        _residual_block(plan, f"block {j}", B, L, H, "id", norm=m.norm, prenorm=m.norm_strategy == "pre",
                        dropout=m.dropout, dropres=0.0, after=after)
        L = L // m.pool_kernel if use_pool else L
    plan.groups.append(("mean over time", (B, L, H), (("mean_time",),)))
    plan.matmuls.append(("decoder", B, H, info.d_output, True, True))
    plan.groups.append(("loss", (B, info.d_output), (("xent",),)))
    return plan


def step_plan(cfg, info, B: int) -> Plan:
    """The floor's bookkeeping of the preset's step at batch ``B``: SSM convolutions, matmuls and elementwise
    groups. The residual backbone (``model:residual``): its convolutions and matmuls (its elementwise floor is
    :func:`elementwise_floor`'s chain, ``groups`` empty)."""
    m = cfg.model
    if m.name == "residual":
        Bn = (2 if info.task == "retrieval" else 1) * B
        bidirectional = bool(m.bidirectional)
        convs = [(f"block {i}", Bn, m.d_model, info.seq_len, bidirectional) for i in range(m.n_layers)]
        return Plan(convs, matmul_shapes(cfg, info, B), [])
    plans = {"sashimi": _sashimi_plan, "adaptive_lm": _adaptive_lm_plan, "pooled": _pooled_plan}
    if m.name not in plans:
        raise ValueError(f"the step floor knows the backbones {['residual', *plans]}, not {m.name!r}: add its "
                         "plan to scripts/bench_floor.py (step_plan)")
    return plans[m.name](m, info, B)


def describe(cfg) -> dict:
    """The fields of the step table's title: the backbone, its size and options (``size``: one line)."""
    m = cfg.model
    layer = m.layer
    out = {"backbone": m.name, "layer": str(layer), "n_layers": m.n_layers, "d_model": m.d_model,
           "d_state": layer.d_state, "bidirectional": bool(getattr(layer, "bidirectional", False))}
    if m.name == "residual":
        out.update(norm=m.norm, prenorm=m.prenorm, dropout=m.dropout, output=m.output, pool=m.pool,
                   scan_layers=m.scan_layers)
        return out
    if m.name == "sashimi":
        size = (f"SaShiMi d_model {m.d_model}, pool {list(m.pool)}, expand {m.expand}, {m.n_layers} x [{out['layer']}"
                f" N={out['d_state']}" + (f", FFN x{m.ff}]" if m.ff else "]") + f" per stage, {m.norm}norm"
                + f", dropout {m.dropout}/{m.dropres}" + (", weight norm" if m.weight_norm else ""))
    elif m.name == "adaptive_lm":
        size = (f"adaptive LM {m.n_layers} x [{out['layer']}, {out['layer']}, FFN x{m.ff}] x {m.d_model} "
                f"N={out['d_state']}, cutoffs {list(m.cutoffs)} div_val {m.div_val}, dropout {m.dropout}, tied "
                f"{'weights' if m.tie_weights else '-'}/{'projs' if m.tie_projs else '-'}")
    else:
        size = (f"pooled {m.n_layers} x {m.d_model} {out['layer']} N={out['d_state']}, avg pool "
                f"{m.pool_kernel}, {m.norm}norm {m.norm_strategy}, dropout {m.dropout}")
    prenorm = getattr(m, "prenorm", getattr(m, "norm_strategy", "") == "pre")
    out.update(size=size, norm=getattr(m, "norm", "layer"), prenorm=bool(prenorm),
               dropout=m.dropout, output="linear" if m.name == "pooled" else "glu",
               pool="mean" if m.name == "pooled" else "none", scan_layers=False)
    return out


def _group_out_shape(shape: tuple, ops) -> tuple:
    for op in ops:
        if op[0] == "glu":
            shape = shape[:-1] + (shape[-1] // 2,)
        elif op[0] == "avgpool":
            shape = shape[:-2] + (shape[-2] // op[1], shape[-1])
        elif op[0] == "mean_time":
            shape = shape[:-2] + shape[-1:]
        elif op[0] == "gather":
            shape = (op[1], shape[-1])
        elif op[0] in ("xent", "lse"):
            shape = shape[:-1]
    return shape


def groups_floor(groups, key) -> tuple[Any, tuple]:
    """The elementwise groups of a :class:`Plan` in one program, forward+backward w.r.t. every group's input and
    the ops' parameters. Ops (on the last axis): ``layernorm`` (``torch.nn.LayerNorm``), ``scalarnorm``
    (``ssm.nn.ScalarLayerNorm``), ``gelu`` (exact), ``dropout`` (random bytes against a threshold, as
    :func:`elementwise_floor`), ``glu`` (``a·σ(b)``: halves the width), ``add`` (a residual or skip input),
    ``avgpool`` (windows of ``k`` steps on axis -2), ``mean_time`` (axis -2), ``rownorm`` (weight normalisation
    ``g v/‖v‖_row``), ``gather`` (rows of a table by token), ``xent`` (log-softmax, the target's term and the
    argmax of accuracy), ``lse`` (log-sum-exp, the target's logit and the maximum, as the adaptive softmax)."""
    import jax
    import jax.numpy as jnp

    from ssm.random_bits import random_octets

    def dropout(x, rate, k):
        octets = random_octets(k, math.prod(x.shape)).reshape(x.shape)
        t = min(round(rate * 256), 255)
        return jnp.where(octets >= t, x * (256 / (256 - t)), 0.0)

    def apply(op, x, p, c, k):
        kind = op[0]
        if kind == "layernorm":
            mu = jnp.mean(x, -1, keepdims=True)
            var = jnp.mean((x - mu) ** 2, -1, keepdims=True)
            return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p[0] + p[1]
        if kind == "scalarnorm":
            mu = jnp.mean(x, -1, keepdims=True)
            sd = jnp.sqrt(jnp.mean((x - mu) ** 2, -1, keepdims=True))
            return (p[1] / sd) * (x - mu + p[0])
        if kind == "gelu":
            return jax.nn.gelu(x, approximate=False)
        if kind == "dropout":
            return dropout(x, op[1], k)
        if kind == "glu":
            a, b = jnp.split(x, 2, axis=-1)
            return a * jax.nn.sigmoid(b)
        if kind == "add":
            return x + p
        if kind == "avgpool":
            n = x.shape[-2] // op[1]
            return jnp.mean(x[..., : n * op[1], :].reshape(*x.shape[:-2], n, op[1], x.shape[-1]), -2)
        if kind == "mean_time":
            return jnp.mean(x, -2)
        if kind == "rownorm":
            return p[:, None] * x / jnp.linalg.norm(x, axis=1, keepdims=True)
        if kind == "gather":
            return x[c]
        if kind == "xent":
            logp = jax.nn.log_softmax(x, -1)
            ce = -jnp.take_along_axis(logp, c[:, None], -1)[:, 0]
            return ce + jax.lax.stop_gradient((jnp.argmax(x, -1) == c).astype(x.dtype))
        if kind == "lse":
            zt = jnp.take_along_axis(x, c[:, None], -1)[:, 0]
            return jax.nn.logsumexp(x, -1) - zt + jax.lax.stop_gradient(jnp.max(x, -1))
        raise ValueError(f"groups_floor: unknown op {kind!r}")

    xs, ws, params, consts = [], [], [], []
    keys = jax.random.split(key, 3 * max(len(groups), 1))
    for g, (_, shape, ops) in enumerate(groups):
        xs.append(jax.random.normal(keys[3 * g], shape))
        ps, cs, cur = [], [], tuple(shape)
        for j, op in enumerate(ops):
            kj = jax.random.fold_in(keys[3 * g + 1], j)
            p = c = None
            if op[0] == "layernorm":
                p = (jnp.ones(cur[-1:]), jnp.zeros(cur[-1:]))
            elif op[0] == "scalarnorm":
                p = (jnp.zeros((1,)), jnp.ones((1,)))
            elif op[0] == "add":
                p = jax.random.normal(kj, cur)
            elif op[0] == "rownorm":
                p = jnp.ones(cur[:1])
            elif op[0] == "gather":
                c = jax.random.randint(kj, (op[1],), 0, cur[0])
            elif op[0] in ("xent", "lse"):
                c = jax.random.randint(kj, cur[:-1], 0, cur[-1])
            ps.append(p)
            cs.append(c)
            cur = _group_out_shape(cur, (op,))
        params.append(ps)
        consts.append(cs)
        ws.append(jax.random.normal(keys[3 * g + 2], cur))
    ops_of = [ops for _, _, ops in groups]

    def loss(xs, params, consts, ws, k):
        total = 0.0
        for g, (x, ps, cs, w, ops) in enumerate(zip(xs, params, consts, ws, ops_of)):
            for j, (op, p, c) in enumerate(zip(ops, ps, cs)):
                x = apply(op, x, p, c, jax.random.fold_in(k, 1000 * g + j))
            total = total + jnp.sum(x * w)
        return total

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (xs, params, consts, ws, jax.random.key(7))


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
