"""WikiText-103 / WikiText-2 word-level language modelling (registered as ``wt103`` and ``wt2``).

Files ``wiki.{train,valid,test}.tokens`` (the official zips) or ``{train,valid,test}.txt``
(Transformer-XL ``getdata.sh`` names, what S4 reads). Preprocessing as state-spaces/s4 ``lm.py`` /
``utils/vocabulary.py``: each line stripped and split on whitespace, ``<eos>`` appended (an empty
line is ``<eos>`` alone), no lower-casing; vocabulary ``<eos>`` = 0 then ``Counter.most_common()``
order (count desc, ties in first-seen order) over train only (WT103) or train+valid+test in that
order (WT2); each split is one token stream.

Examples are consecutive non-overlapping windows of ``seq_len`` tokens: inputs ``s[iL:(i+1)L]``,
targets ``s[iL+1:(i+1)L+1]``. The last, shorter window is padded with 0 and carries its true
length (the loss counts only the first ``lengths`` positions), so every token of a split is
predicted exactly once.
(Not reproduced: S4's per-epoch random roll of the batch rows.)
"""

from __future__ import annotations

import collections
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

SEQ_LEN = {"wt103": 8192, "wt2": 512}
FOLDERS = {
    "wt103": ("wikitext-103", "wt103", "wikitext-103-v1/wikitext-103"),
    "wt2": ("wikitext-2", "wt2", "wikitext-2-v1/wikitext-2"),
}
SPLIT_FILES = {"train": "train", "val": "valid", "test": "test"}
HOW = {
    "wt103": "download wikitext-103-v1.zip (Salesforce; or run Transformer-XL's getdata.sh) and extract it into <root>/.",
    "wt2": "download wikitext-2-v1.zip (Salesforce) and extract it into <root>/.",
}


def _layout(name: str) -> str:
    return f"  <root>/{FOLDERS[name][0]}/wiki.{{train,valid,test}}.tokens   (or {{train,valid,test}}.txt; also <root>/{FOLDERS[name][1]}/)"


def _locate(root: Path, name: str) -> dict[str, Path]:
    dirs = [root / f for f in FOLDERS[name]]
    for d in dirs:
        found = {}
        for s, stem in SPLIT_FILES.items():
            p = next((d / n for n in (f"wiki.{stem}.tokens", f"{stem}.txt") if (d / n).is_file()), None)
            if p is not None:
                found[s] = p
        if len(found) == 3:
            return found
        if found:
            missing = [SPLIT_FILES[s] for s in SPLIT_FILES if s not in found]
            raise DatasetNotFoundError(
                name, [d], _layout(name), HOW[name] + f" (found {sorted(p.name for p in found.values())}; missing the {missing} split(s))"
            )
    raise DatasetNotFoundError(name, dirs, _layout(name), HOW[name])


def tokenize_lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"not UTF-8 text ({e})") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip().split() + ["<eos>"] for line in lines]


def build_vocab(token_lines) -> list[str]:
    counts: collections.Counter[str] = collections.Counter()
    for toks in token_lines:
        counts.update(t for t in toks if t != "<eos>")
    return ["<eos>"] + [t for t, _ in counts.most_common()]


def _arrays(root: Path, name: str) -> dict[str, np.ndarray]:
    files = _locate(root, name)

    def build():
        lines = {s: tokenize_lines(p) for s, p in files.items()}
        for s, ls in lines.items():  # a split needs 2 tokens: one input and the next as its target
            words = sum(len(toks) - 1 for toks in ls)
            validate.not_empty(files[s], words, f"the {s} split (no words; {len(ls)} line(s))",
                               f"restore {files[s].name} from the {name} release")  # fmt: skip
        counted = lines["train"] if name == "wt103" else lines["train"] + lines["val"] + lines["test"]
        vocab = build_vocab(counted)
        index = {t: i for i, t in enumerate(vocab)}
        out = {"vocab": np.asarray(vocab)}
        for s, ls in lines.items():
            try:
                out[s] = np.fromiter((index[t] for toks in ls for t in toks), np.int32)
            except KeyError as e:  # WT103 valid/test words outside the train vocabulary
                raise CorruptFileError(files[s], f"token {e.args[0]!r} is not in the training vocabulary") from None
        return out

    return cached(root, name, {}, list(files.values()), build)


def windows(stream: np.ndarray, L: int) -> dict[str, np.ndarray]:
    n = (len(stream) - 1 + L - 1) // L  # windows covering the len−1 predictable positions
    x = np.zeros((n, L), np.int32)
    y = np.zeros((n, L), np.int32)
    lengths = np.zeros(n, np.int32)
    for i in range(n):
        a = stream[i * L : (i + 1) * L + 1]
        k = len(a) - 1
        x[i, :k], y[i, :k], lengths[i] = a[:-1], a[1:], k
    return {"inputs": x, "targets": y, "lengths": lengths}


@dataclass(frozen=True)
class Options(DatasetOptions):
    """WikiText (word-level language modelling)."""

    seq_len: int = 512  # tokens per training window


def _module(name: str) -> types.ModuleType:
    m = types.ModuleType(f"ssm.data.wikitext.{name}", f"WikiText '{name}' (see ssm.data.wikitext).")

    def info(cfg) -> DatasetInfo:
        vocab = [str(v) for v in _arrays(data_root(cfg), name)["vocab"]]
        return DatasetInfo(task="lm", d_input=len(vocab), d_output=len(vocab), seq_len=cfg.seq_len,
                           tokens=True, vocab=vocab)  # fmt: skip

    def load(cfg, split: str):
        check_split(split)
        stream = _arrays(data_root(cfg), name)[split]
        return source(**windows(stream, cfg.seq_len))

    m.info, m.load = info, load
    m.Options = with_defaults(Options, name, seq_len=SEQ_LEN[name])
    return m


DATASETS = {name: _module(name) for name in SEQ_LEN}
