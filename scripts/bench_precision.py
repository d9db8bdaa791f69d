"""Float32 accuracy of each layer's two modes (``python scripts/bench.py --suites precision``, or this file alone).

For every layer (S4 with each HiPPO measure, S4D, DSS, S5, HOPE), built in float32, the float64 reference is the
convolution of the SAME parameters cast to float64 (so parameter rounding is not counted), on one random input.
Columns, each ``||a - b|| / ||y64||`` (Frobenius norms over the whole ``(L, H)`` output, relative to the output scale):

- ``conv32-conv64``: the float32 convolution mode (kernel + FFT convolution) against the float64 one;
- ``step32-conv32``: the float32 recurrent mode (``init_state`` + ``step`` under ``lax.scan``) against the float32
  convolution: what a user sees when switching modes (issue 17's "step == conv" figure);
- ``step32-conv64``: the float32 recurrence against the float64 reference;
- ``step64-conv64``: both modes in float64 (a check that the two modes are the same system).

    PYTHONPATH=$PWD python scripts/bench_precision.py [--d-model 4 --d-state 64 --length 1024 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# (row name, layer class name, constructor options)
LAYERS = (
    ("S4 legs", "S4", {"measure": "legs"}),
    ("S4 legt", "S4", {"measure": "legt"}),
    ("S4 lagt", "S4", {"measure": "lagt"}),
    ("S4 fout", "S4", {"measure": "fout"}),
    # The same four systems with the kernel from FFTs of Vandermonde sequences (S4's kernel_form="vandermonde").
    ("S4V legs", "S4", {"measure": "legs", "kernel_form": "vandermonde"}),
    ("S4V legt", "S4", {"measure": "legt", "kernel_form": "vandermonde"}),
    ("S4V lagt", "S4", {"measure": "lagt", "kernel_form": "vandermonde"}),
    ("S4V fout", "S4", {"measure": "fout", "kernel_form": "vandermonde"}),
    ("S4D", "S4D", {}),
    ("DSS exp", "DSS", {"kernel_type": "exp"}),  # DSS-softmax has no recurrent mode
    ("S5", "S5", {}),
    ("HOPE", "HOPE", {}),
)
COLUMNS = ("conv32-conv64", "step32-conv32", "step32-conv64", "step64-conv64")


def measure(names: list[str] | None = None, *, d_model: int = 4, d_state: int = 64, length: int = 1024,
            seed: int = 0) -> list[dict]:
    """One row per layer of :data:`LAYERS` (or those named), with the four relative errors."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np

    import ssm

    call = eqx.filter_jit(lambda m, u: m(u))

    @eqx.filter_jit
    def steps(layer, u):
        state, ys = jax.lax.scan(lambda s, x: layer.step(x, s)[::-1], layer.init_state(), u)
        return ys

    u32 = jax.random.normal(jax.random.key(seed + 1), (length, d_model), jnp.float32)
    rows = []
    for name, cls, opts in LAYERS:
        if names and name not in names:
            continue
        kw = dict(opts)
        if cls == "S4":
            kw["l_max"] = length
        lay32 = getattr(ssm, cls)(d_model=d_model, d_state=d_state, key=jax.random.key(seed), dtype=jnp.float32, **kw)
        lay64 = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_array(x) and x.dtype == jnp.float32 else x,
                             lay32)
        u64 = u32.astype(jnp.float64)
        y64 = np.asarray(call(lay64, u64))
        conv32 = np.asarray(call(lay32, u32), np.float64)
        step32 = np.asarray(steps(lay32, u32), np.float64)
        step64 = np.asarray(steps(lay64, u64))
        scale = float(np.linalg.norm(y64))
        rel = lambda a, b: float(np.linalg.norm(a - b) / scale)  # noqa: E731
        rows.append({"layer": name, "H": d_model, "N": d_state, "L": length, "seed": seed,
                     "conv32-conv64": rel(conv32, y64), "step32-conv32": rel(step32, conv32),
                     "step32-conv64": rel(step32, y64), "step64-conv64": rel(step64, y64)})
    return rows


def format_table(rows: list[dict], commit: str = "") -> str:
    r0 = rows[0] if rows else {}
    head = f"{'layer':<9}" + "".join(f" {c:>14}" for c in COLUMNS)
    lines = [f"Float32 precision: ||a - b|| / ||y64|| over the (L, H) output; H {r0.get('H')}, N {r0.get('N')}, "
             f"L {r0.get('L')}, seed {r0.get('seed')}" + (f"; commit {commit}" if commit else ""), head,
             "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['layer']:<9}  error: {r['error']}")
            continue
        lines.append(f"{r['layer']:<9}" + "".join(f" {r[c]:>14.2e}" for c in COLUMNS))
    return "\n".join(lines)


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", _ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", _ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def run_subprocess(args: list[str], timeout: float) -> list[dict]:
    """Run :func:`measure` in a fresh process (it enables float64 globally) and return its rows."""
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--json-lines", *args],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"layer": "all", "error": f"timed out after {timeout:.0f} s"}]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not rows:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        rows.append({"layer": "all", "error": tail or f"exit code {proc.returncode}"})
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", type=int, default=4)
    p.add_argument("--d-state", type=int, default=64)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", nargs="+", default=None, help="row names, e.g. 'S4 fout' S4D")
    p.add_argument("--json-lines", action="store_true", help="print one JSON object per row (used by bench.py)")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    a = _parser().parse_args(argv)
    rows = measure(a.layers, d_model=a.d_model, d_state=a.d_state, length=a.length, seed=a.seed)
    if a.json_lines:
        for r in rows:
            print(json.dumps(r), flush=True)
    else:
        print(format_table(rows, commit()))
    return rows


if __name__ == "__main__":
    main()
