"""The data interface: what a dataset module provides to the training system.

A dataset module ``ssm/data/<name>.py`` exposes

- ``info(cfg: DataConfig) -> DatasetInfo``: task, input/output sizes, maximum length;
- ``load(cfg: DataConfig, split: str) -> ArraySource`` for ``split`` in ``{"train", "val", "test"}``,

and is registered by name in :data:`ssm.data.DATASETS`. An example is a dict of numpy arrays:
``"inputs"`` (``(L,)`` int32 tokens or ``(L, C)`` float32), ``"targets"`` (int32 scalar class, or an
array for regression / language modelling), optional ``"lengths"`` (int32 scalar: true length
before padding) and, for two-sequence retrieval, ``"inputs2"`` and ``"lengths2"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

Task = Literal["classification", "regression", "lm", "retrieval", "generation"]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset that the model is built from."""

    task: Task
    d_input: int  # float channels C, or the vocabulary size when ``tokens``
    d_output: int  # classes / regression dims / vocabulary size
    seq_len: int  # maximum sequence length L
    tokens: bool = False  # integer inputs -> embedding encoder
    vocab: list[str] | None = None

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression", "lm", "retrieval", "generation"):
            raise ValueError(f"DatasetInfo.task: unknown task {self.task!r}")
        for name in ("d_input", "d_output", "seq_len"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and v > 0):
                raise ValueError(f"DatasetInfo.{name} must be a positive integer (got {v!r})")


class ArraySource:
    """A random-access (Grain) source over in-memory numpy arrays with a common first axis.

    ``ArraySource(inputs=x, targets=y, lengths=n)``; ``source[i]`` is ``{"inputs": x[i], ...}``.
    """

    def __init__(self, **arrays: np.ndarray):
        if "inputs" not in arrays or "targets" not in arrays:
            raise ValueError(f"ArraySource needs 'inputs' and 'targets' arrays (got {sorted(arrays)})")
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        n = {k: len(v) for k, v in arrays.items()}
        if len(set(n.values())) != 1:
            raise ValueError(f"ArraySource arrays must have the same length, got {n}")
        self.arrays: Mapping[str, np.ndarray] = arrays
        self._n = next(iter(n.values()))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[i] for k, v in self.arrays.items()}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v.shape}{v.dtype}" for k, v in self.arrays.items())
        return f"ArraySource({shapes})"


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into (kept, held-out) sorted index arrays, with
    ``round(fraction * n)`` held out (e.g. a validation split carved from a training set)."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(fraction * n))
    return np.sort(perm[k:]), np.sort(perm[:k])
