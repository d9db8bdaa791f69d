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
from ssm.data import validate
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


ALPHABET = frozenset("( ) ] [MIN [MAX [MED [SM 0 1 2 3 4 5 6 7 8 9".split())


def read_tsv(path: Path) -> tuple[list[str], np.ndarray]:
    """(sources, labels) of one release TSV; a bad header, row, token or label, or a file without
    rows, raises naming the file and line (the row cut to a few dozen characters).

    Read line by line, not with :mod:`csv`: the release never quotes a field (the csv writer quotes
    only fields holding a tab, quote or newline, which expressions never do), the csv reader refuses
    fields over 128 KiB, and a stray quote would make it join many lines into one field."""
    fix = f"regenerate the file (scripts/prepare_data.py listops) or restore it from the LRA release"
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"not UTF-8 text (byte {e.start})", fix=fix) from None
    head = lines[0].rstrip("\r").split("\t")
    if [c.strip() for c in head] != ["Source", "Target"]:
        raise CorruptFileError(path, f"expected the header 'Source<TAB>Target', got {validate.cut(lines[0])}",
                               record="line 1", fix=fix)  # fmt: skip
    texts, labels = [], []
    for line, text in enumerate(lines[1:], start=2):
        row = text.rstrip("\r").split("\t")
        if row == [""]:
            continue
        where = f"line {line}"
        if len(row) != 2:
            raise CorruptFileError(path, f"{len(row)} tab-separated fields, expected '<expression><TAB><0-9>': "
                                   f"{validate.cut(text)}", record=where, fix=fix)  # fmt: skip
        label = row[1].strip()
        if not (label.isdigit() and 0 <= int(label) <= 9):
            raise CorruptFileError(path, f"label {validate.cut(row[1])} is not a digit 0-9", record=where, fix=fix)
        odd = set(row[0].split()) - ALPHABET
        if odd:
            raise CorruptFileError(path, f"token {validate.cut(min(odd))} is not ListOps ([MIN [MAX [MED [SM ] ( ) 0-9)"
                                   f" in {validate.cut(row[0])}", record=where, fix=fix)  # fmt: skip
        texts.append(row[0])
        labels.append(int(label))
    validate.not_empty(path, len(texts), "the split (no rows after the header)", fix)
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
