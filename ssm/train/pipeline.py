"""Grain input pipelines with per-host shards.

Training stream: epoch ``e`` visits the examples in the order ``permutation_e`` (a numpy permutation
seeded by ``(seed, e)``); global position ``g`` is example ``permutation_{g // n}[g % n]``. Global
batch ``b`` is positions ``[bB, (b+1)B)``; with ``P`` processes, process ``p`` reads only the
contiguous block ``[bB + p·B/P, bB + (p+1)·B/P)`` of every global batch, so the global batch (and
hence every result) is the same for any number of processes and devices. The Grain iterator's state
(``{"next_index": ...}``) is saved in checkpoints, so a resumed run reads exactly the batches the
uninterrupted run would have read.

Evaluation: the split in order, in global batches of ``eval_batch_size``; the last batch is padded
with copies of example 0 that carry ``weights == 0``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grain
import numpy as np

from ssm.data.base import ArraySource


class _HostStream:
    """Random access to this process's part of the (finite) training stream."""

    def __init__(self, source: Any, seed: int, global_batch: int, n_batches: int, process: int, n_procs: int):
        if global_batch % n_procs:
            raise ValueError(f"data.batch_size ({global_batch}) must be divisible by the number of processes ({n_procs})")
        self.source, self.seed = source, seed
        self.n = len(source)
        if self.n == 0:
            raise ValueError("the training split is empty")
        self.B, self.local = global_batch, global_batch // n_procs
        self.offset = process * self.local
        self.length = n_batches * self.local
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:
        return self.length

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        b, j = divmod(int(k), self.local)
        g = b * self.B + self.offset + j
        epoch, i = divmod(g, self.n)
        return self.source[int(self._permutation(epoch)[i])]


def train_dataset(
    source: Any, *, seed: int, global_batch: int, n_batches: int, process: int = 0, n_procs: int = 1
) -> grain.MapDataset:
    """This process's batches ``(global_batch / n_procs, ...)`` for ``n_batches`` steps."""
    stream = _HostStream(source, seed, global_batch, n_batches, process, n_procs)
    return grain.MapDataset.source(stream).batch(stream.local, drop_remainder=True)


def train_iterator(ds: grain.MapDataset, num_workers: int = 0):
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0 if num_workers == 0 else 4, prefetch_buffer_size=2))
    if num_workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return iter(it_ds)


def _take(source: Any, idx: np.ndarray) -> dict[str, np.ndarray]:
    if isinstance(source, ArraySource):
        return {k: v[idx] for k, v in source.arrays.items()}
    items = [source[int(i)] for i in idx]
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


def eval_batches(
    source: Any, *, global_batch: int, process: int = 0, n_procs: int = 1, max_batches: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """This process's part of each global evaluation batch, with ``"weights"`` (1 real, 0 padding)."""
    if global_batch % n_procs:
        raise ValueError(f"data.eval_batch_size ({global_batch}) must be divisible by the number of processes ({n_procs})")
    n = len(source)
    local = global_batch // n_procs
    nb = -(-n // global_batch)
    if max_batches is not None:
        nb = min(nb, max_batches)
    for b in range(nb):
        pos = b * global_batch + process * local + np.arange(local)
        real = pos < n
        batch = _take(source, np.where(real, pos, 0))
        batch["weights"] = real.astype(np.float32)
        yield batch
