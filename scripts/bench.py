"""Benchmark suite: speed, compile time and peak memory of every layer, and model throughput.

    python scripts/bench.py [--layers S4 S4D DSS S5 HOPE] [--lengths 1024 4096 16384]
                            [--batch 8 --d-model 128 --d-state 64] [--repeats 7] [--json FILE]
                            [--models mnist.smnist lra.pathx] [--generation]

Every (layer, length) configuration runs in its own Python process, so that its peak memory is its
own: on CPU the process's peak resident set size (``ru_maxrss``) is reported, together with the
resident size just before the first compilation (the JAX runtime, imports and parameters), so the
difference is what the computation itself needed; on an accelerator, the device allocator's
``peak_bytes_in_use``. Times are medians over ``--repeats`` runs after one warm-up run; the compile
time is that of ``jit(...).lower(...).compile()``.
"""

from __future__ import annotations

import argparse
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
LENGTHS = (1024, 4096, 16384)


def _rss_mib() -> float:
    """Current resident set size of this process, in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_ms(fn, args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))  # warm-up (compiled already; fills caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def layer_worker(name: str, length: int, batch: int, d_model: int, d_state: int,
                 repeats: int, dtype: str) -> dict:
    """Measure one layer configuration in this process."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import ssm

    layer = getattr(ssm, name)(d_model=d_model, d_state=d_state, key=jax.random.key(0))
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

    fwd_ms = _median_ms(fwd_compiled, (params, u), repeats)
    fwd_bwd_ms = _median_ms(fwd_bwd_compiled, (params, u), repeats)

    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    result = {
        "layer": name, "L": length, "batch": batch, "d_model": d_model, "d_state": d_state,
        "dtype": dtype, "fwd_ms": fwd_ms, "fwd_bwd_ms": fwd_bwd_ms,
        "compile_fwd_s": compile_fwd_s, "compile_fwd_bwd_s": compile_fwd_bwd_s,
        "tokens_per_s_fwd_bwd": batch * length / (fwd_bwd_ms / 1e3),
        "platform": device.platform, "device": device.device_kind,
    }
    if stats is not None:
        result["peak_mib"] = stats.get("peak_bytes_in_use", 0) / 2**20
    else:
        result["peak_rss_mib"] = _peak_rss_mib()
        result["rss_before_compute_mib"] = rss_before
        result["peak_mib"] = result["peak_rss_mib"] - rss_before
    return result


def _run_worker(argv: list[str], timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", *argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit code {proc.returncode}"}


def _machine() -> dict:
    import jax

    dev = jax.devices()[0]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host_cpus": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
        "platform": dev.platform, "device": dev.device_kind, "n_devices": jax.device_count(),
        "loadavg_1m": os.getloadavg()[0],
    }


def _format_layer_table(rows: list[dict]) -> str:
    head = (f"{'layer':<6} {'L':>6} {'fwd ms':>9} {'fwd+bwd ms':>11} {'compile s':>10} "
            f"{'peak MiB':>9} {'Mtok/s':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['layer']:<6} {r['L']:>6}  error: {r['error']}")
            continue
        lines.append(
            f"{r['layer']:<6} {r['L']:>6} {r['fwd_ms']:>9.1f} {r['fwd_bwd_ms']:>11.1f} "
            f"{r['compile_fwd_bwd_s']:>10.2f} {r['peak_mib']:>9.0f} "
            f"{r['tokens_per_s_fwd_bwd'] / 1e6:>7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS)
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--d-state", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    parser.add_argument("--json", default=None, help="write all results to this JSON file")
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._worker:
        kind, *rest = args._worker
        if kind == "layer":
            name, length = rest[0], int(rest[1])
            out = layer_worker(name, length, args.batch, args.d_model, args.d_state,
                               args.repeats, args.dtype)
        else:
            raise SystemExit(f"unknown worker kind {kind!r}")
        print(json.dumps(out), flush=True)
        return

    machine = _machine()
    print(f"# ssm benchmark  {machine}", flush=True)
    common = ["--batch", str(args.batch), "--d-model", str(args.d_model), "--d-state",
              str(args.d_state), "--repeats", str(args.repeats), "--dtype", args.dtype]
    rows = []
    for name in args.layers:
        for length in args.lengths:
            r = _run_worker(["layer", name, str(length), *common], args.timeout)
            r.setdefault("layer", name)
            r.setdefault("L", length)
            rows.append(r)
            print(_format_layer_table([r]).splitlines()[-1], flush=True)
    print()
    print(f"Layers: batch {args.batch}, H={args.d_model}, N={args.d_state}, {args.dtype}; "
          f"median of {args.repeats} runs")
    print(_format_layer_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "layers": rows}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
