"""Pixel-level MNIST density modelling (registered as ``mnist_gen``): 784 steps, 256 classes.

As srush/annotated-s4's generative MNIST (s4/data.py ``create_mnist_dataset``, s4/s4.py ``StackedModel``):
pixels stay integers 0..255
(no scaling), read row-major; an example's targets are the 784 pixels, its inputs the same sequence
shifted right by one with a 0 in front, so the output at step t predicts pixel t from pixels < t.
The task is ``"generation"``: the loss is the NLL in nats per pixel, reported with
``bits_per_dim = NLL / ln 2``. The files, splits and the optional permutation are those of
:mod:`ssm.data.mnist` (validation: a seeded 10% hold-out of train).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssm.data import mnist
from ssm.data._files import check_split, data_root, holdout_split, source
from ssm.data.base import DatasetInfo
from ssm.data.options import DatasetOptions

START_TOKEN = 0  # the first input of every sequence (its targets start at pixel 0)
IMAGE_SHAPE = (28, 28)


Options = mnist.Options  # the files, splits and optional permutation of sMNIST

def info(cfg) -> DatasetInfo:
    return DatasetInfo(task="generation", d_input=256, d_output=256, seq_len=784, tokens=True)


def load(cfg, split: str):
    check_split(split)
    a = mnist._arrays(data_root(cfg))
    if split == "test":
        x = a["test_x"]
    else:
        tr, va = holdout_split(len(a["train_x"]), cfg.val_fraction, cfg.split_seed)
        x = a["train_x"][tr if split == "train" else va]
    perm = mnist.permutation(cfg)
    if perm is not None:
        x = x[:, perm]
    targets = x.astype(np.int32)
    inputs = np.concatenate([np.full((len(x), 1), START_TOKEN, np.int32), targets[:, :-1]], axis=1)
    return source(inputs=inputs, targets=targets)
