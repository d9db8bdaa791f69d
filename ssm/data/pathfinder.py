"""LRA Pathfinder and Path-X: are the two marked dots joined by one dashed contour? 2 classes.

Reads the release layout ``pathfinder<S>/<difficulty>/{metadata/<b>.npy, imgs/<b>/sample_<i>.png}``
(``S`` = 32, 64, 128 (Path-X) or 256; difficulty ``curv_baseline``, ``curv_contour_length_9`` or
``curv_contour_length_14``) from the official archive or from ``scripts/prepare_data.py
pathfinder`` (same layout). A metadata file is plain text despite its extension: one line per
image, ``<folder> <file> <n> <label> ...``.

Preprocessing as state-spaces/s4 ``PathFinder``: samples = metadata files in integer order, lines
in file order, empty (0-byte) images skipped; a random split into N − 2⌊N/10⌋ / ⌊N/10⌋ / ⌊N/10⌋
(train / val / test) with seed 42; PIL ``convert('L')``, ÷255 (S4 config ``center: False``: pixels
in [0, 1]; ``normalize=True`` maps to [−1, 1] as S4's code default and S5); flattened row-major
to ``(S², 1)``. The split permutation is numpy's, not torch's ``random_split``: the sizes match,
the index sets cannot without torch.

Options (``DataConfig``): ``resolution`` = image side (32; 128 for Path-X, as S4's
``dataset.resolution``), ``contour`` (14: the LRA "hard" set), ``normalize`` (False).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ssm.data._files import CorruptFileError, DatasetNotFoundError, cached, check_split, data_root
from ssm.data.base import DatasetInfo
from ssm.data import validate
from ssm.data.options import DatasetOptions

SIZES = (32, 64, 128, 256)
DIFFICULTY = {6: "curv_baseline", 9: "curv_contour_length_9", 14: "curv_contour_length_14"}
SPLIT_SEED = 42


@dataclass(frozen=True)
class Options(DatasetOptions):
    """LRA Pathfinder / Path-X."""

    resolution: int = 32  # image side: 32, 64, 128 (Path-X) or 256
    contour: int = 14  # contour length: 6, 9 or 14 (LRA "hard")
    normalize: bool = False  # map pixels to [-1, 1] instead of [0, 1]


def options(cfg) -> tuple[int, int]:
    """(image side, contour length) from the config, validated."""
    size = cfg.resolution
    contour = cfg.contour
    if size not in SIZES:
        raise ValueError(f"data.resolution must be one of {SIZES} for pathfinder (got {size}): pass --data.resolution N")
    if contour not in DIFFICULTY:
        raise ValueError(f"data.contour must be one of {tuple(DIFFICULTY)} (got {contour}): pass --data.contour N")
    return size, contour


def candidates(root: Path, size: int, contour: int) -> list[Path]:
    tail = Path(f"pathfinder{size}") / DIFFICULTY[contour]
    return [
        root / "pathfinder" / tail,
        root / tail,
        root / "lra_release" / "lra_release" / tail,
        root / "lra_release" / tail,
    ]


def command(root: Path, size: int, contour: int) -> str:
    return f"python scripts/prepare_data.py pathfinder --size {size} --contour {contour} --out {root / 'pathfinder'}"


def find(root: Path, size: int, contour: int) -> Path:
    looked = candidates(root, size, contour)
    for d in looked:
        if (d / "metadata").is_dir() and any((d / "metadata").glob("*.npy")):
            return d
    layout = (
        f"  <root>/pathfinder/pathfinder{size}/{DIFFICULTY[contour]}/metadata/<batch>.npy  (text, one line per image:\n"
        f"      'imgs/<batch> sample_<i>.png <i> <label 0/1> ...')\n"
        f"  <root>/pathfinder/pathfinder{size}/{DIFFICULTY[contour]}/imgs/<batch>/sample_<i>.png  ({size}x{size} 8-bit gray)\n"
        f"  (or the same under <root>/ or the extracted release <root>/lra_release/lra_release/)"
    )
    how = (
        f"generate it offline with `{command(root, size, contour)}` (the original snakes algorithm; add "
        f"--n N for fewer than 200,000 images), or extract pathfinder{size}/ from the LRA release lra_release.gz"
    )
    raise DatasetNotFoundError("pathfinder" if size != 128 else "pathfinder (Path-X)", looked, layout, how)


def metadata_files(folder: Path) -> list[Path]:
    files = [p for p in (folder / "metadata").glob("*.npy")]
    bad = [p.name for p in files if not p.stem.isdigit()]
    if bad:
        raise CorruptFileError(folder / "metadata", f"unexpected files {bad}: expected <batch number>.npy")
    return sorted(files, key=lambda p: int(p.stem))


def read_metadata(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Image paths and labels in release order (files by batch number, lines in order)."""
    paths, labels = [], []
    for meta in metadata_files(folder):
        try:
            lines = meta.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise CorruptFileError(meta, f"not a text metadata file ({e})") from e
        for k, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            f = line.split(" ")
            if len(f) < 4 or f[3] not in ("0", "1"):
                raise CorruptFileError(meta, f"expected '<folder> <file> <n> <label 0/1> ...', got {validate.cut(line)}",
                                       record=f"line {k}",
                                       fix="regenerate it (scripts/prepare_data.py pathfinder) or extract the LRA release")  # fmt: skip
            paths.append(folder / f[0] / f[1])
            labels.append(int(f[3]))
    return paths, np.asarray(labels, np.int32)


def _read_png(path: Path, size: int) -> np.ndarray | None:
    """The image as uint8 (size²,), or None for the release's empty (0-byte) files."""
    try:
        if path.stat().st_size == 0:
            return None
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"))
    except FileNotFoundError as e:
        raise CorruptFileError(path, "listed in the metadata but missing") from e
    except OSError as e:
        raise CorruptFileError(path, f"not a readable image ({e})") from e
    if a.shape != (size, size):
        raise CorruptFileError(path, f"expected a {size}x{size} image, got {a.shape}")
    return a.reshape(-1)


def _arrays(root: Path, size: int, contour: int) -> dict[str, np.ndarray]:
    folder = find(root, size, contour)

    def build() -> dict[str, np.ndarray]:
        paths, labels = read_metadata(folder)
        if not paths:
            raise CorruptFileError(folder / "metadata", "the metadata files list no images")
        pixels = np.zeros((len(paths), size * size), np.uint8)  # filled in place: Path-X is 3.3 GB
        keep = np.zeros(len(paths), bool)

        def read(k: int) -> None:
            img = _read_png(paths[k], size)
            if img is not None:
                pixels[k], keep[k] = img, True

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(read, range(len(paths))))
        if not keep.all():
            pixels = pixels[keep]
        n = int(keep.sum())
        validate.not_empty(folder / "metadata", n // 10, f"the val and test splits (⌊N/10⌋ of N = {n} non-empty images each)",
                           "generate or extract at least 10 images")  # fmt: skip
        return {"pixels": pixels, "labels": labels[keep]}

    images = sorted(p for p in (folder / "imgs").iterdir() if p.is_dir()) if (folder / "imgs").is_dir() else []
    return cached(root, f"pathfinder{size}-{contour}", {"size": size, "contour": contour},
                  metadata_files(folder) + images, build)  # fmt: skip


def split_indices(n: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """S4's 80/10/10 split sizes: N − 2⌊N/10⌋ / ⌊N/10⌋ / ⌊N/10⌋ consecutive blocks of a permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = n_test = n // 10
    n_train = n - n_val - n_test
    return {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}


class PixelSource:
    """Random access to ``{"inputs": (S², 1) float32, "targets": int32}`` over uint8 pixels
    (kept as bytes: Path-X as float32 would be 13 GB)."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, index: np.ndarray, normalize: bool):
        self.pixels, self.labels, self.index = pixels, labels, np.asarray(index)
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        j = self.index[i]
        x = self.pixels[j].astype(np.float32) / np.float32(255)  # ToTensor
        if self.normalize:
            x = (x - np.float32(0.5)) / np.float32(0.5)  # Normalize(0.5, 0.5)
        return {"inputs": x[:, None], "targets": np.int32(self.labels[j])}


def info(cfg) -> DatasetInfo:
    size, _ = options(cfg)
    return DatasetInfo(task="classification", d_input=1, d_output=2, seq_len=size * size)


def load(cfg, split: str) -> PixelSource:
    check_split(split)
    size, contour = options(cfg)
    a = _arrays(data_root(cfg), size, contour)
    idx = split_indices(len(a["labels"]))[split]
    return PixelSource(a["pixels"], a["labels"], idx, bool(cfg.normalize))
