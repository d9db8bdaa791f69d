"""scikit-learn's 8x8 handwritten digits (1797 images, 10 classes) read pixel by pixel.

Ships with scikit-learn (no download): each image becomes a length-64 sequence of one channel in
[0, 1] (raster order; ``permute=True`` applies a fixed random pixel permutation). Fixed splits: 20% test
(seed 0), then ``val_fraction`` (default 0.1) of the rest as validation (seed 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssm.data.base import SPLITS, ArraySource, DatasetInfo, split_indices
from ssm.data.options import DatasetOptions

SEQ_LEN = 64
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Options(DatasetOptions):
    """scikit-learn digits."""

    permute: bool = False  # a fixed random pixel permutation (seed 42)
    val_fraction: float = 0.1  # of the non-test images held out for validation


def info(cfg) -> DatasetInfo:
    return DatasetInfo(task="classification", d_input=1, d_output=10, seq_len=SEQ_LEN)


def load(cfg, split: str) -> ArraySource:
    if split not in SPLITS:
        raise ValueError(f"digits: unknown split {split!r}; choose one of {SPLITS}")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, SEQ_LEN, 1)
    y = d.target.astype(np.int32)
    if cfg.permute:
        x = x[:, np.random.default_rng(42).permutation(SEQ_LEN)]
    trainval, test = split_indices(len(y), TEST_FRACTION, seed=0)
    val_fraction = cfg.val_fraction
    keep, val = split_indices(len(trainval), val_fraction, seed=1)
    idx = {"train": trainval[keep], "val": trainval[val], "test": test}[split]
    return ArraySource(inputs=x[idx], targets=y[idx])
