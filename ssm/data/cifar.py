"""CIFAR-10 as a pixel sequence, from the python pickle batches (``cifar-10-batches-py``).

- sCIFAR (default): RGB ``ToTensor`` then per-channel ``Normalize((0.4914, 0.4822, 0.4465),
  (0.247, 0.243, 0.261))`` (state-spaces/s4 ``CIFAR10``), a (1024, 3) row-major sequence.
- LRA Image (``grayscale=True``): PIL ``convert('L')``, ``Normalize(122.6/255, 61/255)``, (1024, 1).
- Noise-padded sCIFAR (``noise_pad=1024``, HOPE-SSM ``noisycifar_*.py``): RGB normalized with std
  (0.2023, 0.1994, 0.2010), followed by ``noise_pad`` rows of i.i.d. Uniform[0, 1) noise.
  Training examples get fresh noise on every read; val/test noise is fixed per example so
  evaluations are comparable.

Train = data_batch_1..5 in order minus a seeded ``val_fraction`` (default 0.1) hold-out.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssm.data._files import (
    CorruptFileError,
    DatasetNotFoundError,
    cached,
    check_split,
    data_root,
    holdout_split,
    source,
)
from ssm.data.base import DatasetInfo
from ssm.data import validate
from ssm.data.options import DatasetOptions

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.247, 0.243, 0.261)
STD_HOPE = (0.2023, 0.1994, 0.2010)
GRAY_MEAN, GRAY_STD = 122.6 / 255.0, 61.0 / 255.0
FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
LAYOUT = "  <root>/cifar/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}   (or <root>/cifar-10-batches-py/)"
HOW = "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into <root>/cifar/."


@dataclass(frozen=True)
class Options(DatasetOptions):
    """CIFAR-10 as a pixel sequence (sCIFAR)."""

    grayscale: bool = False  # LRA's grayscale image task (1 channel)
    normalize: bool = True  # per-channel normalization (S4's constants)
    noise_pad: int = 0  # HOPE's noise padding: rows of noise appended after the image
    val_fraction: float = 0.1  # of train held out for validation
    split_seed: int = 42  # seed of the train/val hold-out


def _candidates(root: Path) -> list[Path]:
    return [root / "cifar" / "cifar-10-batches-py", root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"]


def _locate(root: Path) -> Path:
    for d in _candidates(root):
        if all((d / f).is_file() for f in FILES):
            return d
    raise DatasetNotFoundError("cifar10", _candidates(root), LAYOUT, HOW)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python-2 pickle batch → (uint8 (N, 3072) rows of R|G|B planes, int labels (N,))."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated pickles raise EOFError / UnpicklingError / ValueError
        raise CorruptFileError(path, f"cannot unpickle ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise CorruptFileError(path, "not a CIFAR batch dictionary")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise CorruptFileError(path, f"missing 'data'/'labels' keys (has {sorted(d)})")
    x = np.asarray(d["data"])
    y = np.asarray(d["labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
        raise CorruptFileError(path, f"data is {x.dtype}{x.shape} with {len(y)} labels; expected uint8 (N, 3072)")
    validate.labels_in_range(path, y, 10, record=lambda i: f"image {i} of the batch",
                             fix="restore the batch from cifar-10-python.tar.gz")  # fmt: skip
    return x, y.astype(np.int32)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """PIL ``convert('L')`` of uint8 (..., 3) pixels (computed by PIL itself for exact parity)."""
    from PIL import Image

    flat = np.ascontiguousarray(rgb.reshape(-1, 1, 3))
    return np.asarray(Image.fromarray(flat, "RGB").convert("L")).reshape(rgb.shape[:-1])


def _arrays(root: Path) -> dict[str, np.ndarray]:
    d = _locate(root)

    def build():
        parts = [read_batch(d / f) for f in FILES]
        rgb = lambda x: x.reshape(-1, 3, 1024).transpose(0, 2, 1)  # (N, 1024 pixels, RGB)
        return {
            "train_x": rgb(np.concatenate([p[0] for p in parts[:5]])),
            "train_y": np.concatenate([p[1] for p in parts[:5]]),
            "test_x": rgb(parts[5][0]),
            "test_y": parts[5][1],
        }

    return cached(root, "cifar10", {}, [d / f for f in FILES], build)


def info(cfg) -> DatasetInfo:
    gray = cfg.grayscale
    return DatasetInfo(
        task="classification", d_input=1 if gray else 3, d_output=10, seq_len=1024 + cfg.noise_pad
    )


class NoisePadSource:
    """Images (N, 1024, 3) followed by ``pad`` rows of Uniform[0, 1) noise drawn at read time.

    With ``fresh``, the k-th read of example i draws from the generator seeded (seed, i, k), so
    every epoch sees new noise, reproducibly; otherwise (seed, i) always.
    """

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, pad: int, seed: int, fresh: bool):
        self.inputs, self.targets, self.pad, self.seed, self.fresh = inputs, targets, pad, seed, fresh
        self._reads = np.zeros(len(inputs), np.int64)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        i = int(i)
        key = (self.seed, i, int(self._reads[i])) if self.fresh else (self.seed, i)
        self._reads[i] += 1
        noise = np.random.default_rng(key).random((self.pad, self.inputs.shape[-1]), dtype=np.float32)
        return {"inputs": np.concatenate([self.inputs[i], noise]), "targets": self.targets[i]}


def load(cfg, split: str):
    check_split(split)
    a = _arrays(data_root(cfg))
    if split == "test":
        x, y = a["test_x"], a["test_y"]
    else:
        tr, va = holdout_split(len(a["train_x"]), cfg.val_fraction, cfg.split_seed)
        idx = tr if split == "train" else va
        x, y = a["train_x"][idx], a["train_y"][idx]
    pad = cfg.noise_pad
    normalize = cfg.normalize
    if cfg.grayscale:
        if pad:
            raise ValueError("data.noise_pad is for RGB sCIFAR; unset --data.grayscale or --data.noise-pad")
        g = grayscale(x).astype(np.float32)[..., None] / np.float32(255.0)
        if normalize:
            g = (g - np.float32(GRAY_MEAN)) / np.float32(GRAY_STD)
        return source(inputs=g, targets=y)
    v = x.astype(np.float32) / np.float32(255.0)
    if normalize:
        std = STD_HOPE if pad else STD
        v = (v - np.asarray(MEAN, np.float32)) / np.asarray(std, np.float32)
    if pad:
        return NoisePadSource(v, y, pad, cfg.seed + 7919 * ("train", "val", "test").index(split), split == "train")
    return source(inputs=v, targets=y)
