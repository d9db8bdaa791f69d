"""Offline generator of LRA ListOps (Nangia & Bowman 2018, as configured by Long Range Arena).

The algorithm and its constants follow LRA ``lra_benchmarks/data/listops.py``:

* a node at depth ``d < max_depth`` is a leaf with probability ``1 − VALUE_P`` (a digit 0–9);
  otherwise it draws ``k ~ U{2, …, max_args}`` children (depth ``d + 1``) and *then* an operator
  from ``[MIN [MAX [MED [SM``; at ``max_depth`` every node is a leaf;
* the length of a tree counts digits, operators and ``]`` (not the serialization's parentheses);
* only trees with ``min_length < length < max_length`` are kept, de-duplicated, until
  ``train + val + test`` distinct trees exist; rows go to train, val, test in that order;
* serialization wraps every pair ``(a, b)`` of the left-nested tree as ``( a b )``, so
  ``[MAX 2 9 ]`` is written ``( ( ( [MAX 2 ) 9 ) ] )``;
* the label is the value: MIN, MAX, MED (``int`` of the numpy median: the mean of the two middle
  values, truncated), SM (sum mod 10).

The original draws from an unseeded global ``random`` and writes rows in Python ``set`` order, so
its output cannot be reproduced. Here the draws (``random()``, ``randint``, the children, then
``choice`` of the operator, per node, in the original order) come from ``random.Random`` streams
seeded by ``(seed, chunk)``. Chunks are fixed work units of accepted trees, generated in parallel
and merged in chunk order with first-occurrence de-duplication, so the same seed gives the same
files whatever the number of processes.
The hot paths carry ``@no_type_check``: the test suite's run-time type instrumentation
(jaxtyping + beartype on every ``ssm`` function) would cost more than the work itself.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import no_type_check

MIN, MAX, MED, SUM_MOD, END = "[MIN", "[MAX", "[MED", "[SM", "]"
OPERATORS = (MIN, MAX, MED, SUM_MOD)
VALUES = range(10)
VALUE_P = 0.25

# Accepted trees per work unit: big enough to amortise process start-up, small enough to balance.
CHUNK = 500


@dataclass(frozen=True)
class ListOpsParams:
    """The LRA generator's flags (``num_*_samples`` are the split sizes)."""

    num_train: int = 96_000
    num_val: int = 2_000
    num_test: int = 2_000
    max_depth: int = 10
    max_args: int = 10
    min_length: int = 500
    max_length: int = 2000
    task: str = "basic"

    def __post_init__(self) -> None:
        for name in ("num_train", "num_val", "num_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_depth < 1 or self.max_args < 2:
            raise ValueError(f"need max_depth >= 1 and max_args >= 2, got {self.max_depth}, {self.max_args}")
        if self.max_length - self.min_length < 2:
            raise ValueError(
                f"no length satisfies {self.min_length} < length < {self.max_length}: widen the bounds"
            )

    @property
    def total(self) -> int:
        return self.num_train + self.num_val + self.num_test


@no_type_check  # hot inner loop: no run-time type instrumentation
def generate_tree(rng: random.Random, depth: int, max_depth: int, max_args: int) -> tuple[object, int]:
    """One random tree and its token length, drawn exactly as LRA's ``generate_tree``."""
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        return rng.choice(VALUES), 1
    length = 2
    children = []
    for _ in range(rng.randint(2, max_args)):
        sub, sub_len = generate_tree(rng, depth + 1, max_depth, max_args)
        children.append(sub)
        length += sub_len
    tree: object = (rng.choice(OPERATORS), children[0])
    for child in children[1:]:
        tree = (tree, child)
    return (tree, END), length


@no_type_check
def to_string(tree: object) -> str:
    """The release serialization: every pair is parenthesised, tokens separated by one space."""
    if isinstance(tree, str):
        return tree
    if isinstance(tree, int):
        return str(tree)
    left, right = tree  # type: ignore[misc]
    return "( " + to_string(left) + " " + to_string(right) + " )"


@no_type_check
def _apply(op: str, args: list[int]) -> int:
    if op == MIN:
        return min(args)
    if op == MAX:
        return max(args)
    if op == MED:
        s = sorted(args)
        n = len(s)
        # numpy's median: the middle value, or the mean of the two middle values; int() truncates.
        return s[n // 2] if n % 2 else int((s[n // 2 - 1] + s[n // 2]) / 2)
    if op == SUM_MOD:
        return sum(args) % 10
    raise ValueError(f"unknown ListOps operator {op!r}")


@no_type_check
def to_value(tree: object) -> int:
    """The label of a tree (evaluates the left-nested pairs as LRA's ``to_value``)."""

    def walk(t: object) -> object:
        if not isinstance(t, tuple):
            return t
        left, right = walk(t[0]), walk(t[1])
        if isinstance(left, str) and left in OPERATORS:
            return (left, [right])
        if right == END:
            return _apply(left[0], left[1])  # type: ignore[index]
        return (left[0], left[1] + [right])  # type: ignore[index]

    value = walk(tree)
    if not isinstance(value, int):
        raise ValueError(f"malformed ListOps tree evaluates to {value!r}")
    return value


def _chunk_rng(seed: int, chunk: int) -> random.Random:
    # A string seed is hashed (SHA-512) by ``random.Random``: stable across runs and platforms.
    return random.Random(f"lra-listops:{seed}:{chunk}")


@no_type_check
def generate_chunk(seed: int, chunk: int, params: ListOpsParams, n: int = CHUNK) -> list[tuple[str, int]]:
    """``n`` accepted (source, label) rows of work unit ``chunk`` (duplicates not yet removed)."""
    rng = _chunk_rng(seed, chunk)
    rows: list[tuple[str, int]] = []
    while len(rows) < n:
        tree, length = generate_tree(rng, 1, params.max_depth, params.max_args)
        if params.min_length < length < params.max_length:
            rows.append((to_string(tree), to_value(tree)))
    return rows


def _chunk_job(args: tuple[int, int, ListOpsParams, int]) -> list[tuple[str, int]]:
    return generate_chunk(*args)


def generate(
    params: ListOpsParams, seed: int = 0, workers: int | None = None, progress: bool = True
) -> list[tuple[str, int]]:
    """``params.total`` distinct rows (source, label) in split order (train, val, test)."""
    workers = workers or os.cpu_count() or 1
    rows: list[tuple[str, int]] = []
    seen: set[str] = set()
    bar = _progress(params.total, "listops", progress)

    def take(chunk_rows: list[tuple[str, int]]) -> None:
        for src, label in chunk_rows:
            if len(rows) < params.total and src not in seen:
                seen.add(src)
                rows.append((src, label))
                bar.update(1)

    next_chunk = 0
    with _pool(workers) as pool:
        while len(rows) < params.total:
            missing = params.total - len(rows)
            count = -(-missing // CHUNK)  # chunks still needed if no duplicates turn up
            # The last chunk stops early: a stream's first trees do not depend on how many follow.
            jobs = [(seed, next_chunk + k, params, min(CHUNK, missing - k * CHUNK)) for k in range(count)]
            next_chunk += count
            for chunk_rows in pool.map(_chunk_job, jobs):  # in chunk order: deterministic merge
                take(chunk_rows)
    bar.close()
    return rows


def write_tsv(path: Path, rows: Sequence[tuple[str, int]]) -> None:
    """A release TSV: header ``Source<TAB>Target``, written by the csv module (``\\r\\n`` ends)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["Source", "Target"])
        writer.writerows(rows)


def split_names(task: str = "basic") -> dict[str, str]:
    return {s: f"{task}_{s}.tsv" for s in ("train", "val", "test")}


def write_release(out: Path | str, params: ListOpsParams, seed: int = 0, workers: int | None = None,
                  progress: bool = True) -> dict[str, Path]:  # fmt: skip
    """Generate and write ``<out>/<task>_{train,val,test}.tsv``; returns the paths by split."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = generate(params, seed=seed, workers=workers, progress=progress)
    bounds = {
        "train": (0, params.num_train),
        "val": (params.num_train, params.num_train + params.num_val),
        "test": (params.num_train + params.num_val, params.total),
    }
    paths = {}
    for split, name in split_names(params.task).items():
        lo, hi = bounds[split]
        paths[split] = out / name
        write_tsv(paths[split], rows[lo:hi])
    return paths


def _pool(workers: int):
    """A process pool (``spawn``: safe when the parent runs threads, e.g. JAX), or this process."""
    if workers <= 1:
        return _Serial()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


class _Serial:
    """A stand-in for a process pool that runs jobs in this process."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, jobs) -> Iterator:
        return map(fn, jobs)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", disable=not enabled, mininterval=1.0, smoothing=0.1)
