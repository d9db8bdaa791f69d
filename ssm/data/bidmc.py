"""BIDMC vital-sign regression (HR, RR or SpO2 from 32 s of PPG + ECG, 4000 × 2 at 125 Hz).

Accepted layouts (``data.target`` ∈ {HR, RR, SpO2}, default RR as the S4 loader):

- S4's processed arrays ``<root>/bidmc/<target>/reshuffle/{train,valid,test}{x,y}.npy``;
- the Monash TSER release files ``BIDMC32<target>_{TRAIN,TEST}.ts`` in ``<root>/bidmc/<target>/``,
  ``<root>/bidmc/BIDMC32<target>/`` or ``<root>/bidmc/``. These are processed as S4's
  ``prepare/bidmc/process_data.py``: train + test concatenated, sklearn
  ``train_test_split(test_size=0.3, random_state=0)``, then the held-out part split 50/50 with
  ``random_state=1`` into val and test.

No normalization; one regression output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssm.data._files import (
    CorruptFileError,
    DatasetNotFoundError,
    cached,
    check_split,
    data_root,
    source,
)
from ssm.data.base import DatasetInfo
from ssm.data import validate
from ssm.data.options import DatasetOptions

TARGETS = ("HR", "RR", "SpO2")
SEQ_LEN = 4000
ZENODO = {"RR": "4001463", "HR": "4001456", "SpO2": "4001464"}


@dataclass(frozen=True)
class Options(DatasetOptions):
    """BIDMC vital signs (regression)."""

    target: str = "RR"  # regression target: HR, RR or SpO2


def _target(cfg) -> str:
    t = cfg.target
    if t not in TARGETS:
        raise ValueError(f"data.target for bidmc must be one of {TARGETS} (got {t!r})")
    return t


def read_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A Monash ``.ts`` regression file → (series (N, length, dims) float64, targets (N,))."""
    xs, ys, at = [], [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"not UTF-8 text ({e})") from e
    in_data = False
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        parts = line.split(":")
        if len(parts) < 2:
            raise CorruptFileError(path, f"line {i}: expected 'dim1:dim2:...:target'")
        try:
            dims = [np.asarray([float(v) for v in p.split(",")]) for p in parts[:-1]]
            y = float(parts[-1])
        except ValueError as e:
            raise CorruptFileError(path, f"line {i}: {e}") from None
        if len({len(d) for d in dims}) != 1 or (xs and (len(dims), len(dims[0])) != xs[0].shape[::-1]):
            raise CorruptFileError(path, f"line {i}: series lengths/dimensions differ from the first series")
        xs.append(np.stack(dims, axis=1))
        ys.append(y)
        at.append(i)
    if not in_data or not xs:
        raise CorruptFileError(path, "no '@data' section or no series")
    x, y = np.stack(xs), np.asarray(ys)
    validate.finite(path, x, record=lambda k: f"line {at[k]} (series {k})")
    validate.finite(path, y, record=lambda k: f"line {at[k]} (target of series {k})")
    return x, y


def _arrays(root: Path, t: str) -> dict[str, np.ndarray]:
    npy = root / "bidmc" / t / "reshuffle"
    names = [f"{s}{k}.npy" for s in ("train", "valid", "test") for k in ("x", "y")]
    if all((npy / n).is_file() for n in names):

        def build_npy():
            out = {}
            for n in names:
                try:
                    out[n[:-4]] = np.load(npy / n, allow_pickle=False)
                except Exception as e:
                    raise CorruptFileError(npy / n, f"cannot read .npy ({e})") from e
                validate.finite(npy / n, out[n[:-4]], record=lambda k: f"record {k}")
            for s in ("train", "valid", "test"):
                x, y = out[f"{s}x"], out[f"{s}y"]
                if x.ndim != 3 or x.shape[2] != 2 or len(y) != len(x):
                    raise CorruptFileError(npy / f"{s}x.npy", f"shape {x.shape} with {len(y)} targets in {s}y.npy; "
                                           "expected (N, 4000, 2) series and N targets",
                                           fix="rerun S4's prepare/bidmc")  # fmt: skip
            return out

        return cached(root, f"bidmc-{t}", {}, [npy / n for n in names], build_npy)
    dirs = [root / "bidmc" / t, root / "bidmc" / f"BIDMC32{t}", root / "bidmc", root / f"BIDMC32{t}"]
    d = next((d for d in dirs if (d / f"BIDMC32{t}_TRAIN.ts").is_file() and (d / f"BIDMC32{t}_TEST.ts").is_file()), None)
    if d is None:
        layout = (
            f"  <root>/bidmc/{t}/reshuffle/{{train,valid,test}}{{x,y}}.npy   (S4 processed)\n"
            f"  or <root>/bidmc/{t}/BIDMC32{t}_{{TRAIN,TEST}}.ts   (Monash TSER release)"
        )
        how = f"download BIDMC32{t}.zip from https://zenodo.org/record/{ZENODO[t]} and extract it into <root>/bidmc/{t}/."
        raise DatasetNotFoundError(f"bidmc ({t})", [npy] + dirs, layout, how)
    files = [d / f"BIDMC32{t}_TRAIN.ts", d / f"BIDMC32{t}_TEST.ts"]

    def build_ts():
        from sklearn.model_selection import train_test_split

        (xa, ya), (xb, yb) = (read_ts(f) for f in files)
        x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
        x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.3, random_state=0)
        x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=1)
        return {"trainx": x_tr, "trainy": y_tr, "validx": x_va, "validy": y_va, "testx": x_te, "testy": y_te}

    return cached(root, f"bidmc-{t}", {"from": "ts"}, files, build_ts)


def info(cfg) -> DatasetInfo:
    return DatasetInfo(task="regression", d_input=2, d_output=1, seq_len=SEQ_LEN)


def load(cfg, split: str):
    check_split(split)
    a = _arrays(data_root(cfg), _target(cfg))
    s = {"train": "train", "val": "valid", "test": "test"}[split]
    x, y = a[f"{s}x"], a[f"{s}y"]
    return source(inputs=x.astype(np.float32), targets=y.reshape(-1, 1).astype(np.float32))
