"""Shared plumbing of the dataset loaders: locating files, clear errors, the on-disk cache,
seeded splits, torchtext-style vocabularies and a strict WAV reader.

Every loader reads the release format exactly as shipped; nothing here knows about one
dataset in particular.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import tempfile
import wave
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

CACHE_VERSION = 2  # 2: caches are built by validating readers and keyed by content hashes


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looked."""

    def __init__(self, name: str, looked_in: Sequence[Path | str], layout: str, how: str):
        places = "\n".join(f"  {p}" for p in looked_in)
        super().__init__(
            f"Dataset '{name}' not found. Looked in:\n{places}\n"
            f"Expected layout:\n{layout.rstrip()}\n"
            f"How to get it: {how}\n"
            f"(Set --data.root or $DATA_PATH to the folder holding it.)"
        )


class CorruptFileError(ValueError):
    """A dataset file (or folder) exists but is truncated, malformed or holds invalid values.

    The message names the file, the record (``"line 12"``, ``"record 5"``) when there is one, the
    problem and, when given, the fix: ``Bad dataset file <path>, line 12: <problem>. Fix: <fix>``.
    """

    def __init__(self, path: Path | str, problem: str, *, record: str | None = None, fix: str | None = None,
                 what: str = "dataset file"):  # fmt: skip
        self.path, self.record, self.problem, self.fix = Path(path), record, problem, fix
        where = f"{path}, {record}" if record else f"{path}"
        super().__init__(f"Bad {what} {where}: {problem}" + (f". Fix: {fix}" if fix else ""))


def data_root(cfg) -> Path:
    root = getattr(cfg, "root", None) or os.environ.get("DATA_PATH") or "./data"
    return Path(root).expanduser()


def first_dir(candidates: Iterable[Path], ok: Callable[[Path], bool]) -> Path | None:
    for c in candidates:
        if c.is_dir() and ok(c):
            return c
    return None


def find_file(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` that exists in ``folder`` (spelling variants of one file)."""
    for n in names:
        p = folder / n
        if p.is_file():
            return p
    return None


# --------------------------------------------------------------------------- cache


def _cache_dir(root: Path) -> Path:
    """``<root>/.cache`` when writable, else a per-root folder in the user cache (read-only data)."""
    d = root / ".cache"
    try:
        d.mkdir(parents=True, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssm"
    tag = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    d = base / tag
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached(
    root: Path,
    name: str,
    options: dict,
    sources: Sequence[Path],
    build: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Preprocessed arrays, built once and kept as ``.npz`` keyed by options and source files.

    The key holds a content hash of every source file (a folder stands for the files directly in
    it), so any edit rebuilds, even one in place that keeps the size and the mtime
    (see :func:`ssm.data.fingerprint.fingerprints`).
    """
    from ssm.data.fingerprint import fingerprints

    cache_dir = _cache_dir(root)
    sig = fingerprints(sources, cache_dir, name)
    key = json.dumps([CACHE_VERSION, name, options, sig], sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    path = cache_dir / f"{name}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # a half-written cache from a killed run: rebuild it
            path.unlink(missing_ok=True)
    arrays = build()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return arrays


# --------------------------------------------------------------------------- splits


def holdout_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): a seeded random permutation, the last ``round(n·f)`` go to val.

    Mirrors the shape of torch ``random_split`` (first lengths[0] of a permutation to train);
    the exact torch index sets cannot be reproduced without torch.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and not 0 < n_val < n:
        raise ValueError(
            f"data.val_fraction = {val_fraction} of {n} training examples leaves {n_val} for validation and "
            f"{n - n_val} for training; add examples, or pass --data.val-fraction 0 to train without validation"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n - n_val]), np.sort(perm[n - n_val :])


# --------------------------------------------------------------------------- vocabularies


def torchtext_vocab(
    sequences: Iterable[Iterable[str]], specials: Sequence[str], min_freq: int = 1
) -> list[str]:
    """torchtext ≥ 0.12 ``build_vocab_from_iterator`` order: specials, then tokens by
    descending count with ties broken by ascending string order; counts < min_freq dropped."""
    counts: collections.Counter[str] = collections.Counter()
    for s in sequences:
        counts.update(s)
    for s in specials:
        counts.pop(s, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return list(specials) + [t for t, c in ranked if c >= min_freq]


def encode_padded(
    seqs: Sequence[Sequence[str]], vocab: list[str], length: int, *, unk: str, eos: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Map tokens to ids (OOV → ``unk``), truncate to ``length`` (− 1 when appending ``eos``),
    append ``eos``, right-pad with id 0. Returns ``(ids (N, length) int32, lengths (N,) int32)``."""
    index = {t: i for i, t in enumerate(vocab)}
    unk_id = index[unk]
    keep = length - (1 if eos is not None else 0)
    ids = np.zeros((len(seqs), length), np.int32)
    lengths = np.zeros(len(seqs), np.int32)
    for i, s in enumerate(seqs):
        row = [index.get(t, unk_id) for t in s[:keep]]
        if eos is not None:
            row.append(index[eos])
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    return ids, lengths


# --------------------------------------------------------------------------- audio


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """A PCM WAV file as ``(sample_rate, samples (n, channels) float64 in [−1, 1))``.

    Integer PCM of 8 (unsigned), 16, 24 or 32 bits. A header that promises more frames than
    the file holds, or an unreadable header, raises :class:`CorruptFileError` naming the file.
    """
    try:
        with wave.open(str(path), "rb") as w:
            rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise CorruptFileError(path, f"not a readable PCM WAV file ({e})") from e
    if len(raw) != n * ch * width:
        raise CorruptFileError(
            path, f"header declares {n} frames but only {len(raw) // max(ch * width, 1)} are present"
        )
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)
    else:
        raise CorruptFileError(path, f"unsupported sample width {width} bytes")
    return rate, x.reshape(-1, ch)


def write_wav(path: Path, samples_int16: np.ndarray, rate: int) -> None:
    """Write mono/multichannel int16 PCM (used by tests and tools to build fixtures)."""
    a = np.asarray(samples_int16, dtype="<i2")
    ch = 1 if a.ndim == 1 else a.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ch)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(a.tobytes())


# --------------------------------------------------------------------------- sources


def source(**arrays: np.ndarray):
    """An :class:`ssm.data.base.ArraySource` over per-example arrays (leading axis = example)."""
    from ssm.data.base import ArraySource

    return ArraySource(**arrays)


def opt(cfg, name: str, default):
    """Dataset option ``cfg.<name>``; a missing field or ``None`` means the dataset's default."""
    v = getattr(cfg, name, None)
    return default if v is None else v


def check_split(split: str) -> str:
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    return split
