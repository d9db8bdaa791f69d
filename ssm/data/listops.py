"""LRA ListOps: nested MIN/MAX/MED/SM expressions over digits, 10 classes, up to 2048 tokens.

Reads the release files ``basic_{train,val,test}.tsv`` (header ``Source<TAB>Target``) from the
official archive or from ``scripts/prepare_data.py listops`` (same layout, same bytes format).

Preprocessing as state-spaces/s4 ``ListOps`` (mirroring LRA ``listops/input_pipeline.py``):
delete ``(`` and ``)``, replace ``]`` by ``X``, split on whitespace; truncate to ``seq_len − 1``
(default 2048) and append ``<eos>``; vocabulary from train with specials ``<pad>, <unk>, <eos>``
then tokens by descending count (torchtext order), 18 entries on the release; right-padded with
``<pad>`` = 0, true lengths returned. The splits are the files as given.
"""

from __future__ import annotations

import csv
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

SEQ_LEN = 2048
SPECIALS = ("<pad>", "<unk>", "<eos>")
TASK = "basic"
FILES = {s: f"{TASK}_{s}.tsv" for s in ("train", "val", "test")}
LAYOUT = """  <root>/listops/basic_train.tsv, basic_val.tsv, basic_test.tsv
  (or <root>/listops-1000/..., or the extracted release <root>/lra_release/lra_release/listops-1000/...)
  TSV with header 'Source<TAB>Target', one expression and its value 0-9 per row"""


@dataclass(frozen=True)
class Options(DatasetOptions):
    """LRA ListOps."""

    seq_len: int = SEQ_LEN  # tokens per expression (cut/padded)


def how(root: Path) -> str:
    return (
        f"generate it offline with `python scripts/prepare_data.py listops --out {root / 'listops'}` "
        "(the LRA generator's algorithm; ~2 min on 2 idle cores), or extract listops-1000/ from the LRA "
        "release lra_release.gz"
    )


def candidates(root: Path) -> list[Path]:
    return [
        root / "listops",
        root / "listops-1000",
        root / "lra_release" / "lra_release" / "listops-1000",
        root / "lra_release" / "listops-1000",
    ]


def find(root: Path) -> Path:
    for d in candidates(root):
        if all((d / f).is_file() for f in FILES.values()):
            return d
    raise DatasetNotFoundError("listops", candidates(root), LAYOUT, how(root))


def tokenize(text: str) -> list[str]:
    """LRA's ListOps tokenization: parentheses dropped, ``]`` → ``X``, whitespace split."""
    return text.replace("(", "").replace(")", "").replace("]", "X").split()


def read_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    """(sources, labels) of one release TSV; a bad header or row raises naming the file and line."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or [c.strip() for c in rows[0]] != ["Source", "Target"]:
        raise CorruptFileError(path, f"expected the header 'Source<TAB>Target', got {rows[:1]!r}")
    texts, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[1].strip().isdigit() or not 0 <= int(row[1]) <= 9:
            raise CorruptFileError(path, f"line {line}: expected '<expression><TAB><0-9>', got {row!r}")
        texts.append(row[0])
        labels.append(int(row[1]))
    return texts, np.asarray(labels, np.int32)


def _arrays(root: Path, seq_len: int) -> dict[str, np.ndarray]:
    d = find(root)
    paths = {s: d / f for s, f in FILES.items()}

    def build() -> dict[str, np.ndarray]:
        data = {s: read_tsv(p) for s, p in paths.items()}
        tokens = {s: [tokenize(t) for t in texts] for s, (texts, _) in data.items()}
        vocab = torchtext_vocab(tokens["train"], SPECIALS)
        out = {"vocab": np.asarray(vocab)}
        for s, (_, labels) in data.items():
            ids, n = encode_padded(tokens[s], vocab, seq_len, unk="<unk>", eos="<eos>")
            out[f"{s}_x"], out[f"{s}_n"], out[f"{s}_y"] = ids, n, labels
        return out

    return cached(root, "listops", {"seq_len": seq_len}, list(paths.values()), build)


def info(cfg) -> DatasetInfo:
    seq_len = cfg.seq_len
    vocab = [str(v) for v in _arrays(data_root(cfg), seq_len)["vocab"]]
    return DatasetInfo(task="classification", d_input=len(vocab), d_output=10, seq_len=seq_len,
                       tokens=True, vocab=vocab)  # fmt: skip


def load(cfg, split: str):
    check_split(split)
    a = _arrays(data_root(cfg), cfg.seq_len)
    return source(inputs=a[f"{split}_x"], targets=a[f"{split}_y"], lengths=a[f"{split}_n"])
