"""8-bit quantized audio for SaShiMi (registered as ``sc09``, ``youtubemix``, ``beethoven``).

Preprocessing as state-spaces/s4 ``dataloaders/audio.py`` (all 16 kHz; multi-channel → mean):

- quantization, per example, min-max over the whole example ``s ← (s − min)/(max − min + 1e-6)``:
  linear ``q(u) = floor(u·(256 − 0.01) + 0.005)``; mu-law: a = min-max to [−1, 1],
  e = sign(a)·ln(1 + 255|a + 1e-8|)/ln 256, then q((e + 1)/2). Levels 0..255, zero level 128.
- example: targets = the quantized clip (L,), inputs = targets shifted right by one with
  inputs[0] = 128; padded to ``seq_len`` with inputs 128 and targets 0, with true lengths (the
  loss counts the first ``lengths`` positions; S4 pads targets with −100 to the same effect).
- ``sc09``: ``sc09/{zero..nine}/*.wav`` (+ ``validation_list.txt``, ``testing_list.txt`` giving
  the splits), one example per file, mu-law, length 16000.
- ``youtubemix`` (mu-law, 131072) / ``beethoven`` (linear, 128000): a folder of WAVs in natural
  sort order, files split 88 / 6 / 6 % by index, each file cut into consecutive ``seq_len``
  chunks (the remainder dropped).
"""

from __future__ import annotations

import re
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
from ssm.data.options import DatasetOptions, with_defaults

RATE = 16000
DIGITS = "zero one two three four five six seven eight nine".split()
SPECS = {  # name: (folder, quantization, default length)
    "sc09": ("sc09", "mulaw", 16000),
    "youtubemix": ("youtube_mix", "mulaw", 131072),
    "beethoven": ("beethoven", "linear", 128000),
}
TRAIN_PERCENTAGE = 0.88


def _minmax(s: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return lo + (hi - lo) * (s - s.min()) / (s.max() - s.min() + 1e-6)


def quantize(u: np.ndarray, bits: int = 8, eps: float = 0.01) -> np.ndarray:
    return np.floor(u * ((1 << bits) - eps) + eps / 2).astype(np.int64)


def linear_encode(s: np.ndarray) -> np.ndarray:
    return quantize(_minmax(s, 0.0, 1.0))


def mu_law_encode(s: np.ndarray) -> np.ndarray:
    a = _minmax(s, -1.0, 1.0)
    e = np.sign(a) * np.log1p(255.0 * np.abs(a + 1e-8)) / np.log(256.0)
    return quantize((e + 1.0) / 2.0)


def mu_law_decode(q: np.ndarray) -> np.ndarray:
    """Levels 0..255 → amplitude in [−1, 1] (dequantize y/128 − 1, then invert the mu-law)."""
    y = np.asarray(q, np.float64) / 128.0 - 1.0
    return np.sign(y) * (256.0 ** np.abs(y) - 1.0) / 255.0


def natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _mono(path: Path) -> np.ndarray:
    rate, s = read_wav(path)
    if rate != RATE:
        raise CorruptFileError(path, f"sample rate {rate} Hz; this dataset is 16 kHz (resample it first)")
    return s.mean(axis=1)


def _example(q: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray, int]:
    n = len(q)
    x = np.full(L, 128, np.int32)
    y = np.zeros(L, np.int32)
    y[:n] = q
    x[1:n] = q[: n - 1]
    return x, y, n


@dataclass(frozen=True)
class Options(DatasetOptions):
    """SaShiMi audio (8-bit samples, autoregressive)."""

    seq_len: int = 16000  # samples per example


def _module(name: str) -> types.ModuleType:
    folder, quant, default_len = SPECS[name]
    encode = mu_law_encode if quant == "mulaw" else linear_encode
    m = types.ModuleType(f"ssm.data.audio.{name}", f"SaShiMi audio '{name}' (see ssm.data.audio).")
    candidates = lambda root: [root / folder, root / "audio" / folder]

    def sc09_files(d: Path) -> dict[str, list[Path]]:
        files = []
        for c in DIGITS:
            fs = sorted((d / c).glob("*.wav")) if (d / c).is_dir() else []
            if not fs:
                raise CorruptFileError(d / c, "digit folder is missing or holds no .wav clips")
            files += fs
        lists = {}
        for s, n in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
            try:
                text = (d / n).read_bytes().decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorruptFileError(d / n, f"not UTF-8 text (byte {e.start})", fix="restore it from the release") from None
            lists[s] = {line.strip() for line in text.splitlines() if line.strip()}
            validate.not_empty(d / n, len(lists[s]), f"the {s} list", "restore it from the release")
        rel = lambda f: f"{f.parent.name}/{f.name}"
        out = {"train": [], "val": [], "test": []}
        for f in files:
            r = rel(f)
            out["test" if r in lists["test"] else "val" if r in lists["val"] else "train"].append(f)
        return out

    def locate(root: Path) -> Path:
        for d in candidates(root):
            if name == "sc09":
                if (d / "validation_list.txt").is_file() and (d / "testing_list.txt").is_file():
                    return d
            elif d.is_dir() and any(d.glob("*.wav")):
                return d
        layout = (
            "  <root>/sc09/{zero,...,nine}/*.wav + validation_list.txt, testing_list.txt   (16 kHz)"
            if name == "sc09"
            else f"  <root>/{folder}/*.wav   (16 kHz)"
        )
        how = f"download the HuggingFace dataset krandiash/{folder.replace('_', '')} (SaShiMi) and extract its WAVs into <root>/{folder}/."
        raise DatasetNotFoundError(name, candidates(root), layout, how)

    def arrays(cfg, split: str) -> dict[str, np.ndarray]:
        root = data_root(cfg)
        d = locate(root)
        L = cfg.seq_len
        if name == "sc09":
            parts = sc09_files(d)
        else:
            all_files = sorted(d.glob("*.wav"), key=natural_key)
            n = len(all_files)
            a, b = int(n * TRAIN_PERCENTAGE), int(n * (TRAIN_PERCENTAGE + (1 - TRAIN_PERCENTAGE) / 2))
            parts = {"train": all_files[:a], "val": all_files[a:b], "test": all_files[b:]}
        for s, fs in parts.items():  # every split, so a missing one stops the run before training
            validate.not_empty(d, len(fs), f"the {s} split", "add .wav files: each split needs one (88/6/6 % by file)")
        files = parts[split]

        def build():
            xs, ys, ns = [], [], []
            for f in files:
                s = _mono(f)
                if name == "sc09":
                    chunks = [s[:L]]
                else:
                    chunks = [s[i * L : (i + 1) * L] for i in range(len(s) // L)]
                for c in chunks:
                    x, y, k = _example(encode(c), L)
                    xs.append(x), ys.append(y), ns.append(k)
            if not xs:
                raise ValueError(f"{name} {split}: no file is at least seq_len={L} samples long")
            return {"inputs": np.stack(xs), "targets": np.stack(ys), "lengths": np.asarray(ns, np.int32)}

        return cached(root, f"{name}-{split}", {"seq_len": L}, files, build)

    def info(cfg) -> DatasetInfo:
        return DatasetInfo(task="generation", d_input=256, d_output=256, seq_len=cfg.seq_len, tokens=True)

    def load(cfg, split: str):
        check_split(split)
        return source(**arrays(cfg, split))

    m.info, m.load = info, load
    m.Options = with_defaults(Options, name, seq_len=default_len)
    return m


DATASETS = {name: _module(name) for name in SPECS}
