"""Speech Commands v0.02 (registered as ``sc35`` and ``sc10``): raw 16 kHz waveforms or MFCCs.

Release layout (``speech_commands_v0.02.tar.gz``, flat): one folder per word of 16 kHz mono
16-bit clips, plus ``validation_list.txt`` and ``testing_list.txt``. Preprocessing as
state-spaces/s4 ``datasets/sc.py``:

- ``sc35``: 35 classes in S4's ``ALL_CLASSES`` order; val/test from the two list files, every
  other clip is train; clips zero-padded at the end to 16000 samples.
- ``sc10``: yes no up down left right on off stop go; clips shorter than 16000 dropped; the lists
  are NOT used: stratified sklearn ``train_test_split(train_size=0.7, random_state=0)``, then the
  rest 50/50 with ``random_state=1`` (val, test). Clips are read in sorted name order per class.
- raw: each time index t standardized with the train clips' mean and unbiased std at t:
  ``(x − μ_t)/(σ_t + 1e-5)``; (L, 1) sequences. ``resolution=r`` keeps every r-th sample
  (S4's 8 kHz zero-shot test uses r = 2).
- ``mfcc=True``: torchaudio ``MFCC(16000, n_mfcc=20, log_mels=True, n_fft=200, n_mels=64)``
  (Hann 200, hop 100, centered/reflect, power 2, HTK mel, log(mel + 1e-6), orthonormal DCT-II),
  (161, 20) per clip, standardized per coefficient over train clips and frames.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssm.data._files import (
    CorruptFileError,
    DatasetNotFoundError,
    cached,
    check_split,
    data_root,
    read_wav,
    source,
)
from ssm.data.base import DatasetInfo
from ssm.data import validate
from ssm.data.options import DatasetOptions

ALL_CLASSES = (
    "bed cat down five forward go house left marvin no on right sheila tree up visual yes backward bird "
    "dog eight follow four happy learn nine off one seven six stop three two wow zero"
).split()
SUBSET_CLASSES = "yes no up down left right on off stop go".split()
RATE, LENGTH = 16000, 16000
N_MFCC, N_MELS, N_FFT, HOP = 20, 64, 200, 100
LAYOUT = (
    "  <root>/speech_commands/{yes,no,...,zero}/<hash>_nohash_<k>.wav   (35 word folders, 16 kHz mono 16-bit)\n"
    "  <root>/speech_commands/validation_list.txt, testing_list.txt"
)
HOW = (
    "download http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz and extract it into "
    "<root>/speech_commands/ (it unpacks flat)."
)


def _candidates(root: Path) -> list[Path]:
    return [root / "speech_commands", root / "SpeechCommands" / "speech_commands_v0.02", root / "speech_commands_v0.02"]


def _locate(root: Path, classes) -> Path:
    for d in _candidates(root):
        if all((d / c).is_dir() for c in classes) and (d / "validation_list.txt").is_file() and (d / "testing_list.txt").is_file():
            return d
    raise DatasetNotFoundError("speech_commands", _candidates(root), LAYOUT, HOW)


def _read_clip(path: Path) -> np.ndarray:
    rate, s = read_wav(path)
    if rate != RATE or s.shape[1] != 1 or len(s) > LENGTH or len(s) == 0:
        raise CorruptFileError(path, f"expected a 16 kHz mono clip of 1..16000 samples, got {rate} Hz, shape {s.shape}")
    return s[:, 0]


# --------------------------------------------------------------------------- MFCC (numpy)


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int = N_FFT // 2 + 1, n_mels: int = N_MELS, sr: int = RATE) -> np.ndarray:
    """HTK-scale triangular filters, unnormalized: (n_freqs, n_mels), as torchaudio ``melscale_fbanks``."""
    freqs = np.linspace(0, sr // 2, n_freqs)
    f_pts = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def dct_matrix(n_mfcc: int = N_MFCC, n_mels: int = N_MELS) -> np.ndarray:
    """Orthonormal DCT-II as an (n_mels, n_mfcc) matrix (mfcc = logmel @ D)."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    d = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
    d[0] /= np.sqrt(2.0)
    return d.T


def mfcc(x: np.ndarray) -> np.ndarray:
    """(N, T) waveforms → (N, frames, 20) MFCCs (frames = T // 100 + 1)."""
    pad = N_FFT // 2
    xp = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
    frames = 1 + (xp.shape[1] - N_FFT) // HOP
    idx = np.arange(frames)[:, None] * HOP + np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    spec = np.abs(np.fft.rfft(xp[:, idx] * window, axis=-1)) ** 2  # (N, frames, 101)
    mel = spec @ mel_filterbank()
    return np.log(mel + 1e-6) @ dct_matrix()


# --------------------------------------------------------------------------- datasets


def _clips(d: Path, classes) -> tuple[list[Path], np.ndarray]:
    files, labels = [], []
    for k, c in enumerate(classes):
        fs = sorted((d / c).glob("*.wav"))
        if not fs:
            raise CorruptFileError(d / c, "class folder holds no .wav clips")
        files += fs
        labels += [k] * len(fs)
    return files, np.asarray(labels, np.int32)


def _read_list(path: Path, d: Path) -> set[str]:
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"not UTF-8 text (byte {e.start})", fix="restore it from the release archive") from None
    names = {line.strip() for line in lines if line.strip()}
    for k, line in enumerate(lines, 1):
        if line.strip() and not (d / line.strip()).is_file():
            raise CorruptFileError(path, f"lists {validate.cut(line.strip())}, which is not in {d}", record=f"line {k}",
                                   fix="restore the clip or the list from the release archive")  # fmt: skip
    validate.not_empty(path, len(names), "the clip list", "restore it from the release archive")
    return names


def _raw(name: str, root: Path) -> dict[str, np.ndarray]:
    classes = ALL_CLASSES if name == "sc35" else SUBSET_CLASSES
    d = _locate(root, classes)
    lists = [d / "validation_list.txt", d / "testing_list.txt"]

    def build():
        files, labels = _clips(d, classes)
        x = np.zeros((len(files), LENGTH), np.float32)
        n = np.zeros(len(files), np.int32)
        for i, f in enumerate(files):
            s = _read_clip(f)
            x[i, : len(s)], n[i] = s, len(s)
        if name == "sc35":
            val, test = (_read_list(p, d) for p in lists)
            rel = [f"{f.parent.name}/{f.name}" for f in files]
            split = np.asarray([2 if r in test else 1 if r in val else 0 for r in rel], np.int8)
            validate.not_empty(d, int((split == 0).sum()), "the train split (clips in neither list)",
                               "restore the word folders from the release archive")  # fmt: skip
        else:
            from sklearn.model_selection import train_test_split

            keep = np.flatnonzero(n == LENGTH)
            x, labels = x[keep], labels[keep]
            idx = np.arange(len(x))
            tr, rest = train_test_split(idx, train_size=0.7, random_state=0, shuffle=True, stratify=labels)
            va, te = train_test_split(rest, train_size=0.5, random_state=1, shuffle=True, stratify=labels[rest])
            order = np.concatenate([tr, va, te])
            x, labels = x[order], labels[order]
            split = np.repeat(np.int8([0, 1, 2]), [len(tr), len(va), len(te)])
        return {"x": x, "y": labels, "split": split}

    dirs = [d / c for c in classes]  # folder mtimes change when clips are added or removed
    return cached(root, name, {}, dirs + lists, build)


def _features(name: str, root: Path, use_mfcc: bool) -> dict[str, np.ndarray]:
    def build():
        a = _raw(name, root)
        x, split = a["x"], a["split"]
        train = split == 0
        if use_mfcc:
            f = mfcc(x.astype(np.float64))
            mu = f[train].mean(axis=(0, 1))
            sd = f[train].std(axis=(0, 1), ddof=1)
            z = (f - mu) / (sd + 1e-5)
        else:
            mu = x[train].mean(0, dtype=np.float64)
            sd = x[train].std(0, ddof=1, dtype=np.float64)
            z = ((x - mu) / (sd + 1e-5))[..., None]
        return {"x": z.astype(np.float32), "y": a["y"], "split": split}

    if not use_mfcc:
        return build()  # cheap from the cached raw clips; not stored twice
    classes = ALL_CLASSES if name == "sc35" else SUBSET_CLASSES
    d = _locate(root, classes)
    sources = [d / c for c in classes] + [d / "validation_list.txt", d / "testing_list.txt"]
    return cached(root, f"{name}-mfcc", {}, sources, build)


@dataclass(frozen=True)
class Options(DatasetOptions):
    """Speech Commands (SC35 / SC10)."""

    mfcc: bool = False  # 20 MFCCs x 161 frames instead of the 16 kHz waveform
    resolution: int = 1  # keep every r-th sample (zero-shot evaluation at 16/r kHz)


def _module(name: str) -> types.ModuleType:
    m = types.ModuleType(f"ssm.data.speech_commands.{name}", f"Speech Commands '{name}' (see ssm.data.speech_commands).")
    n_classes = 35 if name == "sc35" else 10

    def info(cfg) -> DatasetInfo:
        if cfg.mfcc:
            return DatasetInfo(task="classification", d_input=N_MFCC, d_output=n_classes, seq_len=LENGTH // HOP + 1)
        r = cfg.resolution
        return DatasetInfo(task="classification", d_input=1, d_output=n_classes, seq_len=-(-LENGTH // r))

    def load(cfg, split: str):
        check_split(split)
        a = _features(name, data_root(cfg), bool(cfg.mfcc))
        sel = a["split"] == ("train", "val", "test").index(split)
        x = a["x"][sel]
        r = cfg.resolution
        if r > 1 and not cfg.mfcc:
            x = x[:, ::r]
        return source(inputs=x, targets=a["y"][sel])

    m.info, m.load = info, load
    m.Options = Options
    return m


DATASETS = {name: _module(name) for name in ("sc35", "sc10")}
