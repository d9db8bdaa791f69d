"""Where the time of a layer goes: its forward+backward split into kernel generation and convolution
(or, for S5, discretization, scan and readout), timed as separate compiled programs in one process.

    python scripts/bench_profile.py [--layers S4 S4D DSS S5 HOPE] [--length 4096] [--batch 8]
                                    [--d-model 128] [--d-state 64] [--repeats 5] [--memory-length 16384]

Parts are timed back to back, round-robin (one run of each part per round, ``--repeats`` rounds, median per
part), so that a changing machine load affects them alike: on a shared machine compare the ratios, not the
absolute times. ``--memory-length`` adds, per layer, XLA's own accounting of the forward+backward program
at that length (``compiled.memory_analysis()``: temporary buffers + arguments + outputs), which needs
compilation only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

LAYERS = ("S4", "S4D", "DSS", "S5", "HOPE")


def make_layer(name: str, H: int, N: int, L: int, **options):
    import inspect

    import jax

    import ssm

    cls = getattr(ssm, name)
    if "l_max" in inspect.signature(cls.__init__).parameters:
        options.setdefault("l_max", L)
    return cls(d_model=H, d_state=N, key=jax.random.key(0), **options)


def parts(layer, u):
    """``{name: (jitted fn, args)}``: the whole layer and its stages, each forward+backward with respect to
    the layer's parameters (as ``scripts/bench.py``), plus the layer with the input gradient too."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from ssm import kernels

    B, L, H = u.shape
    params, static = eqx.partition(layer, eqx.is_array)
    w = jax.random.normal(jax.random.key(2), (B, L, H), u.dtype)

    # Every array is an argument: an array closed over would be a compile-time constant, which XLA
    # folds into the program (the backward pass of a loss linear in its weights, here).
    def layer_loss(p, u, w):
        return jnp.mean(jax.vmap(eqx.combine(p, static))(u) * w)

    out = {
        "layer fwd": (jax.jit(lambda p, u: jax.vmap(eqx.combine(p, static))(u)), (params, u)),
        "layer fwd+bwd": (jax.jit(jax.value_and_grad(layer_loss)), (params, u, w)),
        "layer fwd+bwd (+du)": (jax.jit(jax.value_and_grad(layer_loss, argnums=(0, 1))), (params, u, w)),
    }
    if hasattr(layer, "kernel"):
        k = layer.kernel(L)
        wk = jax.random.normal(jax.random.key(3), k.shape, k.dtype)

        def kernel_loss(p, wk):
            return jnp.sum(eqx.combine(p, static).kernel(L) * wk)

        def conv_loss(k, D, u, w):
            return jnp.mean(jax.vmap(lambda x: kernels.fft_conv(x, k, D))(u) * w)

        out["kernel fwd"] = (jax.jit(lambda p: eqx.combine(p, static).kernel(L)), (params,))
        out["kernel fwd+bwd"] = (jax.jit(jax.value_and_grad(kernel_loss)), (params, wk))
        out["conv fwd"] = (jax.jit(lambda k, D, u: jax.vmap(lambda x: kernels.fft_conv(x, k, D))(u)),
                           (k, layer.D, u))
        out["conv fwd+bwd"] = (jax.jit(jax.value_and_grad(conv_loss, argnums=(0, 1))), (k, layer.D, u, w))
    if type(layer).__name__ == "S5":
        from ssm.layers.s5 import linear_recurrence

        Lb, Bb = layer.discrete()
        Bu = jax.vmap(lambda x: layer._input(x, Bb))(u)
        wx = jax.random.normal(jax.random.key(4), Bu.shape, Bu.real.dtype)

        def scan_loss(a, b, wx):
            return jnp.sum(jax.vmap(lambda x: linear_recurrence(a, x))(b).real * wx)

        def proj_loss(Bb, u, wx):
            z = jax.vmap(lambda x: layer._input(x, Bb))(u)
            return jnp.sum(z.real * wx) + jnp.sum(z.imag * wx)

        def readout_loss(cr, ci, x, w):
            l2 = eqx.tree_at(lambda m: (m.C_re, m.C_im), layer, (cr, ci))
            return jnp.mean(jax.vmap(lambda xx: l2._readout(xx, 0))(x) * w)

        out["scan fwd+bwd"] = (jax.jit(jax.value_and_grad(scan_loss, argnums=(0, 1))), (Lb, Bu, wx))
        out["input proj fwd+bwd"] = (jax.jit(jax.value_and_grad(proj_loss)), (Bb, u, wx))
        out["readout fwd+bwd"] = (jax.jit(jax.value_and_grad(readout_loss, argnums=(0, 1))),
                                  (layer.C_re, layer.C_im, Bu, w))
    return out


def time_round_robin(fns: dict, repeats: int) -> dict[str, float]:
    """``{part: (median wall ms, median process CPU ms)}``; one call of every part per round."""
    import jax

    compiled = {}
    for name, (fn, args) in fns.items():
        c = fn.lower(*args).compile()
        jax.block_until_ready(c(*args))
        compiled[name] = (c, args)
    times: dict[str, list[float]] = {n: [] for n in compiled}
    cpu: dict[str, list[float]] = {n: [] for n in compiled}
    for _ in range(repeats):
        for name, (c, args) in compiled.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(c(*args))
            times[name].append((time.perf_counter() - t0) * 1e3)
            cpu[name].append((time.process_time() - c0) * 1e3)
    return {n: (statistics.median(times[n]), statistics.median(cpu[n])) for n in times}


def memory_analysis(layer, B: int, L: int, H: int) -> dict:
    """XLA's buffer accounting of the forward+backward program (compiled, not run)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    params, static = eqx.partition(layer, eqx.is_array)
    u = jax.ShapeDtypeStruct((B, L, H), jnp.float32)

    def loss(p, u):
        return jnp.mean(jax.vmap(eqx.combine(p, static))(u) ** 2)

    m = jax.jit(jax.value_and_grad(loss)).lower(params, u).compile().memory_analysis()
    mib = lambda x: x / 2**20  # noqa: E731
    return {"temp_mib": mib(m.temp_size_in_bytes), "argument_mib": mib(m.argument_size_in_bytes),
            "output_mib": mib(m.output_size_in_bytes)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS)
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-state", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory-length", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import jax

    out = {}
    for name in args.layers:
        load0 = os.getloadavg()[0]
        layer = make_layer(name, args.d_model, args.d_state, args.length)
        u = jax.random.normal(jax.random.key(1), (args.batch, args.length, args.d_model))
        res = time_round_robin(parts(layer, u), args.repeats)
        r = {"times_ms": res, "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
        print(f"{name}  L={args.length} B={args.batch} H={args.d_model} N={args.d_state}  "
              f"load {r['load'][0]}->{r['load'][1]}")
        for part, (ms, cpu_ms) in res.items():
            print(f"  {part:<22} {ms:9.1f} ms  (cpu {cpu_ms:8.1f} ms)")
        if args.memory_length:
            big = make_layer(name, args.d_model, args.d_state, args.memory_length)
            r["memory"] = memory_analysis(big, args.batch, args.memory_length, args.d_model)
            print(f"  XLA memory at L={args.memory_length}: " +
                  ", ".join(f"{k} {v:.0f}" for k, v in r["memory"].items()))
        out[name] = r
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
