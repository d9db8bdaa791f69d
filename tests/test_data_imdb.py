"""IMDB character-level loader: aclImdb folders and a prepared tfds directory, vocab, errors."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data import imdb
from ssm.data._files import CorruptFileError, DatasetNotFoundError

TRAIN = {
    "pos": ["abba" * 8, "ab<br />é" * 4],
    "neg": ["bbbb" * 5 + "zz", "aab"],
}
TEST = {"pos": ["abq"], "neg": ["b" * 40]}


def write_acl(root):
    for part, docs in (("train", TRAIN), ("test", TEST)):
        for sub, texts in docs.items():
            d = root / "imdb" / "aclImdb" / part / sub
            d.mkdir(parents=True, exist_ok=True)
            for i, t in enumerate(texts):
                (d / f"{i}_{8 if sub == 'pos' else 2}.txt").write_text(t, encoding="utf-8")


def expected_vocab():
    from collections import Counter

    c = Counter()
    for docs in TRAIN.values():
        for t in docs:
            c.update(t)
    kept = sorted((t for t in c if c[t] >= 15), key=lambda t: (-c[t], t))
    return ["<pad>", "<unk>", "<eos>"] + kept


def test_acl_tokens_vocab_labels(tmp_path):
    write_acl(tmp_path)
    c = DataConfig(name="imdb", root=str(tmp_path), seq_len=16)
    inf = imdb.info(c)
    vocab = expected_vocab()
    # counts: b = 16+4+20+1 = 41, a = 16+4+2 = 22, others (<, r, ' ', /, >, é, z) below 15
    assert vocab == ["<pad>", "<unk>", "<eos>", "b", "a"]
    assert inf.vocab == vocab and inf.d_input == 5 and inf.tokens and inf.seq_len == 16
    te = imdb.load(c, "test")
    va = imdb.load(c, "val")
    assert len(te) == 2 and len(va) == 2  # val = test (no validation split)
    # sorted order: neg then pos; test/neg = "b"*40 truncated to 15 chars + <eos>
    ex = te[0]
    assert int(ex["targets"]) == 0 and int(ex["lengths"]) == 16
    assert ex["inputs"].tolist() == [3] * 15 + [2]
    ex = te[1]  # "abq": a b <unk> <eos>, then pad
    assert int(ex["targets"]) == 1 and int(ex["lengths"]) == 4
    assert ex["inputs"].tolist() == [4, 3, 1, 2] + [0] * 12
    tr = imdb.load(c, "train")
    assert sorted(int(tr[i]["targets"]) for i in range(4)) == [0, 0, 1, 1]


def test_tfds_directory(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")

    class ImdbReviews(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="plain_text")]

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["neg", "pos"])}
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(TRAIN), "test": self._generate_examples(TEST)}

        def _generate_examples(self, docs):
            for sub, texts in docs.items():
                for i, t in enumerate(texts):
                    yield f"{sub}{i}", {"text": t, "label": sub}

    ImdbReviews(data_dir=str(tmp_path / "tensorflow_datasets"), file_format="array_record").download_and_prepare()
    c = DataConfig(name="imdb", root=str(tmp_path), seq_len=16)
    assert imdb.info(c).vocab == expected_vocab()
    te = imdb.load(c, "test")
    rows = sorted((int(te[i]["targets"]), te[i]["inputs"].tolist()) for i in range(len(te)))
    assert rows == [(0, [3] * 15 + [2]), (1, [4, 3, 1, 2] + [0] * 12)]


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="aclImdb"):
        imdb.load(DataConfig(name="imdb", root=str(tmp_path)), "train")
    write_acl(tmp_path)
    bad = tmp_path / "imdb" / "aclImdb" / "train" / "pos" / "0_8.txt"
    bad.write_bytes(b"\xff\xfe\xfa broken")
    with pytest.raises(CorruptFileError, match="0_8.txt"):
        imdb.load(DataConfig(name="imdb", root=str(tmp_path)), "train")
