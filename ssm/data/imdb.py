"""IMDB reviews at character level (LRA Text), from ``aclImdb`` folders or a prepared tfds directory.

Preprocessing as state-spaces/s4 ``IMDB`` (``configs/dataset/imdb.yaml``): tokens = Python
``list(text)`` (Unicode characters, ``<br />`` kept); truncate to ``seq_len − 1`` (default 4096)
and append ``<eos>``; vocabulary from train with ``min_freq`` 15 and specials
``<pad>, <unk>, <eos>`` (torchtext order: count desc, ties by string); right-padded with
``<pad>`` = 0 with true lengths. No validation split (``val_split: 0``): val = test.

Sources, in order: ``<root>/imdb/aclImdb/{train,test}/{pos,neg}/*.txt`` (also ``<root>/aclImdb``),
else a tfds ``imdb_reviews/plain_text/<version>`` directory under ``<root>`` or
``<root>/tensorflow_datasets`` (array_record shards), read offline with ``download=False``.
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

SEQ_LEN = 4096
MIN_FREQ = 15
SPECIALS = ("<pad>", "<unk>", "<eos>")
SPLIT_NOTES = {"val": "the release has no validation split; the test split is used for validation (as LRA and S4)"}
LAYOUT = """  <root>/imdb/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt   (or <root>/aclImdb/...)
  or a prepared tensorflow-datasets directory <root>[/tensorflow_datasets]/imdb_reviews/plain_text/<version>/
     with array_record shards"""
HOW = (
    "download aclImdb_v1.tar.gz from https://ai.stanford.edu/~amaas/data/sentiment/ and extract it into "
    "<root>/imdb/, or prepare tfds 'imdb_reviews' with file_format=array_record on a machine with internet."
)


@dataclass(frozen=True)
class Options(DatasetOptions):
    """LRA IMDB (byte-level text classification)."""

    seq_len: int = SEQ_LEN  # bytes per review (cut/padded)


def _acl_candidates(root: Path) -> list[Path]:
    return [root / "imdb" / "aclImdb", root / "aclImdb"]


def _tfds_candidates(root: Path) -> list[Path]:
    return [root, root / "tensorflow_datasets", root / "imdb"]


def _read_acl(d: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    out = {}
    for part in ("train", "test"):
        texts, labels = [], []
        for label, sub in ((0, "neg"), (1, "pos")):
            folder = d / part / sub
            files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
            if not files:
                raise CorruptFileError(folder, "folder is missing or holds no .txt reviews")
            for f in files:
                try:
                    texts.append(f.read_text(encoding="utf-8"))
                except UnicodeDecodeError as e:
                    raise CorruptFileError(f, f"not UTF-8 text ({e})") from e
                labels.append(label)
        out[part] = (texts, np.asarray(labels, np.int32))
    return out


def _tfds_dir(root: Path) -> Path | None:
    for base in _tfds_candidates(root):
        d = base / "imdb_reviews" / "plain_text"
        if d.is_dir():
            versions = sorted(v for v in d.iterdir() if (v / "dataset_info.json").is_file())
            if versions:
                return versions[-1]
    return None


def _read_tfds(vdir: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder_from_directory(str(vdir))
        out = {}
        for part in ("train", "test"):
            src = builder.as_data_source(split=part)
            rows = [src[i] for i in range(len(src))]
            texts = [r["text"].decode("utf-8") if isinstance(r["text"], bytes) else str(r["text"]) for r in rows]
            out[part] = (texts, np.asarray([int(r["label"]) for r in rows], np.int32))
            validate.labels_in_range(vdir, out[part][1], 2, record=lambda i: f"{part} example {i}",
                                     fix="re-prepare imdb_reviews")  # fmt: skip
        return out
    except NotImplementedError as e:  # tfrecord shards need TensorFlow to read
        raise CorruptFileError(vdir, f"tfds shards are not array_record; re-prepare with file_format='array_record' ({e})") from e


def _arrays(root: Path, seq_len: int) -> dict[str, np.ndarray]:
    acl = next((d for d in _acl_candidates(root) if (d / "train").is_dir() and (d / "test").is_dir()), None)
    if acl is not None:
        sources = sorted((acl / p / s) for p in ("train", "test") for s in ("pos", "neg") if (acl / p / s).is_dir())
        read = lambda: _read_acl(acl)
    else:
        vdir = _tfds_dir(root)
        if vdir is None:
            looked = _acl_candidates(root) + [b / "imdb_reviews" / "plain_text" for b in _tfds_candidates(root)]
            raise DatasetNotFoundError("imdb", looked, LAYOUT, HOW)
        sources = sorted(vdir.iterdir())
        read = lambda: _read_tfds(vdir)

    def build():
        data = read()
        vocab = torchtext_vocab((list(t) for t in data["train"][0]), SPECIALS, MIN_FREQ)
        out = {"vocab": np.asarray(vocab)}
        for part, (texts, labels) in data.items():
            ids, n = encode_padded([list(t) for t in texts], vocab, seq_len, unk="<unk>", eos="<eos>")
            out[f"{part}_x"], out[f"{part}_n"], out[f"{part}_y"] = ids, n, labels
        return out

    return cached(root, "imdb", {"seq_len": seq_len, "min_freq": MIN_FREQ}, sources, build)


def info(cfg) -> DatasetInfo:
    a = _arrays(data_root(cfg), cfg.seq_len)
    vocab = [str(v) for v in a["vocab"]]
    return DatasetInfo(task="classification", d_input=len(vocab), d_output=2, seq_len=cfg.seq_len,
                       tokens=True, vocab=vocab)  # fmt: skip


def load(cfg, split: str):
    check_split(split)
    a = _arrays(data_root(cfg), cfg.seq_len)
    part = "train" if split == "train" else "test"  # LRA / S4: test doubles as val
    return source(inputs=a[f"{part}_x"], targets=a[f"{part}_y"], lengths=a[f"{part}_n"])
