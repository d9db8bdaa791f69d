"""Grain input pipelines with per-host shards.

Training stream: epoch ``e`` visits the examples in the order ``permutation_e`` (a numpy permutation
seeded by ``(seed, e)``); global position ``g`` is example ``permutation_{g // n}[g % n]``. Global
batch ``b`` is positions ``[bB, (b+1)B)``; with ``P`` processes, process ``p`` reads only the
contiguous block ``[bB + p·B/P, bB + (p+1)·B/P)`` of every global batch, so the global batch (and
hence every result) is the same for any number of processes and devices. The Grain iterator's state
(``{"next_index": ...}``) is saved in checkpoints, so a resumed run reads exactly the batches the
uninterrupted run would have read.

Length buckets (``bucket``, the ``data.length_bucket`` option): the permutation is cut into chunks of
``64`` global batches; each chunk is sorted by true length, cut into global batches, and the batches
of the chunk are shuffled (all seeded by ``(seed, epoch)``). Every example of a global batch is then
cut to the batch's longest true length rounded up to a multiple of ``bucket`` (at most the padded
length), so the padding after the longest example costs no compute. The results on the real steps
are those of the fully padded batch with causal layers, and with bidirectional ones when the model masks
padding (``model.mask_padding``, which the config then requires); BatchNorm's statistics include padding. Evaluation batches are cut the same way (see
:func:`eval_batches`).

Evaluation: the split in order, in global batches of ``eval_batch_size``; the last batch is padded
with copies of example 0 that carry ``weights == 0``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grain
import numpy as np

from ssm.data.base import ArraySource


BUCKET_CHUNK = 64  # global batches per length-sorted chunk


def _lengths(source: Any) -> np.ndarray:
    if isinstance(source, ArraySource) and "lengths" in source.arrays:
        return np.asarray(source.arrays["lengths"])
    first = source[0]
    if "lengths" not in first:
        raise ValueError("data.length_bucket needs a dataset whose examples carry 'lengths' (padded token tasks such "
                         "as listops, imdb): pass --data.length-bucket None")  # fmt: skip
    return np.asarray([source[i]["lengths"] for i in range(len(source))])


def _cut_length(longest: int, bucket: int, padded: int) -> int:
    """The longest true length of a batch rounded up to a multiple of ``bucket``, at most ``padded``."""
    return min(padded, -(-max(longest, 1) // bucket) * bucket)


class _HostStream:
    """Random access to this process's part of the (finite) training stream."""

    def __init__(self, source: Any, seed: int, global_batch: int, n_batches: int, process: int, n_procs: int,
                 bucket: int | None = None):  # fmt: skip
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
        self.bucket = bucket
        if bucket is not None:
            if bucket < 1:
                raise ValueError(f"data.length_bucket must be a positive number of steps, got {bucket}")
            first = source[0]
            if "inputs2" in first:
                raise ValueError("data.length_bucket does not support two-sequence (retrieval) tasks: "
                                 "pass --data.length-bucket None")  # fmt: skip
            self.lengths = _lengths(source)
            self.padded = int(np.shape(first["inputs"])[0])
            self._cut = (-1, 0)  # (global batch, its cut length): the batch's examples are read in a row

    def __len__(self) -> int:
        return self.length

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            perm = rng.permutation(self.n)
            if self.bucket is not None:
                perm = self._bucketed(perm, rng)
            self._perm, self._perm_epoch = perm, epoch
        return self._perm

    def _bucketed(self, perm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out, step = [], BUCKET_CHUNK * self.B
        for c in range(0, self.n, step):
            chunk = perm[c : c + step]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches = [chunk[i : i + self.B] for i in range(0, len(chunk), self.B)]
            out.extend(batches[i] for i in rng.permutation(len(batches)))
        return np.concatenate(out)

    def _example(self, g: int) -> int:
        epoch, i = divmod(g, self.n)
        return int(self._permutation(epoch)[i])

    def _batch_cut(self, b: int) -> int:
        """The length every example of global batch ``b`` is cut to (the same on every process)."""
        if self._cut[0] != b:
            longest = max(int(self.lengths[self._example(b * self.B + j)]) for j in range(self.B))
            self._cut = (b, _cut_length(longest, self.bucket, self.padded))
        return self._cut[1]

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        b, j = divmod(int(k), self.local)
        ex = self.source[self._example(b * self.B + self.offset + j)]
        if self.bucket is None:
            return ex
        cut = self._batch_cut(b)
        return {key: v[:cut] if key == "inputs" or (key == "targets" and np.ndim(v) >= 1) else v
                for key, v in ex.items()}  # fmt: skip


def train_dataset(
    source: Any, *, seed: int, global_batch: int, n_batches: int, process: int = 0, n_procs: int = 1,
    bucket: int | None = None,
) -> grain.MapDataset:
    """This process's batches ``(global_batch / n_procs, ...)`` for ``n_batches`` steps (cut to length
    buckets when ``bucket`` is set; see the module docstring)."""
    stream = _HostStream(source, seed, global_batch, n_batches, process, n_procs, bucket)
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
    source: Any, *, global_batch: int, process: int = 0, n_procs: int = 1, max_batches: int | None = None,
    bucket: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's part of each global evaluation batch, with ``"weights"`` (1 real, 0 padding).

    With ``bucket`` (and the whole split, ``max_batches=None``) the split is visited shortest first and
    every global batch is cut to its longest example rounded up to a multiple of ``bucket``: the same
    examples and, as the model masks padding, the same sums, for less compute."""
    if global_batch % n_procs:
        raise ValueError(f"data.eval_batch_size ({global_batch}) must be divisible by the number of processes ({n_procs})")
    n = len(source)
    local = global_batch // n_procs
    nb = -(-n // global_batch)
    if max_batches is not None:
        nb = min(nb, max_batches)
    order = np.arange(n)
    if bucket is not None:
        lengths = _lengths(source)
        padded = int(np.shape(source[0]["inputs"])[0])
        if max_batches is None:
            order = np.argsort(lengths, kind="stable")
    for b in range(nb):
        pos = b * global_batch + process * local + np.arange(local)
        real = pos < n
        batch = _take(source, order[np.where(real, pos, 0)])
        batch["weights"] = real.astype(np.float32)
        if bucket is not None:
            glob = order[np.minimum(b * global_batch + np.arange(global_batch), n - 1)]
            cut = _cut_length(int(lengths[glob].max()), bucket, padded)
            batch["inputs"] = batch["inputs"][:, :cut]
            if np.ndim(batch["targets"]) >= 2:
                batch["targets"] = batch["targets"][:, :cut]
        yield batch
