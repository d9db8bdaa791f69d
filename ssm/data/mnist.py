"""MNIST as a pixel sequence: sMNIST (row-major) and pMNIST (permuted), from the IDX files.

Reads the four official IDX files, raw or gzipped, in either spelling
(``train-images-idx3-ubyte`` / ``train-images.idx3-ubyte``). Preprocessing as S4
(state-spaces/s4 ``src/dataloaders/basic.py``): pixels ÷ 255 with no normalization, a (784, 1)
row-major sequence; validation = a seeded 10% hold-out of train; pMNIST applies the
bit-reversal permutation ``out[i] = x[perm[i]]`` (or a seeded random one with ``perm_seed``).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssm.data._files import (
    CorruptFileError,
    DatasetNotFoundError,
    cached,
    check_split,
    data_root,
    find_file,
    holdout_split,
    source,
)
from ssm.data.base import DatasetInfo
from ssm.data import validate
from ssm.data.options import DatasetOptions

_STEMS = {
    "train_images": "train-images{}idx3-ubyte",
    "train_labels": "train-labels{}idx1-ubyte",
    "test_images": "t10k-images{}idx3-ubyte",
    "test_labels": "t10k-labels{}idx1-ubyte",
}
LAYOUT = """  <root>/mnist/train-images-idx3-ubyte[.gz]   (or train-images.idx3-ubyte[.gz])
  <root>/mnist/train-labels-idx1-ubyte[.gz]
  <root>/mnist/t10k-images-idx3-ubyte[.gz]
  <root>/mnist/t10k-labels-idx1-ubyte[.gz]
  (torchvision's <root>/MNIST/raw/ and <root>/mnist/MNIST/raw/ are also searched)"""
HOW = "download the four IDX .gz files from http://yann.lecun.com/exdb/mnist/ (or a mirror) into <root>/mnist/."


@dataclass(frozen=True)
class Options(DatasetOptions):
    """MNIST as a pixel sequence (sMNIST; pMNIST with ``permute``)."""

    permute: bool = False  # pMNIST: permuted pixel order
    perm_seed: int | None = None  # pMNIST: seed of a random permutation (None: S4's bit reversal)
    val_fraction: float = 0.1  # of train held out for validation
    split_seed: int = 42  # seed of the train/val hold-out (reference: 42)


def bit_reversal_permutation(n: int) -> np.ndarray:
    """Indices 0..2^m−1 (2^m ≥ n) with their m bits reversed, keeping those < n, in order."""
    m = max(int(np.ceil(np.log2(n))), 0) if n > 1 else 0
    idx = np.arange(1 << m)
    rev = np.zeros_like(idx)
    for b in range(m):
        rev |= ((idx >> b) & 1) << (m - 1 - b)
    return rev[rev < n]


def permutation(cfg) -> np.ndarray | None:
    if not cfg.permute:
        return None
    seed = -1 if cfg.perm_seed is None else cfg.perm_seed
    if seed < 0:
        return bit_reversal_permutation(784)
    return np.random.RandomState(seed).permutation(784)


def _candidates(root: Path) -> list[Path]:
    return [root / "mnist", root / "MNIST" / "raw", root / "mnist" / "MNIST" / "raw", root]


def _locate(root: Path) -> dict[str, Path]:
    for d in _candidates(root):
        found = {}
        for key, stem in _STEMS.items():
            names = [stem.format(sep) + gz for sep in ("-", ".") for gz in ("", ".gz")]
            p = find_file(d, names) if d.is_dir() else None
            if p is None:
                break
            found[key] = p
        else:
            return found
    raise DatasetNotFoundError("mnist", _candidates(root), LAYOUT, HOW)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (big-endian header, uint8 payload) as a numpy array of its declared shape."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptFileError(path, f"cannot decompress/read ({e})") from e
    ndim = magic & 0xFF
    head = 4 + 4 * ndim
    if len(data) < head:
        raise CorruptFileError(path, f"file is {len(data)} bytes, shorter than its {head}-byte header")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise CorruptFileError(path, f"IDX magic number is {got:#010x}, expected {magic:#010x}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(data) - head != size:
        raise CorruptFileError(
            path, f"header declares shape {shape} ({size} bytes) but the payload has {len(data) - head} bytes"
        )
    return np.frombuffer(data, np.uint8, offset=head).reshape(shape)


def _arrays(root: Path) -> dict[str, np.ndarray]:
    files = _locate(root)

    def build():
        out = {}
        for part in ("train", "test"):
            x = read_idx(files[f"{part}_images"], 0x00000803)
            y = read_idx(files[f"{part}_labels"], 0x00000801)
            if x.shape[0] != y.shape[0]:
                raise CorruptFileError(
                    files[f"{part}_labels"],
                    f"{y.shape[0]} labels for {x.shape[0]} images in {files[f'{part}_images'].name}",
                )
            if x.shape[1:] != (28, 28):
                raise CorruptFileError(files[f"{part}_images"], f"images are {x.shape[1:]}, expected (28, 28)")
            validate.labels_in_range(files[f"{part}_labels"], y, 10, record=lambda i: f"label record {i} (byte {8 + i})")
            out[f"{part}_x"], out[f"{part}_y"] = x.reshape(len(x), 784), y
        return out

    return cached(root, "mnist", {}, list(files.values()), build)


def info(cfg) -> DatasetInfo:
    return DatasetInfo(task="classification", d_input=1, d_output=10, seq_len=784, tokens=False)


def load(cfg, split: str):
    check_split(split)
    a = _arrays(data_root(cfg))
    if split == "test":
        x, y = a["test_x"], a["test_y"]
    else:
        tr, va = holdout_split(len(a["train_x"]), cfg.val_fraction, cfg.split_seed)
        idx = tr if split == "train" else va
        x, y = a["train_x"][idx], a["train_y"][idx]
    perm = permutation(cfg)
    if perm is not None:
        x = x[:, perm]
    inputs = (x.astype(np.float32) / np.float32(255.0))[:, :, None]
    return source(inputs=inputs, targets=y.astype(np.int32))
