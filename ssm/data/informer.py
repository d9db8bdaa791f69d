"""Informer forecasting CSVs (registered as ``etth1``, ``etth2``, ``ettm1``, ``ettm2``, ``weather``, ``ecl``).

Files ``ETTh1.csv`` … ``WTH.csv``, ``ECL.csv``: header, first column ``date``. Preprocessing as
state-spaces/s4 ``et.py`` (after Informer2020 ``data_loader.py``):

- columns reordered to ``others + [target]``; ``features`` S (target only, default), M (all → all),
  MS (all → target);
- borders: ETT hourly train [0, 8640), val [8640 − L, 11520), test [11520 − L, 14400) (15-minute
  files ×4); Weather/ECL: n_train = ⌊0.7 n⌋, n_test = ⌊0.2 n⌋, val the rest, each window range
  starting ``seq_len`` before its split;
- standardized per column with the mean and population std (ddof 0) of the train rows;
- windows s = 0 … len − L − P: input = ``x[s : s+L]`` followed by P zero rows (length L + P),
  target = ``y[s+L : s+L+P]``.

``seq_len`` here is the lookback L (default 384) and ``pred_len`` the horizon P (default 96); the
model sees sequences of L + P. (The S4 calendar features, ``timeenc 0``, are not provided.)
"""

from __future__ import annotations

import csv
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
    source,
)
from ssm.data.base import DatasetInfo
from ssm.data import validate
from ssm.data.options import DatasetOptions, with_defaults

SPECS = {  # name: (file, folder, default target, kind)
    "etth1": ("ETTh1.csv", "etth", "OT", "ett_hour"),
    "etth2": ("ETTh2.csv", "etth", "OT", "ett_hour"),
    "ettm1": ("ETTm1.csv", "ettm", "OT", "ett_minute"),
    "ettm2": ("ETTm2.csv", "ettm", "OT", "ett_minute"),
    "weather": ("WTH.csv", "weather", "WetBulbCelsius", "custom"),
    "ecl": ("ECL.csv", "ecl", "MT_320", "custom"),
}
SEQ_LEN, PRED_LEN = 384, 96
HOW = (
    "download the Informer datasets (github.com/zhouhaoyi/Informer2020 README: ETT from "
    "github.com/zhouhaoyi/ETDataset, WTH.csv and ECL.csv from its Google Drive link) into <root>/informer/<folder>/."
)


def _candidates(root: Path, name: str) -> list[Path]:
    f, folder = SPECS[name][0], SPECS[name][1]
    return [root / "informer" / folder / f, root / "informer" / f, root / "ETT-small" / f, root / f]


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """(column names after ``date``, float64 values (rows, columns))."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as e:
        raise CorruptFileError(path, str(e)) from e
    if not rows or not rows[0] or rows[0][0] != "date":
        raise CorruptFileError(path, "first header column must be 'date'")
    head = rows[0][1:]
    body = [r for r in rows[1:] if r]
    values = np.empty((len(body), len(head)))
    for i, r in enumerate(body, 2):
        if len(r) != len(head) + 1:
            raise CorruptFileError(path, f"line {i} has {len(r)} columns, header has {len(head) + 1}")
        try:
            values[i - 2] = [float(v) for v in r[1:]]
        except ValueError:
            j = next(j for j, v in enumerate(r[1:]) if not _is_float(v))
            raise CorruptFileError(path, f"value {validate.cut(r[j + 1])} is not a number",
                                   record=f"line {i}, column {head[j]!r}",
                                   fix="write a decimal number in every cell after 'date'") from None  # fmt: skip
    validate.not_empty(path, len(body), "the table (no rows after the header)", "restore the file from the release")
    line_of = [k for k, r in enumerate(rows[1:], 2) if r]
    validate.finite(path, values, record=lambda k: f"line {line_of[k]}", columns=head)
    return head, values


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def borders(kind: str, n: int, L: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) from which each split's windows are cut."""
    if kind in ("ett_hour", "ett_minute"):
        k = 4 if kind == "ett_minute" else 1
        a, b, c = 12 * 30 * 24 * k, (12 + 4) * 30 * 24 * k, (12 + 8) * 30 * 24 * k
        if n < c:
            raise ValueError(f"ETT file has {n} rows, fewer than the {c} the fixed 12/4/4-month borders need")
        return {"train": (0, a), "val": (a - L, b), "test": (b - L, c)}
    n_train, n_test = int(n * 0.7), int(n * 0.2)
    n_val = n - n_train - n_test
    return {"train": (0, n_train), "val": (n_train - L, n_train + n_val), "test": (n - n_test - L, n)}


class WindowSource:
    """Forecast windows cut lazily from one standardized series (no copies of overlapping windows)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seq_len: int, pred_len: int):
        self.x, self.y, self.L, self.P = x, y, seq_len, pred_len

    def __len__(self) -> int:
        return len(self.x) - self.L - self.P + 1

    def __getitem__(self, s: int) -> dict[str, np.ndarray]:
        s = int(s)
        if not 0 <= s < len(self):
            raise IndexError(s)
        inputs = np.zeros((self.L + self.P, self.x.shape[1]), np.float32)
        inputs[: self.L] = self.x[s : s + self.L]
        return {"inputs": inputs, "targets": self.y[s + self.L : s + self.L + self.P]}


@dataclass(frozen=True)
class Options(DatasetOptions):
    """Informer forecasting data (ETT, Weather, ECL)."""

    seq_len: int = SEQ_LEN  # lookback window
    pred_len: int = PRED_LEN  # forecast horizon
    features: str = "S"  # "S" (target only), "M" (all -> all), "MS" (all -> target)
    target: str = "OT"  # forecast column


def _module(name: str) -> types.ModuleType:
    file, _, default_target, kind = SPECS[name]
    m = types.ModuleType(f"ssm.data.informer.{name}", f"Informer '{name}' (see ssm.data.informer).")

    def columns(cfg, head):
        target = cfg.target
        if target not in head:
            raise ValueError(f"data.target: column {target!r} not in {file} (columns: {head})")
        feats = cfg.features
        if feats not in ("S", "M", "MS"):
            raise ValueError(f"data.features must be 'S', 'M' or 'MS' (got {feats!r})")
        order = [h for h in head if h != target] + [target]
        return order, feats

    def arrays(cfg):
        root = data_root(cfg)
        path = next((p for p in _candidates(root, name) if p.is_file()), None)
        if path is None:
            raise DatasetNotFoundError(name, _candidates(root, name), f"  <root>/informer/{SPECS[name][1]}/{file}   (date,<columns...>)", HOW)
        def build():
            head, values = read_csv(path)
            return {"head": np.asarray(head), "values": values}

        return cached(root, f"informer-{name}", {}, [path], build)

    def info(cfg) -> DatasetInfo:
        head = [str(h) for h in arrays(cfg)["head"]]
        order, feats = columns(cfg, head)
        c_in = 1 if feats == "S" else len(order)
        c_out = len(order) if feats == "M" else 1
        L, P = cfg.seq_len, cfg.pred_len
        return DatasetInfo(task="regression", d_input=c_in, d_output=c_out, seq_len=L + P)

    def load(cfg, split: str):
        check_split(split)
        a = arrays(cfg)
        head = [str(h) for h in a["head"]]
        order, feats = columns(cfg, head)
        v = a["values"][:, [head.index(h) for h in order]]
        L, P = cfg.seq_len, cfg.pred_len
        b = borders(kind, len(v), L)
        lo, hi = b["train"]
        mu, sd = v[lo:hi].mean(0), v[lo:hi].std(0)
        v = (v - mu) / np.where(sd > 0, sd, 1.0)
        x = v[:, -1:] if feats == "S" else v
        y = v if feats == "M" else v[:, -1:]
        s0, s1 = b[split]
        n = (s1 - s0) - L - P + 1
        if n <= 0:
            raise ValueError(f"{name} {split}: rows [{s0}, {s1}) hold no window of seq_len {L} + pred_len {P}")
        return WindowSource(x[s0:s1].astype(np.float32), y[s0:s1].astype(np.float32), L, P)

    m.info, m.load = info, load
    m.Options = with_defaults(Options, name, target=default_target)
    return m


DATASETS = {name: _module(name) for name in SPECS}
