"""Multi-process data parallelism: 2 processes x 2 fake CPU devices on localhost (jax.distributed)
give the same losses as 1 process x 4 devices, and each process reads only its own shard."""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import textwrap

import numpy as np
import pytest

from _train_helpers import PYTHON, load_state, make_toy_module, register, subprocess_env, tiny_config, train_losses
from ssm.train import train

# Tiny runs, nearly all compilation; the worker processes get the same setting (subprocess_env).
pytestmark = pytest.mark.usefixtures("quick_compile")

WORKER = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_enable_x64", True)
    from _train_helpers import register, tiny_config
    from ssm.train import train

    run_dir, log_dir = sys.argv[1], sys.argv[2]
    register(log_dir=log_dir)
    res = train(tiny_config(run_dir, train=dict(distributed=True)), verbose=False)
    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    print("RESULT", res["step"], res["val"]["loss"], flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expected_reads(process: int, cfg) -> collections.Counter:
    """The training examples process ``process`` must read: its block of every global batch of the
    epoch-permuted stream (ssm.train.pipeline)."""
    n = len(make_toy_module().load(cfg.data, "train"))
    B, P = cfg.data.batch_size, 2
    local = B // P
    out = collections.Counter()
    for b in range(cfg.train.steps):
        for j in range(local):
            epoch, i = divmod(b * B + process * local + j, n)
            out[int(np.random.default_rng([cfg.data.seed, epoch]).permutation(n)[i])] += 1
    return out


def test_two_processes_match_one_process(tmp_path, monkeypatch):
    register(monkeypatch)
    single = tiny_config(tmp_path / "single")
    res1 = train(single, verbose=False)

    multi_dir, log_dir = tmp_path / "multi", tmp_path / "reads"
    log_dir.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    logs = [open(tmp_path / f"worker{pid}.log", "w+") for pid in (0, 1)]  # files, not pipes: no stalls
    procs = [
        subprocess.Popen(
            [PYTHON, str(script), str(multi_dir), str(log_dir)],
            env=subprocess_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                               JAX_PROCESS_ID=str(pid)),  # fmt: skip
            stdout=logs[pid], stderr=subprocess.STDOUT, text=True,
        )
        for pid in (0, 1)
    ]
    outs = []
    try:
        for p, log in zip(procs, logs):
            p.wait(timeout=600)
            log.seek(0)
            outs.append((p.returncode, log.read()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()
    for rc, out in outs:
        assert rc == 0, out[-4000:]
        assert "RESULT 24" in out

    # the same losses as one process on 4 devices (only reduction order differs)
    l1, l2 = train_losses(single.train.run_dir), train_losses(str(multi_dir))
    assert sorted(l1) == sorted(l2) == list(range(1, 25))
    np.testing.assert_allclose([l2[s] for s in sorted(l2)], [l1[s] for s in sorted(l1)], rtol=1e-10, atol=0)
    # the same validation loss, reported by both processes
    for _, out in outs:
        val = float(out.split("RESULT")[1].split()[1])
        assert val == pytest.approx(res1["val"]["loss"], rel=1e-8)

    # each process read exactly its own block of every global batch, nothing else
    reads = [collections.Counter(int(x) for x in (log_dir / f"reads-{p}.txt").read_text().split()) for p in (0, 1)]
    for p in (0, 1):
        assert reads[p] == _expected_reads(p, single)
    assert sum(reads[0].values()) == sum(reads[1].values()) == 24 * single.data.batch_size // 2

    # the checkpoint written by the two processes restores in one process
    state, meta = load_state(tiny_config(multi_dir))
    assert meta["step"] == 24 and int(state.step) == 24
