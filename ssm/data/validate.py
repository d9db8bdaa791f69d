"""Validation of what the dataset loaders read, shared by all of them.

Two layers, both here:

- checks that a reader calls on the values of ONE file as soon as it has parsed them
  (:func:`labels_in_range`, :func:`finite`, :func:`not_empty`), so the error names the file and
  the record (line, row and column, record number) where the bad value is, before anything is
  cached or trained;
- :func:`check_split`, run on every split a registered dataset returns (installed on each module
  of :data:`ssm.data.DATASETS` by :func:`install`), which checks the examples against the
  dataset's :class:`~ssm.data.base.DatasetInfo`: the split is not empty, class labels lie in
  ``0 ≤ y < d_output``, token ids below the vocabulary size, float inputs and targets finite,
  lengths in ``1..seq_len``. An empty validation split that the configuration asked for
  (``data.val_fraction = 0``) is announced on stderr instead.

Every failure raises :class:`~ssm.data._files.CorruptFileError` (a ``ValueError``), whose message
is one short line: the file or dataset, the record, the problem (long content cut by :func:`cut`)
and the fix.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssm.data._files import CorruptFileError

CUT = 80  # characters of a bad record shown in a message
CHUNK = 1 << 22  # elements scanned at a time (bounded memory on multi-GB splits)


def cut(text: Any, limit: int = CUT) -> str:
    """``repr`` of ``text`` shortened to about ``limit`` characters, saying how long it was."""
    s = text if isinstance(text, str) else repr(text)
    if len(s) <= limit:
        return repr(s) if isinstance(text, str) else s
    head, tail = s[: limit * 3 // 4], s[-(limit // 4) :]
    body = f"{head!r}…{tail!r}" if isinstance(text, str) else f"{head}…{tail}"
    return f"{body} ({len(s):,} characters)"


def _first(mask_of: Callable[[np.ndarray], np.ndarray], a: np.ndarray) -> tuple[int, int] | None:
    """(index along axis 0, count) of the first row whose ``mask_of`` is true anywhere, scanning
    ``a`` in chunks of rows; None if none is."""
    rows = max(1, CHUNK // max(1, int(np.prod(a.shape[1:]))))
    first, count = None, 0
    for lo in range(0, len(a), rows):
        m = mask_of(a[lo : lo + rows]).reshape(min(rows, len(a) - lo), -1).any(axis=1)
        k = int(m.sum())
        if k and first is None:
            first = lo + int(np.argmax(m))
        count += k
    return None if first is None else (first, count)


def _count(n: int, total: int, what: str) -> str:
    return "" if n <= 1 else f" ({n:,} of {total:,} {what} are bad)"


def labels_in_range(
    path: Path, labels: np.ndarray, n_classes: int, *, record: Callable[[int], str], fix: str | None = None
) -> None:
    """Every label of the file ``path`` is an integer in ``0..n_classes − 1``; ``record(i)`` names
    label i's place in the file (e.g. ``lambda i: f"line {i + 2}"``)."""
    y = np.asarray(labels)
    if np.issubdtype(y.dtype, np.integer):
        hit = _first(lambda c: (c < 0) | (c >= n_classes), y)
    else:
        hit = _first(lambda c: ~np.isin(c, np.arange(n_classes)), y)
    if hit is not None:
        i, n = hit
        raise CorruptFileError(
            path, f"label {y.reshape(len(y), -1)[i][0].item()!r} is outside 0..{n_classes - 1}{_count(n, len(y), 'labels')}",
            record=record(i), fix=fix or f"correct or remove the record; this dataset has {n_classes} classes",
        )  # fmt: skip


def finite(
    path: Path, values: np.ndarray, *, record: Callable[[int], str], columns: Sequence[str] | None = None,
    fix: str | None = None,
) -> None:  # fmt: skip
    """No NaN or ±Inf in ``values`` (records along axis 0). With ``columns``, values is
    (rows, columns) and the message names the column of the first bad cell."""
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.floating):
        return
    hit = _first(lambda a: ~np.isfinite(a), v)
    if hit is None:
        return
    i, n = hit
    row = v[i].reshape(-1)
    j = int(np.argmax(~np.isfinite(row)))
    where = f", column {columns[j]!r}" if columns is not None else ""
    raise CorruptFileError(
        path, f"value {row[j]} is not finite{_count(n, len(v), 'records')}", record=record(i) + where,
        fix=fix or "fill or remove the missing/non-finite values (NaN and Inf would make the loss non-finite)",
    )  # fmt: skip


def not_empty(path: Path, n: int, what: str, fix: str) -> None:
    """``n`` > 0, else "``path``: ``what`` is empty. Fix: ``fix``"."""
    if n <= 0:
        raise CorruptFileError(path, f"{what} is empty", fix=fix)


# --------------------------------------------------------------------------- the split pass


def _arrays(src: Any) -> dict[str, np.ndarray]:
    """The per-example arrays of a source: ``ArraySource.arrays``; else its ``inputs``/``targets``
    arrays when it keeps them (noise-padded images: reading an example would draw noise); else its
    first and last examples stacked (lazy sources such as forecasting windows or pixel batches)."""
    arrays = getattr(src, "arrays", None)
    if arrays is not None:
        return dict(arrays)
    kept = {k: getattr(src, k, None) for k in ("inputs", "targets")}
    if all(isinstance(v, np.ndarray) and len(v) == len(src) for v in kept.values()):
        return kept
    picks = [src[0]] if len(src) == 1 else [src[0], src[len(src) - 1]]
    return {k: np.stack([np.asarray(p[k]) for p in picks]) for k in picks[0]}


def check_split(name: str, split: str, src: Any, info: Any, cfg: Any) -> None:
    """The examples of ``split`` agree with ``info``; raises :class:`CorruptFileError` otherwise."""
    root = getattr(cfg, "root", None) or "$DATA_PATH or ./data"
    where = f"the {name} {split} split (files under {root})"
    if len(src) == 0:
        if split == "val" and getattr(cfg, "val_fraction", None) == 0:
            print(f"[ssm] {name}: no validation split (data.val_fraction = 0); validation is skipped", file=sys.stderr)
            return
        raise CorruptFileError(where, "the split holds no examples", what="data in",
                               fix="restore the split's files (or its records) from the release")  # fmt: skip
    a = _arrays(src)

    def fail(key: str, i: int, problem: str, fix: str) -> None:
        raise CorruptFileError(where, problem, record=f"example {i} ({key})", fix=fix, what="data in")

    def ints_below(key: str, v: np.ndarray, bound: int, what: str) -> None:
        if not np.issubdtype(v.dtype, np.integer):
            fail(key, 0, f"{what} are {v.dtype}, expected integers", "the loader must return integer ids")
        hit = _first(lambda c: (c < 0) | (c >= bound), v)
        if hit is not None:
            i, n = hit
            bad = v[i].reshape(-1)
            val = bad[np.argmax((bad < 0) | (bad >= bound))]
            fail(key, i, f"{what} {val} is outside 0..{bound - 1}{_count(n, len(v), 'examples')}",
                 "correct the record in the source file (the vocabulary/classes are fixed by the dataset)")  # fmt: skip

    def no_nonfinite(key: str, v: np.ndarray) -> None:
        if np.issubdtype(v.dtype, np.floating):
            hit = _first(lambda c: ~np.isfinite(c), v)
            if hit is not None:
                fail(key, hit[0], f"holds a non-finite value{_count(hit[1], len(v), 'examples')}",
                     "fill or remove NaN/Inf values in the source file")  # fmt: skip

    y = a["targets"]
    for key in ("inputs", "inputs2"):
        if key not in a:
            continue
        if a[key].ndim >= 2 and a[key].shape[1] > info.seq_len:
            fail(key, 0, f"length {a[key].shape[1]} exceeds seq_len {info.seq_len}", "the loader must truncate to seq_len")
        if info.tokens:
            ints_below(key, a[key], info.d_input, "token id")
        else:
            no_nonfinite(key, a[key])
    for key in ("lengths", "lengths2"):
        if key in a:
            n = np.asarray(a[key])
            hit = _first(lambda c: (c < 1) | (c > info.seq_len), n)
            if hit is not None:
                fail(key, hit[0], f"length {n[hit[0]]} is outside 1..{info.seq_len}", "remove empty records")
    if info.task in ("classification", "retrieval"):
        if y.ndim != 1:
            fail("targets", 0, f"class targets have shape {y.shape[1:]} per example, expected a scalar",
                 "the loader must return one label per example")  # fmt: skip
        ints_below("targets", y, info.d_output, "label")
    elif info.task in ("lm", "generation"):
        ints_below("targets", y, info.d_output, "target id")
    else:
        no_nonfinite("targets", y)


def install(name: str, module: Any) -> Any:
    """Make ``module.load`` run :func:`check_split` on every split it returns (once per module),
    and announce on stderr, once per process, a split the dataset replaces by another (its
    ``SPLIT_NOTES``, e.g. IMDB's validation split that is the test split)."""
    load = module.load
    if getattr(load, "_validated", False):
        return module
    notes = dict(getattr(module, "SPLIT_NOTES", {}))

    def validated_load(cfg, split: str):
        src = load(cfg, split)
        check_split(name, split, src, module.info(cfg), cfg)
        if split in notes:
            print(f"[ssm] {name} {split}: {notes.pop(split)}", file=sys.stderr)
        return src

    validated_load._validated = True  # type: ignore[attr-defined]
    validated_load.__wrapped__ = load  # type: ignore[attr-defined]
    validated_load.__doc__ = load.__doc__
    module.load = validated_load
    return module
