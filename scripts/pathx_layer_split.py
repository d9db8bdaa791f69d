"""Where one bidirectional S4 layer of the Path-X preset spends its time (issue 18): kernel / FFT convolution / rest.

One process; each piece jitted forward + backward (gradients w.r.t. the input and the parameters), timed in
interleaved rounds, medians printed in ms. Shapes: ``--L`` (16384), ``--H`` (256), ``--N`` (64), batch 1 (the kernel does
not depend on the batch). Run under the CPU lock:

    flock -x /work/cpu.lock env PYTHONPATH=$PWD python scripts/pathx_layer_split.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

import ssm
from ssm import kernels


def _timed(fn, *args):
    jax.block_until_ready(fn(*args))  # compile + warm
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t) * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--L", type=int, default=16384)
    p.add_argument("--H", type=int, default=256)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--form", default="cauchy")
    p.add_argument("--only", default="", help="comma-separated subset of the pieces")
    a = p.parse_args()
    L, H = a.L, a.H
    layer = ssm.S4(H, a.N, key=jax.random.PRNGKey(0), bidirectional=True, n_ssm=H, l_max=L, kernel_form=a.form)
    u = jax.random.normal(jax.random.PRNGKey(1), (L, H))
    k = layer.kernel(L)
    g = jax.random.normal(jax.random.PRNGKey(2), (L, H))
    gk = jax.random.normal(jax.random.PRNGKey(3), k.shape)
    params, static = eqx.partition(layer, eqx.is_inexact_array)

    def grad_of(f):
        return jax.jit(jax.grad(f, argnums=(0, 1)))

    def layer_loss(u, params, vmapped=False):
        f = eqx.combine(params, static)
        return jnp.vdot(g, jax.vmap(f)(u[None])[0] if vmapped else f(u))

    # One block of the lra.pathx preset (pre-norm BatchNorm, S4 bidirectional, GELU, Linear H->2H + GLU, residual),
    # vmapped over a batch of 1 with the axis name its BatchNorm reduces over, as in the step.
    import dataclasses

    import configs
    from ssm.model import Block

    mcfg = configs.get_preset("lra.pathx").model
    mcfg = dataclasses.replace(mcfg, d_model=H, layer=dataclasses.replace(mcfg.layer, d_state=a.N, n_ssm=H,
                                                                      kernel_form=a.form))
    block, bstate = eqx.nn.make_with_state(Block)(mcfg, key=jax.random.PRNGKey(5), seq_len=L)
    block = eqx.tree_at(lambda b: b.layer, block, layer)

    class Identity(eqx.Module):
        def __call__(self, u, *, rate=1.0):
            return u

    bparams, bstatic = eqx.partition(block, eqx.is_inexact_array)
    iparams, istatic = eqx.partition(eqx.tree_at(lambda b: b.layer, block, Identity()), eqx.is_inexact_array)

    def block_loss(u, p):
        st = bstatic if p is bparams or jax.tree.structure(p) == jax.tree.structure(bparams) else istatic
        b = eqx.combine(p, st)
        leaves, treedef = jax.tree_util.tree_flatten(bstate)  # a fresh copy per trace (eqx.nn.State is single-use)
        st0 = jax.tree_util.tree_unflatten(treedef, leaves)
        y, _ = jax.vmap(lambda x: b(x, st0), axis_name="batch", axis_size=1)(u[None])
        return jnp.vdot(g, y[0])

    def kernel_loss(_, params):
        return jnp.vdot(gk, eqx.combine(params, static).kernel(L))

    def conv_loss(u, k):
        return jnp.vdot(g, kernels.fft_conv(u, k, layer.D))

    def conv_causal_loss(u, k):  # two causal convolutions of the same size (the bidirectional work, no assembly)
        return jnp.vdot(g, kernels.fft_conv(u, k[0], layer.D) + kernels.fft_conv(u[::-1], k[1])[::-1])

    def gelu_glu_loss(u, w):  # the block around the layer: GELU, Linear H->2H, GLU (the "rest" of the block)
        z = jax.nn.gelu(u) @ w.T
        return jnp.vdot(g, jax.nn.glu(z, axis=-1))

    w = jax.random.normal(jax.random.PRNGKey(4), (2 * H, H)) / H**0.5
    pieces = {
        "layer": (grad_of(layer_loss), u, params),
        "kernel": (grad_of(kernel_loss), u, params),
        "fft_conv": (grad_of(conv_loss), u, k),
        "2x causal fft_conv": (grad_of(conv_causal_loss), u, k),
        "layer vmapped (B 1)": (grad_of(lambda u, p: layer_loss(u, p, vmapped=True)), u, params),
        "block": (grad_of(block_loss), u, bparams),
        "block-identity": (grad_of(block_loss), u, iparams),
        "gelu+glu": (grad_of(gelu_glu_loss), u, w),
    }
    for name, scan in (("step", True), ("step-unrolled", False)):
        if name not in a.only.split(","):
            continue
        # The preset's whole train step at batch 1 (AdamW included; scripts/bench.py's set-up), at this H/N/form.
        import bench

        over = {"d_model": H, "layer": mcfg.layer, "scan_layers": scan}
        _, _, _, train_step, tstate, np_batch = bench._model_setup("lra.pathx", batch=1, overrides=over,
                                                                   precision="float32")

        def make_step(train_step=train_step, holder=[tstate], np_batch=np_batch):
            def step(_u, _p):
                holder[0], m = train_step(holder[0], {k_: jnp.asarray(v) for k_, v in np_batch.items()})
                return m

            return step

        pieces[name] = (make_step(), None, None)
    if a.only:
        keep = a.only.split(",")
        pieces = {n: v for n, v in pieces.items() if n in keep}
    times = {n: [] for n in pieces}
    for n, (f, *args) in pieces.items():
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        print(f"compile+1st {n}: {time.perf_counter() - t:.1f} s", flush=True)
    for _ in range(a.rounds):
        for n, (f, *args) in pieces.items():
            t = time.perf_counter()
            jax.block_until_ready(f(*args))
            times[n].append((time.perf_counter() - t) * 1e3)
    print(f"L {L} H {H} N {a.N} form {a.form} rounds {a.rounds}; fwd+bwd, median ms (min)")
    for n, ts in times.items():
        print(f"  {n:22s} {statistics.median(ts):8.0f} ({min(ts):.0f})")


if __name__ == "__main__":
    main()
