"""AAN citation retrieval (LRA Retrieval): two documents per example, character level.

Release files ``new_aan_pairs.{train,eval,test}.tsv`` (LRA ``tsv_data/``): no header, quotes kept
literally, columns ``label id1 id2 text1 text2`` with the label written as a float 0/1.
Preprocessing as state-spaces/s4 ``AAN``: ids dropped, ``eval`` → val; tokens = ``list(text)``,
each document truncated to ``seq_len − 1`` (default 4000) then ``<eos>``; vocabulary from the train
documents (text1 + text2), specials ``<pad>, <unk>, <eos>``, no min_freq; each side right-padded
to ``seq_len`` with its own true length (``inputs``/``lengths`` and ``inputs2``/``lengths2``).
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
    encode_padded,
    source,
    torchtext_vocab,
)
from ssm.data.base import DatasetInfo
from ssm.data.options import DatasetOptions

SEQ_LEN = 4000
SPECIALS = ("<pad>", "<unk>", "<eos>")
FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}
LAYOUT = "  <root>/aan/new_aan_pairs.{train,eval,test}.tsv   (LRA release tsv_data/; also <root>/lra_release/lra_release/tsv_data/)"
HOW = (
    "download lra_release.gz from https://storage.googleapis.com/long-range-arena/lra_release.gz, extract it, "
    "and copy (or link) lra_release/lra_release/tsv_data to <root>/aan."
)


@dataclass(frozen=True)
class Options(DatasetOptions):
    """LRA AAN (retrieval of two byte sequences)."""

    seq_len: int = SEQ_LEN  # bytes per document (cut/padded)


def _candidates(root: Path) -> list[Path]:
    return [root / "aan", root / "lra_release" / "lra_release" / "tsv_data", root / "lra_release" / "tsv_data", root / "tsv_data"]


def _locate(root: Path) -> Path:
    for d in _candidates(root):
        if all((d / f).is_file() for f in FILES.values()):
            return d
    raise DatasetNotFoundError("aan", _candidates(root), LAYOUT, HOW)


def read_tsv(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Rows of ``label id1 id2 text1 text2`` → (int labels, texts1, texts2); quotes are literal."""
    labels, t1, t2 = [], [], []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"not UTF-8 text ({e})") from e
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines, 1):
        cols = line.rstrip("\r").split("\t")
        if len(cols) != 5:
            raise CorruptFileError(path, f"line {i} has {len(cols)} tab-separated columns, expected 5")
        try:
            lab = float(cols[0])
        except ValueError:
            raise CorruptFileError(path, f"line {i}: label {cols[0]!r} is not a number") from None
        if lab not in (0.0, 1.0):
            raise CorruptFileError(path, f"line {i}: label {cols[0]!r} is not 0 or 1")
        labels.append(int(lab))
        t1.append(cols[3])
        t2.append(cols[4])
    if not labels:
        raise CorruptFileError(path, "file holds no rows")
    return np.asarray(labels, np.int32), t1, t2


def _arrays(root: Path, seq_len: int) -> dict[str, np.ndarray]:
    d = _locate(root)

    def build():
        data = {s: read_tsv(d / f) for s, f in FILES.items()}
        _, a, b = data["train"]
        vocab = torchtext_vocab((list(t) for t in a + b), SPECIALS)
        out = {"vocab": np.asarray(vocab)}
        for s, (y, t1, t2) in data.items():
            out[f"{s}_x"], out[f"{s}_n"] = encode_padded([list(t) for t in t1], vocab, seq_len, unk="<unk>", eos="<eos>")
            out[f"{s}_x2"], out[f"{s}_n2"] = encode_padded([list(t) for t in t2], vocab, seq_len, unk="<unk>", eos="<eos>")
            out[f"{s}_y"] = y
        return out

    return cached(root, "aan", {"seq_len": seq_len}, [d / f for f in FILES.values()], build)


def info(cfg) -> DatasetInfo:
    L = cfg.seq_len
    vocab = [str(v) for v in _arrays(data_root(cfg), L)["vocab"]]
    return DatasetInfo(task="retrieval", d_input=len(vocab), d_output=2, seq_len=L, tokens=True, vocab=vocab)


def load(cfg, split: str):
    check_split(split)
    a = _arrays(data_root(cfg), cfg.seq_len)
    s = split
    return source(inputs=a[f"{s}_x"], lengths=a[f"{s}_n"], inputs2=a[f"{s}_x2"], lengths2=a[f"{s}_n2"], targets=a[f"{s}_y"])
