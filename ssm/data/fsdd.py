"""Free Spoken Digit Dataset: 8 kHz spoken digits as raw waveforms, 10 classes.

Release layout (Jakobovski/free-spoken-digit-dataset): ``recordings/{digit}_{speaker}_{index}.wav``,
8 kHz mono 16-bit PCM. Official split (its README): index 0–4 = test, 5–49 = train; validation is
a seeded ``val_fraction`` (default 0.1) hold-out of train. Samples are int16 / 2^15, cut to
``seq_len`` (default 6400, annotated-s4's length) and zero-padded at the end, with true lengths.

``normalize`` (default True; our choice, the release prescribes none): each clip is scaled to unit
RMS over its true length. Recording levels differ ~30× between files (RMS 0.004–0.14), and at the
raw scale a small model did not learn at all (loss stuck at ln 10 for 250 steps).
"""

from __future__ import annotations

import re
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
    read_wav,
    source,
)
from ssm.data.base import DatasetInfo
from ssm.data import validate
from ssm.data.options import DatasetOptions

SEQ_LEN = 6400
RATE = 8000
NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
LAYOUT = "  <root>/fsdd/recordings/{digit}_{speaker}_{index}.wav   (8 kHz mono 16-bit PCM, 3000 files)"
HOW = (
    "git clone https://github.com/Jakobovski/free-spoken-digit-dataset and copy (or link) its "
    "recordings/ folder to <root>/fsdd/recordings/."
)


@dataclass(frozen=True)
class Options(DatasetOptions):
    """Free Spoken Digit Dataset."""

    seq_len: int = SEQ_LEN  # samples per recording (cut/zero-padded)
    val_fraction: float = 0.1  # of train held out for validation
    split_seed: int = 42  # seed of the train/val hold-out
    normalize: bool = True  # standardize each waveform


def _candidates(root: Path) -> list[Path]:
    return [
        root / "fsdd" / "recordings",
        root / "free-spoken-digit-dataset" / "recordings",
        root / "recordings",
    ]


def _files(root: Path) -> list[Path]:
    for d in _candidates(root):
        if d.is_dir():
            wavs = sorted(d.glob("*.wav"))
            if wavs:
                return wavs
    raise DatasetNotFoundError("fsdd", _candidates(root), LAYOUT, HOW)


def _arrays(root: Path, seq_len: int) -> dict[str, np.ndarray]:
    files = _files(root)

    def build():
        x = np.zeros((len(files), seq_len), np.float32)
        n = np.zeros(len(files), np.int32)
        label = np.zeros(len(files), np.int32)
        index = np.zeros(len(files), np.int32)
        for i, f in enumerate(files):
            m = NAME.match(f.name)
            if m is None:
                raise CorruptFileError(f, "file name is not {digit}_{speaker}_{index}.wav")
            rate, s = read_wav(f)
            if rate != RATE or s.shape[1] != 1:
                raise CorruptFileError(f, f"expected 8000 Hz mono, got {rate} Hz with {s.shape[1]} channels")
            s = s[:seq_len, 0]
            if len(s) == 0:
                raise CorruptFileError(f, "recording has no samples")
            x[i, : len(s)] = s
            n[i], label[i], index[i] = len(s), int(m.group(1)), int(m.group(3))
        folder, fix = files[0].parent, "restore the full recordings/ folder of the release (2,500 train and 500 test clips)"
        test = "the test split (recordings with index 0-4, e.g. 0_jackson_0.wav)"
        validate.not_empty(folder, int((index < 5).sum()), test, fix)
        validate.not_empty(folder, int((index >= 5).sum()), "the train split (recordings with index 5-49)", fix)
        return {"x": x, "lengths": n, "labels": label, "index": index}

    return cached(root, "fsdd", {"seq_len": seq_len}, files, build)


def info(cfg) -> DatasetInfo:
    return DatasetInfo(task="classification", d_input=1, d_output=10, seq_len=cfg.seq_len)


def load(cfg, split: str):
    check_split(split)
    a = _arrays(data_root(cfg), cfg.seq_len)
    test = a["index"] < 5
    if split == "test":
        idx = np.flatnonzero(test)
    else:
        train = np.flatnonzero(~test)
        tr, va = holdout_split(len(train), cfg.val_fraction, cfg.split_seed)
        idx = train[tr if split == "train" else va]
    x = a["x"][idx]
    if cfg.normalize:
        n = a["lengths"][idx]
        rms = np.sqrt((x.astype(np.float64) ** 2).sum(1) / np.maximum(n, 1))
        x = (x / np.where(rms > 0, rms, 1.0)[:, None]).astype(np.float32)
    return source(inputs=x[:, :, None], targets=a["labels"][idx], lengths=a["lengths"][idx])
