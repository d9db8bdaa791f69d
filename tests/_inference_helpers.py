"""Fixtures of the inference/generation tests: fake MNIST IDX files and a tiny trained density model."""

from __future__ import annotations

import gzip
import os

import numpy as np

from ssm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig


def write_idx(path: str, arr: np.ndarray, magic: int) -> None:
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.astype(np.uint8).tobytes())


def fake_images(n: int, seed: int) -> np.ndarray:
    """``n`` 28x28 uint8 images: a bright bar (row or column) on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 30, (n, 28, 28))
    for i in range(n):
        j = rng.integers(4, 24)
        if i % 2:
            x[i, :, j - 2 : j + 2] = rng.integers(200, 256, (28, 4))
        else:
            x[i, j - 2 : j + 2, :] = rng.integers(200, 256, (4, 28))
    return x.astype(np.uint8)


def write_fake_mnist(root: str, n_train: int = 40, n_test: int = 16) -> str:
    d = os.path.join(root, "mnist")
    os.makedirs(d, exist_ok=True)
    for part, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        write_idx(os.path.join(d, f"{part}-images-idx3-ubyte.gz"), fake_images(n, seed), 0x00000803)
        write_idx(os.path.join(d, f"{part}-labels-idx1-ubyte.gz"), np.arange(n) % 10, 0x00000801)
    return root


def tiny_gen_config(run_dir: str, root: str, layer: str = "s4d", **model) -> Config:
    """A tiny causal model on ``mnist_gen`` (L = 784): 2 blocks, H 8, N 4; checkpoints at steps 3 and 6."""
    m = dict(layer=layer, d_model=8, n_layers=2, d_state=4, pool="none", norm="layer", prenorm=True)
    m.update(model)
    return Config(
        model=ModelConfig(**m),
        data=DataConfig(name="mnist_gen", root=str(root), batch_size=8, eval_batch_size=8, val_fraction=0.2),
        optim=OptimConfig(lr=1e-2, ssm_lr=1e-3, schedule="constant"),
        train=TrainConfig(steps=6, run_dir=str(run_dir), log_every=3, eval_every=3, save_every=3, keep=3,
                          progress="none", async_checkpoint=False),
    )  # fmt: skip


def read_events(run_dir: str) -> list[dict]:
    import json

    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def trained_gen_run(tmp_path_factory) -> str:
    """The run directory of :func:`tiny_gen_config` trained on fake MNIST, trained once per test session (shared by
    the test modules through the session's base temporary directory)."""
    from ssm.train import train

    base = os.path.join(str(tmp_path_factory.getbasetemp()), "gen-shared")
    run_dir = os.path.join(base, "run")
    if not os.path.exists(os.path.join(base, "done")):
        from _train_helpers import quick_compile

        root = write_fake_mnist(os.path.join(base, "data"))
        with quick_compile():  # a tiny run, nearly all compilation; the tests compile their own programs after it
            train(tiny_gen_config(run_dir, root), verbose=False)
        open(os.path.join(base, "done"), "w").close()
    return run_dir
