"""Benchmark suite: speed, compile time and peak memory of every layer, model throughput, compile time
of a deep train step, and recurrent generation speed.

    python scripts/bench.py [--suites layers models compile generation step precision]
                            [--layers S4 S4D DSS S5 HOPE] [--lengths 1024 4096 16384] [--floor-lengths 4096]
                            [--batch 8 --d-model 128 --d-state 64] [--repeats 7]
                            [--models mnist.smnist lra.pathx] [--model-batch B] [--model-steps 3]
                            [--model-set FIELD=VALUE ...]
                            [--compile-preset lra.pathx] [--gen-layers s4d] [--gen-length 4096]
                            [--precision float32|mixed] [--cfg PRESET ...] [--rounds 5] [--json FILE]

Suites (all but ``step`` by default):

- ``layers``: per (layer, length), forward and forward+backward time of ``jax.vmap(layer)`` over a batch
  (medians over ``--repeats`` runs after one warm-up run), compile time (``jit(...).lower(...).compile()``)
  and peak memory; then, per ``--floor-lengths`` length, every layer's forward+backward (gradients w.r.t. input
  and parameters, GELU after it) over a bare causal FFT convolution + GELU, all in one process, interleaved
  (``layer_floor_worker``);
- ``step``: per ``--cfg`` preset, its train step against its floor (FFT convolutions, dense matmuls,
  elementwise remainder, optimizer update; ``scripts/bench_floor.py``), with the same step without SSM layers,
  the SSM layers and their kernels beside it, all compiled and timed in ``--rounds`` interleaved rounds in one
  process (``step_worker``; each timed call of every component follows an untimed call of the same program, as
  a step follows a step in the training loop, unless ``--step-cold``); the batch is ``--model-batch`` or the
  preset's, model fields ``--model-set``;
- ``models``: whole-model training throughput (examples/s and tokens/s) of the model of each preset in
  ``--models`` (built from the preset registry ``configs/`` with :mod:`ssm.train`: model, optimizer and the
  jitted train step of the training loop), on synthetic batches of the preset's shapes, and the compile time
  of that step. ``--model-batch`` replaces the preset's batch (default: the preset's on an accelerator, 2 on
  CPU, where the presets' batches of 16K-token sequences do not fit in memory);
- ``compile``: compile time only of the train step of ``--compile-preset`` with its own norm (BatchNorm for the
  LRA presets), its ``n_layers`` blocks unrolled against ``model.scan_layers`` (one compiled block, ``lax.scan``
  over the stacked layers and their stacked BatchNorm statistics), alternated ``--compile-rounds`` times, then the
  same pair with LayerNorm;
- ``generation``: tokens/s of recurrent generation of ``--gen-length`` tokens against re-running the
  convolution over the whole buffer for each new token (:func:`ssm.generate.bench_generation`), for each of
  ``--gen-models``: the flat residual stack, SaShiMi (pooling layers streaming), the [S4, S4, FFN] adaptive LM.

Every configuration runs in its own Python process, so that its peak memory is its own: on CPU the
process's peak resident set size (``ru_maxrss``) is reported, together with the resident size just before
the first compilation (the JAX runtime, imports and parameters), so the difference is what the computation
itself needed; on an accelerator, the device allocator's ``peak_bytes_in_use``. Every result carries the
1-minute load average before and after it (``load_before``/``load_after``): on a shared machine, times are
only comparable at similar load.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

LAYERS = ("S4", "S4D", "DSS", "S5", "HOPE")
# Benchmarked variants of a layer: name -> (class name, constructor options).
LAYER_VARIANTS = {"S4-vandermonde": ("S4", {"kernel_form": "vandermonde"})}


def _layer_class(name: str) -> tuple[type, dict]:
    """The layer class of a name of LAYERS or LAYER_VARIANTS, and the variant's options."""
    import ssm

    cls_name, options = LAYER_VARIANTS.get(name, (name, {}))
    return getattr(ssm, cls_name), dict(options)
LENGTHS = (1024, 4096, 16384)
MODELS = ("mnist.smnist", "lra.pathx")
SUITES = ("layers", "models", "compile", "generation", "step", "precision")
DEFAULT_SUITES = ("layers", "models", "compile", "generation")  # step: opt in, one preset per --cfg
PRECISIONS = ("float32", "mixed")

# Make `import ssm` / `import configs` work when run as `python scripts/bench.py` from anywhere.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
_SCRIPTS = os.path.join(_ROOT, "scripts")  # bench_floor, also when this file is loaded by path (tests)
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)


def _rss_mib() -> float:
    """Current resident set size of this process, in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _median_ms(fn, args, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU time (all threads) per call, in ms.

    On a machine shared with other jobs the wall time is inflated by time slicing; the CPU time is
    the work done, and bounds the wall time of the same call on an idle machine from above."""
    import jax

    jax.block_until_ready(fn(*args))  # warm-up (compiled already; fills caches)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def _memory(result: dict, rss_before: float) -> dict:
    """Adds the peak memory of this process (see the module docstring) to ``result``."""
    import jax

    device = jax.devices()[0]
    result["platform"], result["device"] = device.platform, device.device_kind
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats is not None:
        result["peak_mib"] = stats.get("peak_bytes_in_use", 0) / 2**20
    else:
        result["peak_rss_mib"] = _peak_rss_mib()
        result["rss_before_compute_mib"] = rss_before
        result["peak_mib"] = result["peak_rss_mib"] - rss_before
    return result


def _device(result: dict) -> dict:
    """Adds the device and the whole process's peak memory (RSS on CPU, the allocator's peak on an accelerator):
    the interleaved suites hold many programs at once, so no per-computation growth is meaningful there."""
    import jax

    device = jax.devices()[0]
    result["platform"], result["device"] = device.platform, device.device_kind
    stats = device.memory_stats() if device.platform != "cpu" else None
    result["process_peak_mib"] = stats.get("peak_bytes_in_use", 0) / 2**20 if stats else _peak_rss_mib()
    return result


# ------------------------------------------------------------------------------------------------ layers


def layer_worker(name: str, length: int, batch: int, d_model: int, d_state: int,
                 repeats: int, dtype: str) -> dict:
    """Measure one layer configuration in this process."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    load_before = _load()
    cls, options = _layer_class(name)
    # S4's output parameter is set up for a maximum length l_max: build it for this length.
    options |= {"l_max": length} if "l_max" in inspect.signature(cls.__init__).parameters else {}
    layer = cls(d_model=d_model, d_state=d_state, key=jax.random.key(0), **options)
    u = jax.random.normal(jax.random.key(1), (batch, length, d_model), dtype=jnp.dtype(dtype))
    params, static = eqx.partition(layer, eqx.is_array)

    def forward(params, u):
        model = eqx.combine(params, static)
        return jax.vmap(model)(u)

    def loss(params, u):
        return jnp.mean(forward(params, u) ** 2)

    fwd = jax.jit(forward)
    fwd_bwd = jax.jit(jax.value_and_grad(loss))
    rss_before = _rss_mib()

    t0 = time.perf_counter()
    fwd_compiled = fwd.lower(params, u).compile()
    compile_fwd_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fwd_bwd_compiled = fwd_bwd.lower(params, u).compile()
    compile_fwd_bwd_s = time.perf_counter() - t0

    fwd_ms, fwd_cpu_ms = _median_ms(fwd_compiled, (params, u), repeats)
    fwd_bwd_ms, fwd_bwd_cpu_ms = _median_ms(fwd_bwd_compiled, (params, u), repeats)
    mem = fwd_bwd_compiled.memory_analysis()
    result = {
        "layer": name, "L": length, "batch": batch, "d_model": d_model, "d_state": d_state,
        "dtype": dtype, "fwd_ms": fwd_ms, "fwd_bwd_ms": fwd_bwd_ms,
        "fwd_cpu_ms": fwd_cpu_ms, "fwd_bwd_cpu_ms": fwd_bwd_cpu_ms,
        "xla_temp_mib": mem.temp_size_in_bytes / 2**20 if mem is not None else None,
        "compile_fwd_s": compile_fwd_s, "compile_fwd_bwd_s": compile_fwd_bwd_s,
        "tokens_per_s_fwd_bwd": batch * length / (fwd_bwd_ms / 1e3),
        "load_before": load_before, "load_after": _load(),
    }
    return _memory(result, rss_before)


def layer_floor_worker(names: list[str], length: int, batch: int, d_model: int, d_state: int,
                       rounds: int) -> dict:
    """One layer forward+backward (gradients w.r.t. input and parameters, GELU after the layer) against a bare
    causal FFT convolution with a given kernel + GELU in the ``(B, H, L)`` layout, all interleaved in this
    process (``bench_floor.conv_gelu_floor``)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import bench_floor as bf

    load_before = _load()
    u = jax.random.normal(jax.random.key(1), (batch, length, d_model))
    w = jax.random.normal(jax.random.key(2), (batch, length, d_model))
    components, compile_s = {}, {}

    def add(name, fn, args):
        compiled, compile_s[name] = bf.compile_timed(fn, *args)
        components[name] = bf.Timed(lambda _: compiled(*args))

    fn, args = bf.conv_gelu_floor(batch, d_model, length, jax.random.key(3))
    add("floor", fn, args)
    for name in names:
        cls, options = _layer_class(name)
        options |= {"l_max": length} if "l_max" in inspect.signature(cls.__init__).parameters else {}
        params, static = eqx.partition(cls(d_model=d_model, d_state=d_state, key=jax.random.key(0), **options),
                                       eqx.is_array)

        def loss(p, u, w, static=static):
            return jnp.sum(jax.nn.gelu(jax.vmap(eqx.combine(p, static))(u), approximate=False) * w)

        add(name, jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (params, u, w))
    times = bf.interleave(components, rounds)
    floor = times["floor"]["ms"]
    rows = [{"layer": n, "ms": times[n]["ms"], "cpu_ms": times[n]["cpu_ms"], "compile_s": compile_s[n],
             "ratio": times[n]["ms"] / floor} for n in names]
    result = {"suite": "layer_floor", "L": length, "batch": batch, "d_model": d_model, "d_state": d_state,
              "rounds": rounds, "floor_ms": floor, "floor_cpu_ms": times["floor"]["cpu_ms"], "rows": rows,
              "commit": bf.commit(), "load_before": load_before, "load_after": _load()}
    return _device(result)


def format_layer_floor_table(r: dict) -> str:
    if "error" in r:
        return f"layer floor L={r.get('L')}: error: {r['error']}"
    lines = [f"One layer fwd+bwd (grads w.r.t. input and parameters, + GELU) / bare causal FFT conv + GELU in the "
             f"(B, H, L) layout: B {r['batch']}, H {r['d_model']}, N {r['d_state']}, L {r['L']}",
             f"  commit {r['commit']}  load {_load_col(r)}  median of {r['rounds']} interleaved rounds"
             + (f"\n  command: {r['command']}" if r.get("command") else ""),
             f"  {'layer':<8} {'median ms':>10} {'cpu ms':>9} {'x floor':>8}",
             f"  {'floor':<8} {r['floor_ms']:>10.1f} {r['floor_cpu_ms']:>9.1f} {1.0:>8.2f}"]
    lines += [f"  {x['layer']:<8} {x['ms']:>10.1f} {x['cpu_ms']:>9.1f} {x['ratio']:>8.2f}" for x in r["rows"]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ models


def _model_setup(preset: str, *, batch: int | None, overrides: dict, precision: str, grad_accum: int | None = None):
    """``(cfg, info, tx, train_step, state, numpy batch)`` of ``preset``'s model and training step,
    with ``overrides`` of ``model.*`` fields, ``grad_accum`` micro-batches (None: the preset's) and a synthetic
    batch of the dataset's shapes."""
    import dataclasses

    import equinox as eqx
    import jax
    import numpy as np

    import configs
    from ssm.model import make_model
    from ssm.train.optimizer import make_optimizer
    from ssm.train.state import init_state
    from ssm.train.step import make_train_step

    cfg = configs.get_preset(preset)
    model_over = dict(overrides)
    if precision != "float32":
        model_over["precision"] = precision
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, **model_over),
        data=dataclasses.replace(cfg.data, batch_size=batch or cfg.data.batch_size),
        optim=dataclasses.replace(cfg.optim, grad_accum=grad_accum or cfg.optim.grad_accum),
    )
    info = dataset_info(cfg)
    abstract_model = eqx.filter_eval_shape(make_model, cfg.model, info, key=jax.random.PRNGKey(0))[0]
    tx, _ = make_optimizer(abstract_model, cfg.optim, cfg.train.steps)
    state = init_state(cfg.model, info, tx, jax.random.PRNGKey(0))
    train_step = make_train_step(tx, info.task, cfg.optim.grad_accum)
    # Only a regression batch depends on the pooling; the ssm.nn backbones' configs have no ``pool`` field.
    pool = cfg.model.pool if cfg.model.name == "residual" else "mean"
    return cfg, info, tx, train_step, state, synthetic_batch(info, cfg.data.batch_size, pool,
                                                            np.random.default_rng(0))


def dataset_info(cfg):
    """The preset's ``DatasetInfo``; for datasets whose info reads a vocabulary from files that are not here, the
    same shapes with the vocabulary size of ``bench_floor.VOCAB_WITHOUT_DATA`` (only the embedding depends on it)."""
    from ssm.data import get_dataset
    from ssm.data._files import DatasetNotFoundError

    from bench_floor import VOCAB_WITHOUT_DATA

    module = get_dataset(cfg.data.name)
    try:
        return module.info(cfg.data)
    except DatasetNotFoundError:
        if cfg.data.name not in VOCAB_WITHOUT_DATA:
            raise
    # The shapes the loader would give, from a tiny stand-in vocabulary of the right size.
    vocab = [f"<{i}>" for i in range(VOCAB_WITHOUT_DATA[cfg.data.name])]
    seq_len = getattr(cfg.data, "seq_len", None) or getattr(module, "SEQ_LEN", None)
    if isinstance(seq_len, dict):
        seq_len = seq_len.get(cfg.data.name)
    if not seq_len:
        raise SystemExit(f"bench.py: the {cfg.data.name!r} files are not here and the preset sets no data.seq_len; "
                         "point $DATA_PATH at the dataset or use a preset that sets it")
    from ssm.data.base import DatasetInfo

    lm = cfg.data.name.startswith("wt")
    return DatasetInfo(task="lm" if lm else "classification", d_input=len(vocab),
                       d_output=len(vocab) if lm else 10, seq_len=seq_len, tokens=True, vocab=vocab)


def synthetic_batch(info, B: int, pool: str, rng) -> dict:
    """A random global batch with the shapes and dtypes of the data interface (``ssm.data.base``)."""
    import numpy as np

    L = info.seq_len
    if info.tokens:
        x = rng.integers(0, info.d_input, (B, L)).astype(np.int32)
    else:
        x = rng.standard_normal((B, L, info.d_input)).astype(np.float32)
    batch = {"inputs": x}
    if info.task in ("classification", "retrieval"):
        batch["targets"] = rng.integers(0, info.d_output, (B,)).astype(np.int32)
    elif info.task in ("lm", "generation"):
        batch["targets"] = rng.integers(0, info.d_output, (B, L)).astype(np.int32)
        batch["lengths"] = np.full((B,), L, np.int32)
    elif pool == "none":
        batch["targets"] = rng.standard_normal((B, L, info.d_output)).astype(np.float32)
    else:
        batch["targets"] = rng.standard_normal((B, info.d_output)).astype(np.float32)
    if info.task == "retrieval":
        batch.update(inputs2=x.copy(), lengths=np.full((B,), L, np.int32), lengths2=np.full((B,), L, np.int32))
    return batch


def model_worker(preset: str, *, batch: int | None, steps: int, overrides: dict, precision: str,
                 compile_only: bool, grad_accum: int | None = None) -> dict:
    """Compile time and (unless ``compile_only``) training throughput of ``preset``'s train step (in ``grad_accum``
    micro-batches; None: the preset's)."""
    import jax
    import jax.numpy as jnp

    import bench_floor as bf
    from ssm.model import count_params

    load_before = _load()
    t0 = time.perf_counter()
    cfg, info, _, train_step, state, np_batch = _model_setup(preset, batch=batch, overrides=overrides,
                                                          precision=precision, grad_accum=grad_accum)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    rss_before = _rss_mib()
    B, L = cfg.data.batch_size, info.seq_len

    def device_batch():  # the loop puts a fresh batch on the device every step; the step donates it
        return {k: jnp.asarray(v) for k, v in np_batch.items()}

    t0 = time.perf_counter()
    lowered = train_step.lower(state, device_batch())
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    d = bf.describe(cfg)  # the residual backbone and the ssm.nn ones (SaShiMi, adaptive LM, pooled) alike
    result = {
        "preset": preset, "layer": d["layer"], "n_layers": d["n_layers"], "d_model": d["d_model"],
        "d_state": d["d_state"], "norm": d["norm"], "scan_layers": d["scan_layers"], "precision": precision,
        "batch": B, "grad_accum": cfg.optim.grad_accum, "L": L, "params": count_params(state.model), "init_s": init_s,
        "trace_lower_s": lower_s, "compile_s": compile_s, "compile_total_s": lower_s + compile_s,
    }
    if not compile_only:
        state, metrics = compiled(state, device_batch())  # warm-up
        jax.block_until_ready(metrics["loss"])
        times, cpu = [], []
        for _ in range(steps):
            b = device_batch()
            jax.block_until_ready(b)
            t0, c0 = time.perf_counter(), time.process_time()
            state, metrics = compiled(state, b)
            jax.block_until_ready(metrics["loss"])
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        step_s = statistics.median(times)
        result.update(
            step_ms=step_s * 1e3, step_cpu_ms=statistics.median(cpu) * 1e3,
            # the mean as well: with some host allocators every other step pays the OS (scripts/host_memory.py)
            step_mean_ms=statistics.mean(times) * 1e3, step_all_ms=[t * 1e3 for t in times],
            examples_per_s=B / step_s, tokens_per_s=B * L / step_s,
            loss=float(metrics["loss"]), steps_timed=steps,
        )
    result.update(load_before=load_before, load_after=_load())
    return _memory(result, rss_before)


# ------------------------------------------------------------------------------------------ step vs floor


def _copy_tree(tree):
    """A copy of every array of ``tree`` (the train step donates its state: what else reads it needs its own)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True) if eqx.is_array(a) else a, tree)


def _layer_i(layer, i: int, stacked: bool):
    """Layer ``i`` of a stack (``scan_layers``), or ``layer`` itself."""
    import equinox as eqx
    import jax

    if not stacked:
        return layer
    params, static = eqx.partition(layer, eqx.is_array)
    return eqx.combine(jax.tree_util.tree_map(lambda a: a[i], params), static)


def step_worker(preset: str, *, batch: int | None, rounds: int, overrides: dict, rewarm: bool = True,
                grad_accum: int | None = None) -> dict:
    """The preset's train step and its floor (``scripts/bench_floor.py``), compiled and timed interleaved in this
    process. ``rewarm``: each timed call of every component (the two train steps and each floor program alike)
    follows an untimed call of the same program (as in the training loop, where a step follows a step) rather than
    another program of the suite (``bench_floor.Timed``): a program timed right after a different large one pays
    for fresh memory (page faults), and re-warming only the steps would set warm steps against a cold floor.
    ``grad_accum``: the step in that many micro-batches, timed beside the same step with the SSM kernels recomputed
    in every micro-batch (``make_train_step(share_kernels=False)``); the floor is that of the whole batch, its
    convolution, matmul and elementwise rows timed at the micro-batch and counted ``grad_accum`` times (the
    optimizer update once; the convolutions with their kernels' spectra given, and the kernels' FFTs, which the
    step takes once, a row of their own counted once), and the model's SSM layers are not timed alone (both for memory: at the whole batch they
    need what the micro-batches avoid)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import warnings

    import bench_floor as bf
    from ssm.train.optimizer import make_optimizer
    from ssm.train.state import TrainState
    from ssm.train.step import make_train_step

    # The step donates the whole batch; inputs that cannot alias an output are copied (harmless).
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    load_before = _load()
    t0 = time.perf_counter()
    cfg, info, tx, train_step, state, np_batch = _model_setup(preset, batch=batch, overrides=overrides,
                                                              precision="float32", grad_accum=grad_accum)
    accum = cfg.optim.grad_accum
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    m = cfg.model
    B, L = cfg.data.batch_size, info.seq_len
    key = jax.random.key(0)

    def device_batch():
        return {k: jnp.asarray(v) for k, v in np_batch.items()}

    # Everything that is not the step reads copies: the step donates (deletes) the state it is given.
    ref = _copy_tree(state)
    model2 = bf.without_ssm(ref.model)
    tx2, _ = make_optimizer(model2, cfg.optim, cfg.train.steps)
    state2 = TrainState(_copy_tree(ref.step), _copy_tree(model2), _copy_tree(ref.model_state),
                        tx2.init(eqx.filter(model2, eqx.is_array)), _copy_tree(ref.key))
    train_step2 = make_train_step(tx2, info.task, accum)

    compile_s, components = {}, {}

    def stepper(name, step_fn, st):
        t = time.perf_counter()
        lowered = step_fn.lower(st, device_batch())
        lower_s = time.perf_counter() - t
        t = time.perf_counter()
        compiled = lowered.compile()
        compile_s[name] = {"trace_lower_s": lower_s, "xla_compile_s": time.perf_counter() - t}
        holder = [st]

        def run(b):
            holder[0], metrics = compiled(holder[0], b)
            return holder[0], metrics

        components[name] = bf.Timed(run, device_batch, rewarm=rewarm)

    def program(name, fn, args, donate=()):
        # ``donate``: the arguments whose gradients (or updates) come back with the same shapes. The step's
        # cotangents die inside it; a floor program returns them, and as fresh buffers they cost the floor page
        # faults the step does not pay (the SaShiMi groups: 1-2 GB per call at batch 4, 0.8-2.9 s of system
        # time). Donated, they are written over fresh copies made untimed before each call (as the step's batch).
        compiled, s_ = bf.compile_timed(jax.jit(fn, donate_argnums=donate), *args)
        compile_s[name] = {"trace_lower_s": None, "xla_compile_s": s_, "total_s": s_}

        def fresh():
            return tuple(_copy_tree(a) if i in donate else a for i, a in enumerate(args))

        components[name] = bf.Timed(lambda a: compiled(*a), fresh, rewarm=rewarm)

    stepper("step", train_step, state)
    if accum > 1:
        stepper("step, kernels per micro-batch", make_train_step(tx, info.task, accum, share_kernels=False),
                _copy_tree(ref))
    stepper("no-SSM step", train_step2, state2)

    # The model's own SSM layers and kernels at the step's shapes: layer i is the plan's convolution i.
    # Under grad_accum the batch-proportional floor rows (convolutions, matmuls, elementwise) are timed at the
    # micro-batch and counted accum times: at the whole batch their inputs and residuals alone did not fit 23 GiB
    # beside the step (lra.pathx, batch 16).
    Bf = B // accum
    plan = bf.step_plan(cfg, info, Bf)
    stacked = getattr(m, "scan_layers", False)
    top = bf.ssm_layers(ref.model)
    layers = [_layer_i(top[0], i, True) for i in range(m.n_layers)] if stacked else top
    if [l_.d_model for l_ in layers] != [c[2] for c in plan.convs]:
        raise SystemExit(f"bench.py step: the model's SSM layers (widths {[l_.d_model for l_ in layers]}) do not "
                         f"match the floor's convolutions ({[c[2] for c in plan.convs]}): fix "
                         "scripts/bench_floor.py step_plan for this backbone")
    lparams = [eqx.partition(l_, eqx.is_array) for l_ in layers]
    ks = jax.random.split(jax.random.key(1), 2 * len(layers) + 2)
    us = [jax.random.normal(ks[2 * i], (c[1], c[3], c[2])) for i, c in enumerate(plan.convs)]
    ws = [jax.random.normal(ks[2 * i + 1], (c[1], c[3], c[2])) for i, c in enumerate(plan.convs)]
    statics = [st for _, st in lparams]
    lengths = [c[3] for c in plan.convs]

    def layers_loss(ps, us, ws):
        return sum(jnp.sum(jax.vmap(eqx.combine(p, st))(u) * w) for p, st, u, w in zip(ps, statics, us, ws))

    if accum == 1:
        program("SSM layers", jax.jit(jax.value_and_grad(layers_loss, argnums=(0, 1))),
                ([p for p, _ in lparams], us, ws), donate=(0, 1))
    if all(hasattr(l_, "kernel") for l_ in layers):
        wk = [jax.random.normal(jax.random.key(10 + i), l_.kernel(n).shape)
              for i, (l_, n) in enumerate(zip(layers, lengths))]

        def kernels_loss(ps, wk):
            return sum(jnp.sum(eqx.combine(p, st).kernel(n) * w) for p, st, w, n in zip(ps, statics, wk, lengths))

        program("SSM kernels", jax.jit(jax.value_and_grad(kernels_loss)), ([p for p, _ in lparams], wk), donate=(0,))

    # The floor.
    desc = bf.describe(cfg)
    # Under grad_accum the step takes each kernel's FFT once (ssm.train.shared_kernels): the convolutions' row then
    # has the spectra given, and the kernels' FFTs are a row of their own, counted once.
    fn, args = bf.conv_floor_shapes(plan.convs, key, spectra=accum > 1)
    program("floor: FFT convolutions", fn, args, donate=(0, 1, 2))  # (us, ks, Ds, ws): gradients w.r.t. the first 3
    if accum > 1:
        fn, args = bf.kernel_fft_floor(plan.convs, key)
        program("floor: kernel FFTs", fn, args, donate=(0,))
    shapes = plan.matmuls
    fn, args = bf.matmul_floor(shapes, key)
    program("floor: dense matmuls", fn, args, donate=(0, 1))  # (ws, xs_dx, xs_const, gs)
    fn, args = bf.elementwise_floor(cfg, info, Bf, key)
    # residual: (x, norms, table, logits, ...), gradients w.r.t. the first 4; groups: (xs, params, ...), the first 2
    program("floor: elementwise", fn, args, donate=(0, 1, 2, 3) if m.name == "residual" else (0, 1))
    params = eqx.filter(ref.model, eqx.is_array)
    grads = jax.tree_util.tree_map(lambda a: jnp.full_like(a, 1e-3), params)

    def update(g, o, p):
        u, o = tx.update(g, o, p)
        return eqx.apply_updates(p, u), o

    program("floor: optimizer update", jax.jit(update), (grads, ref.opt_state, params), donate=(1, 2))  # as the step

    times = bf.interleave(components, rounds)
    if accum > 1:
        for n in ("floor: FFT convolutions", "floor: dense matmuls", "floor: elementwise"):
            v = times[n]
            v["per_micro_batch_ms"] = v["ms"]
            v["ms"], v["min_ms"], v["cpu_ms"] = accum * v["ms"], accum * v["min_ms"], accum * v["cpu_ms"]
    floor_names = [n for n in times if n.startswith("floor:")]
    floor_ms = sum(times[n]["ms"] for n in floor_names)
    for c in compile_s.values():
        if c.get("total_s") is None:
            c["total_s"] = c["trace_lower_s"] + c["xla_compile_s"]
    step_ms, nossm_ms = times["step"]["ms"], times["no-SSM step"]["ms"]
    ssm_floor_names = ("floor: FFT convolutions", "floor: kernel FFTs")
    ssm_floor = sum(times[n]["ms"] for n in floor_names if n in ssm_floor_names)
    rest_floor = sum(times[n]["ms"] for n in floor_names if n not in ssm_floor_names)
    result = {
        "suite": "step", "preset": preset, **desc,
        "batch": B, "grad_accum": accum, "L": L, "task": info.task, "d_input": info.d_input, "d_output": info.d_output,
        "overrides": overrides, "rounds": rounds, "rewarm": rewarm, "init_s": init_s, "times": times,
        "compile": compile_s,
        "convs": [list(c) for c in plan.convs], "matmuls": [list(s_) for s_ in shapes],
        "elementwise_groups": [[g[0], list(g[1]), [list(o) for o in g[2]]] for g in plan.groups],
        "floor_ms": floor_ms, "step_over_floor": step_ms / floor_ms,
        "ssm_part_ms": step_ms - nossm_ms, "ssm_part_floor_ms": ssm_floor,
        "rest_part_ms": nossm_ms, "rest_part_floor_ms": rest_floor,
        # The floor rows are separate programs: where the step fuses the rest's elementwise work into its matmuls,
        # the no-SSM step is below their sum and the sum of the rows is no lower bound. This ratio takes the smaller
        # of the two for the rest (so it is never below step / floor): it counts the SSM part's excess over the
        # convolutions' floor.
        "step_over_conservative_floor":
            step_ms / (ssm_floor + min(rest_floor, nossm_ms)),
        "commit": bf.commit(), "load_before": load_before, "load_after": _load(),
    }
    return _device(result)


# -------------------------------------------------------------------------------------------- generation


def generation_worker(layer: str, length: int, d_model: int, d_state: int, n_layers: int,
                      naive_tokens: int, repeats: int, model: str = "flat", vocab: int = 256) -> dict:
    import bench_floor as bf

    from ssm.generate import bench_generation

    load_before = _load()
    rss_before = _rss_mib()
    r = bench_generation(layer, model=model, length=length, d_model=d_model, d_state=d_state, n_layers=n_layers,
                         vocab=vocab, naive_tokens=naive_tokens, repeats=repeats)
    r["commit"] = bf.commit()
    r.update(load_before=load_before, load_after=_load())
    return _memory(r, rss_before)


# ---------------------------------------------------------------------------------------------- harness


def _run_worker(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", *argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "load_after": _load()}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit code {proc.returncode}", "load_after": _load()}


def worker_env(mode: str, environ: dict[str, str]) -> dict[str, str]:
    """The workers' environment for ``--malloc MODE``: ``glibc`` passes ``environ`` on as it is (a ``GLIBC_TUNABLES``
    given on the command line included); ``hugepages`` and ``keep`` add that mode's tunables as the training programs
    do (``scripts/host_memory.py``; unchanged where they cannot apply or the user already set one of them)."""
    import host_memory

    if mode == "glibc":
        return dict(environ)
    return host_memory.tuned_env({**environ, host_memory.MODE: mode}) or dict(environ)


def _machine() -> dict:
    import jax

    dev = jax.devices()[0]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host_cpus": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
        "platform": dev.platform, "device": dev.device_kind, "n_devices": jax.device_count(),
        "loadavg_1m": _load(),
    }


def _load_col(r: dict) -> str:
    a, b = r.get("load_before"), r.get("load_after")
    if a is None and b is None:
        return ""
    return f"{a if a is not None else '?'}->{b if b is not None else '?'}"


def format_layer_table(rows: list[dict]) -> str:
    head = (f"{'layer':<6} {'L':>6} {'fwd ms':>9} {'fwd+bwd ms':>11} {'(cpu ms)':>9} {'compile s':>10} "
            f"{'peak MiB':>9} {'Mtok/s':>7}  {'load':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['layer']:<6} {r['L']:>6}  error: {r['error']}")
            continue
        lines.append(
            f"{r['layer']:<6} {r['L']:>6} {r['fwd_ms']:>9.1f} {r['fwd_bwd_ms']:>11.1f} "
            f"{r.get('fwd_bwd_cpu_ms', float('nan')):>9.1f} {r['compile_fwd_bwd_s']:>10.2f} {r['peak_mib']:>9.0f} "
            f"{r['tokens_per_s_fwd_bwd'] / 1e6:>7.2f}  {_load_col(r):>11}"
        )
    return "\n".join(lines)


def _model_name(r: dict) -> str:
    name = r["preset"]
    extra = []
    if r.get("norm_override"):
        extra.append(f"norm={r.get('norm', '?')}")
    if r.get("scan_layers"):
        extra.append("scan")
    elif r.get("scan_override"):
        extra.append("unrolled")
    if r.get("precision", "float32") != "float32":
        extra.append(r["precision"])
    if r.get("grad_accum", 1) > 1:
        extra.append(f"{r['grad_accum']} micro-batches")
    return name + (f" [{','.join(extra)}]" if extra else "")


def format_model_table(rows: list[dict]) -> str:
    head = (f"{'model':<30} {'size':>16} {'B':>3} {'L':>6} {'compile s':>10} {'step ms':>9} {'mean ms':>8} "
            f"{'ex/s':>8} {'tok/s':>9} {'peak MiB':>9}  {'load':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{_model_name(r):<30}  error: {r['error']}")
            continue
        size = f"{r['n_layers']}x{r['d_model']} N={r['d_state']}"
        step = (f"{r['step_ms']:>9.0f} {r.get('step_mean_ms', float('nan')):>8.0f} {r['examples_per_s']:>8.2f} "
                f"{r['tokens_per_s']:>9.0f}") if "step_ms" in r else f"{'-':>9} {'-':>8} {'-':>8} {'-':>9}"
        lines.append(
            f"{_model_name(r):<30} {size:>16} {r['batch']:>3} {r['L']:>6} {r['compile_total_s']:>10.1f} "
            f"{step} {r['peak_mib']:>9.0f}  {_load_col(r):>11}"
        )
    return "\n".join(lines)


def format_generation_table(rows: list[dict]) -> str:
    head = (f"{'layer':<6} {'model':<12} {'tokens':>7} {'size':>14} {'params':>9} {'recurrent tok/s':>16} "
            f"{'conv tok/s':>11} {'ratio':>8}  {'load':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['layer']:<6} {r.get('model', 'flat'):<12} {r['length']:>7}  error: {r['error']}")
            continue
        size = f"{r['n_layers']}x{r['d_model']} N={r['d_state']}"
        lines.append(
            f"{r['layer']:<6} {r.get('model', 'flat'):<12} {r['length']:>7} {size:>14} {r.get('params', 0):>9} "
            f"{r['recurrent_tokens_per_s']:>16.0f} {r['conv_tokens_per_s']:>11.1f} {r['ratio']:>7.0f}x  "
            f"{_load_col(r):>11}"
        )
    return "\n".join(lines)


def _calls_median(v: dict, key: str) -> str:
    """Median of ``key`` over a component's calls (``bench_floor.timed_call``), or ``-`` where not recorded (older
    results, no ``/proc/stat``)."""
    xs = [x.get(key) for x in v.get("calls", [])]
    if not xs or any(x is None for x in xs):
        return "-"
    return f"{statistics.median(xs):.0f}"


def format_step_table(r: dict) -> str:
    """One preset's step against its floor: every component, the ratios, the compile times, the load, the
    commit and the command."""
    name = r.get("preset", "?")
    if "error" in r:
        return f"step {name}: error: {r['error']}"
    t, c = r["times"], r["compile"]
    size = r.get("size") or (f"{r['n_layers']}x{r['d_model']} N={r['d_state']} {r['layer']}"
            + (" bidirectional" if r["bidirectional"] else "") + f", {r['norm']}norm"
            + (" prenorm" if r["prenorm"] else " postnorm")
            + f", dropout {r['dropout']}, {r['output']}, pool {r['pool']}")
    lines = [
        f"Train step vs floor: {name}  [{size}]  batch {r['batch']}"
        + (f" in {r['grad_accum']} micro-batches" if r.get("grad_accum", 1) > 1 else "") + f"  L {r['L']}",
        f"  commit {r['commit']}  load {_load_col(r)}  median of {r['rounds']} interleaved rounds"
        f"{'' if r.get('rewarm', False) else ' (timed cold, after other programs)'}  "
        f"device {r.get('device', '?')}",
    ]
    if r.get("command"):
        lines.append(f"  command: {r['command']}")
    head = (f"  {'component':<28} {'median ms':>10} {'min ms':>9} {'cpu ms':>9} {'sys ms':>7} {'faults':>8} "
            f"{'other ms':>8} {'steal ms':>8} {'compile s':>10} {'x floor':>8}")
    lines += [head, "  " + "-" * (len(head) - 2)]
    floor = r["floor_ms"]
    for n, v in t.items():
        shown = f"{n} *" if "per_micro_batch_ms" in v else n
        lines.append(f"  {shown:<28} {v['ms']:>10.1f} {v['min_ms']:>9.1f} {v['cpu_ms']:>9.1f} "
                     f"{_calls_median(v, 'sys_ms'):>7} {_calls_median(v, 'minflt'):>8} "
                     f"{_calls_median(v, 'other_cpu_ms'):>8} {_calls_median(v, 'steal_ms'):>8} "
                     f"{c[n]['total_s']:>10.2f} {v['ms'] / floor:>8.2f}")
    lines.append(f"  {'floor (sum of floor: rows)':<28} {floor:>10.1f} {'':>9} {'':>9} {'':>7} {'':>8} {'':>8} "
                 f"{'':>8} {'':>10} {1.0:>8.2f}")
    if any("per_micro_batch_ms" in v for v in t.values()):
        lines.append(f"  * timed at the micro-batch ({r['batch'] // r['grad_accum']}), counted {r['grad_accum']} times")
    if t["step"].get("calls"):
        lines.append("  step, every round: " + ", ".join(
            f"{x['ms']:.0f} ms" + (f" (sys {x['sys_ms']:.0f}, other {x['other_cpu_ms']:.0f}, steal "
                                   f"{x['steal_ms']:.0f})" if x.get("other_cpu_ms") is not None else "")
            for x in t["step"]["calls"]))
    ssm_ratio = r["ssm_part_ms"] / r["ssm_part_floor_ms"]
    kernels = f"  (the SSM kernels alone: {t['SSM kernels']['ms']:.1f} ms)" if "SSM kernels" in t else ""
    lines.append(f"  step / floor = {r['step_over_floor']:.2f}x")
    if "step_over_conservative_floor" in r:  # results before 244ada8 lack it
        lines.append(f"  step / conservative floor = {r['step_over_conservative_floor']:.2f}x  (the rest's floor "
                     "taken as the smaller of its rows' sum and the no-SSM step)")
    lines += [
        f"  SSM part  (step - no-SSM step) {r['ssm_part_ms']:.1f} ms vs FFT convolutions"
        + (" + kernel FFTs " if "floor: kernel FFTs" in t else " ") +
        f"{r['ssm_part_floor_ms']:.1f} ms = {ssm_ratio:.2f}x" + kernels,
        f"  rest      (no-SSM step)        {r['rest_part_ms']:.1f} ms vs matmuls + elementwise + optimizer "
        f"{r['rest_part_floor_ms']:.1f} ms = {r['rest_part_ms'] / r['rest_part_floor_ms']:.2f}x",
        f"  step compile: trace+lower {c['step']['trace_lower_s']:.1f} s + XLA {c['step']['xla_compile_s']:.1f} s",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    import host_memory

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suites", nargs="+", default=list(DEFAULT_SUITES), choices=SUITES)
    p.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS + tuple(LAYER_VARIANTS),
                   help=f"layers (variants: {', '.join(f'{k} = {c} {o}' for k, (c, o) in LAYER_VARIANTS.items())})")
    p.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    p.add_argument("--floor-lengths", nargs="*", type=int, default=[4096],
                   help="layers suite: lengths at which all --layers are set against the bare FFT conv + GELU "
                        "(interleaved in one process); none to skip")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-state", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="layer input dtype")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="presets for the models suite")
    p.add_argument("--model-batch", type=int, default=None,
                   help="batch of the models suite (default: the preset's on an accelerator, 2 on CPU)")
    p.add_argument("--model-steps", type=int, default=3, help="timed train steps (after one warm-up)")
    p.add_argument("--model-set", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="models suite: override model.FIELD of every preset (JSON values; None for null), "
                        "e.g. --model-set dropout=0 layer=s4d measure=None")  # fmt: skip
    p.add_argument("--cfg", nargs="+", default=["mnist.smnist"],
                   help="step suite: presets whose train step is set against its floor (each in its own process; "
                        "batch: --model-batch, else the preset's)")
    p.add_argument("--rounds", type=int, default=5, help="step suite and layer floor: interleaved rounds")
    p.add_argument("--grad-accum", type=int, default=None,
                   help="step and models suites: micro-batches per step (default: the preset's optim.grad_accum); "
                        "above 1 the step suite also times the step with the SSM kernels recomputed in every "
                        "micro-batch")
    p.add_argument("--step-cold", action="store_true",
                   help="step suite: time each component right after the other programs (before 2026-12-07) "
                        "instead of after an untimed call of the same program, as the training loop runs a step")
    p.add_argument("--compile-preset", default="lra.pathx")
    p.add_argument("--compile-rounds", type=int, default=1,
                   help="compile suite: alternations of the unrolled and the scanned model (its own norm)")
    p.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="model precision of the models and compile suites (mixed: bf16 activations); the step "
                        "suite and its floors are float32")
    p.add_argument("--gen-layers", nargs="+", default=["s4d"], help="model.layer names for generation")
    p.add_argument("--gen-models", nargs="+", default=["flat"], choices=("flat", "sashimi", "adaptive_lm"),
                   help="generation: the flat residual stack (n layers of --gen-layers), the SaShiMi U-Net (pool "
                        "[4, 4], expand 2, ff 2, --gen-n-layers residual layers per stage; --gen-length a multiple "
                        "of 16) and/or the [SSM, SSM, FFN] x --gen-n-layers adaptive-softmax LM")
    p.add_argument("--gen-vocab", type=int, default=256, help="generation: vocabulary (classes) of every model")
    p.add_argument("--gen-length", type=int, default=4096)
    p.add_argument("--gen-d-model", type=int, default=64)
    p.add_argument("--gen-d-state", type=int, default=64)
    p.add_argument("--gen-n-layers", type=int, default=4)
    p.add_argument("--gen-naive-tokens", type=int, default=32)
    p.add_argument("--malloc", default=host_memory.DEFAULT, choices=tuple(host_memory.MODES),
                   help="host allocator of the workers (scripts/host_memory.py modes; default: what the training "
                        "programs run under, hugepages); glibc = glibc's defaults, as every figure before 2026-12-07 "
                        "11:00 UTC")
    p.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    p.add_argument("--json", default=None, help="write all results to this JSON file")
    p.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--_overrides", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--_compile-only", action="store_true", help=argparse.SUPPRESS)
    return p


def _worker(args) -> dict:
    import warnings

    # The train step donates the whole batch; inputs that cannot alias an output are copied (harmless).
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    kind, *rest = args._worker
    if kind == "layer":
        return layer_worker(rest[0], int(rest[1]), args.batch, args.d_model, args.d_state, args.repeats,
                            args.dtype)
    if kind == "model":
        overrides = json.loads(args._overrides)
        r = model_worker(rest[0], batch=args.model_batch, steps=args.model_steps, overrides=overrides,
                         precision=args.precision, compile_only=args._compile_only, grad_accum=args.grad_accum)
        r["norm_override"] = "norm" in overrides
        return r
    if kind == "layer_floor":
        return layer_floor_worker(rest[1:], int(rest[0]), args.batch, args.d_model, args.d_state, args.rounds)
    if kind == "step":
        return step_worker(rest[0], batch=args.model_batch, rounds=args.rounds,
                           overrides=json.loads(args._overrides), rewarm=not args.step_cold,
                           grad_accum=args.grad_accum)
    if kind == "generation":
        return generation_worker(rest[0], args.gen_length, args.gen_d_model, args.gen_d_state,
                                 args.gen_n_layers, args.gen_naive_tokens, max(1, min(args.repeats, 3)),
                                 model=rest[1] if len(rest) > 1 else "flat", vocab=args.gen_vocab)
    raise SystemExit(f"unknown worker kind {kind!r}")


def parse_model_set(items: list[str]) -> dict:
    """``["dropout=0", "layer=s4d", "measure=None"]`` -> model overrides; values are JSON, ``None`` is null
    and anything else a string. Unknown fields raise naming the valid ones."""
    import dataclasses

    from ssm.config import ModelConfig

    from ssm.layer_configs import LAYER_CONFIGS

    # The backbone's fields and every layer's options (ModelConfig accepts the flat names).
    fields = sorted({f.name for f in dataclasses.fields(ModelConfig)}
                    | {f.name for c in LAYER_CONFIGS for f in dataclasses.fields(c)})
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SystemExit(f"bench.py --model-set: expected FIELD=VALUE, got {item!r}")
        if key not in fields:
            raise SystemExit(f"bench.py --model-set: unknown model field {key!r}; fields: {', '.join(fields)}")
        if raw == "None":
            out[key] = None
        else:
            try:
                out[key] = json.loads(raw)
            except json.JSONDecodeError:
                out[key] = raw
    return out


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    if args._worker:
        print(json.dumps(_worker(args)), flush=True)
        return {}

    machine = _machine()
    env = worker_env(args.malloc, dict(os.environ))
    machine.update(malloc=args.malloc, glibc_tunables=env.get("GLIBC_TUNABLES", ""))
    print(f"# ssm benchmark  {machine}", flush=True)
    step_batch = args.model_batch  # the step suite keeps the preset's batch unless one is given
    if args.model_batch is None and machine["platform"] == "cpu":
        args.model_batch = 2
    out: dict = {"machine": machine, "command": " ".join(["python", "scripts/bench.py", *(argv or sys.argv[1:])])}
    tables = []

    if "layers" in args.suites:
        common = ["--batch", str(args.batch), "--d-model", str(args.d_model), "--d-state",
                  str(args.d_state), "--repeats", str(args.repeats), "--dtype", args.dtype]
        rows = []
        print(format_layer_table([]).splitlines()[0], flush=True)
        for name in args.layers:
            for length in args.lengths:
                r = _run_worker(["layer", name, str(length), *common], args.timeout, env)
                r.setdefault("layer", name)
                r.setdefault("L", length)
                rows.append(r)
                print(format_layer_table([r]).splitlines()[-1], flush=True)
        out["layers"] = rows
        floors = []
        for length in args.floor_lengths:
            r = _run_worker(["layer_floor", str(length), *args.layers, *common, "--rounds", str(args.rounds)],
                            args.timeout, env)
            r.setdefault("L", length)
            r["command"] = out["command"]
            floors.append(r)
            print(format_layer_floor_table(r), flush=True)
        out["layer_floor"] = floors
        tables.append(f"Layers: batch {args.batch}, H={args.d_model}, N={args.d_state}, {args.dtype}; "
                      f"median of {args.repeats} runs\n" + format_layer_table(rows))
        tables += [format_layer_floor_table(r) for r in floors]

    model_common = ["--model-steps", str(args.model_steps), "--precision", args.precision]
    if args.grad_accum is not None:
        model_common += ["--grad-accum", str(args.grad_accum)]
    if args.model_batch is not None:
        model_common += ["--model-batch", str(args.model_batch)]

    def model_run(preset: str, overrides: dict, compile_only: bool) -> dict:
        extra = ["--_overrides", json.dumps(overrides)] + (["--_compile-only"] if compile_only else [])
        r = _run_worker(["model", preset, *model_common, *extra], args.timeout, env)
        r.setdefault("preset", preset)
        r.setdefault("norm_override", "norm" in overrides)
        r.setdefault("scan_layers", overrides.get("scan_layers", False))
        r["scan_override"] = "scan_layers" in overrides
        r.setdefault("precision", args.precision)
        print(format_model_table([r]).splitlines()[-1], flush=True)
        return r

    if "models" in args.suites:
        print(format_model_table([]).splitlines()[0], flush=True)
        user = parse_model_set(args.model_set)
        rows = [model_run(p, user, False) for p in args.models]
        out["models"] = rows
        tables.append(f"Models: one train step (forward, backward, AdamW update), synthetic batch, "
                      f"median of {args.model_steps} steps"
                      + (f", model overrides {json.dumps(user)}" if user else "") + "\n" + format_model_table(rows))

    if "compile" in args.suites:
        print(format_model_table([]).splitlines()[0], flush=True)
        rows = []  # unrolled and scanned back to back (each in its own process), the preset's norm first
        for _ in range(max(1, args.compile_rounds)):
            rows += [model_run(args.compile_preset, {"scan_layers": scan}, True) for scan in (False, True)]
        rows += [model_run(args.compile_preset, {"norm": "layer", "scan_layers": scan}, True) for scan in (False, True)]
        out["compile"] = rows
        tables.append(f"Compile time of the {args.compile_preset} train step (trace + lower + XLA compile)\n"
                      + format_model_table(rows))

    if "generation" in args.suites:
        gen_common = ["--gen-length", str(args.gen_length), "--gen-d-model", str(args.gen_d_model),
                      "--gen-d-state", str(args.gen_d_state), "--gen-n-layers", str(args.gen_n_layers),
                      "--gen-naive-tokens", str(args.gen_naive_tokens), "--repeats", str(args.repeats),
                      "--gen-vocab", str(args.gen_vocab)]
        rows = []
        print(format_generation_table([]).splitlines()[0], flush=True)
        for model in args.gen_models:
            for layer in args.gen_layers:
                r = _run_worker(["generation", layer, model, *gen_common], args.timeout, env)
                r.setdefault("layer", layer)
                r.setdefault("model", model)
                r.setdefault("length", args.gen_length)
                rows.append(r)
                print(format_generation_table([r]).splitlines()[-1], flush=True)
        out["generation"] = rows
        tables.append("Generation: greedy, batch 1; recurrent steps vs re-running the model over the buffer "
                      "per token\n" + format_generation_table(rows))

    if "step" in args.suites:
        user = parse_model_set(args.model_set)
        rows = []
        for preset in args.cfg:
            extra = ["--rounds", str(args.rounds), "--_overrides", json.dumps(user)]
            if args.step_cold:
                extra.append("--step-cold")
            if step_batch is not None:
                extra += ["--model-batch", str(step_batch)]
            if args.grad_accum is not None:
                extra += ["--grad-accum", str(args.grad_accum)]
            r = _run_worker(["step", preset, *extra], args.timeout, env)
            r.setdefault("preset", preset)
            r["command"] = out["command"]
            rows.append(r)
            print(format_step_table(r), flush=True)
        out["step"] = rows
        tables += [format_step_table(r) for r in rows]

    if "precision" in args.suites:  # float32 vs float64, conv vs step, per layer (scripts/bench_precision.py)
        import bench_precision as bp

        rows = bp.run_subprocess([], args.timeout)
        out["precision"] = rows
        print(bp.format_table(rows, bp.commit()), flush=True)
        tables.append(bp.format_table(rows, bp.commit()))

    out["machine"]["loadavg_1m_end"] = _load()
    print()
    print("\n\n".join(tables))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
