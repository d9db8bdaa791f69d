"""WikiText loader: tokenization with <eos>, vocabulary order, windows, errors."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data._files import DatasetNotFoundError
from ssm.data.wikitext import DATASETS

TRAIN = " = Title = \n\n the cat @-@ sat . \n the dog <unk> \n"
VALID = " the cat \n"
TEST = " dog sat the \n"


def write(root, folder, names=("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"), texts=(TRAIN, VALID, TEST)):
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    for n, t in zip(names, texts):
        (d / n).write_text(t, encoding="utf-8")


def test_vocab_and_stream_wt103(tmp_path):
    write(tmp_path, "wikitext-103")
    c = DataConfig(name="wt103", root=str(tmp_path), seq_len=4)
    inf = DATASETS["wt103"].info(c)
    # train counts: the 2, = 2, then first-seen order among count 1: Title cat @-@ sat . dog <unk>
    assert inf.vocab == ["<eos>", "=", "the", "Title", "cat", "@-@", "sat", ".", "dog", "<unk>"]
    # stream: = Title = <eos> <eos> the cat @-@ sat . <eos> the dog <unk> <eos>
    stream = [1, 3, 1, 0, 0, 2, 4, 5, 6, 7, 0, 2, 8, 9, 0]
    tr = DATASETS["wt103"].load(c, "train")
    assert len(tr) == 4  # 14 predicted positions in windows of 4
    x = np.concatenate([tr[i]["inputs"][: tr[i]["lengths"]] for i in range(4)])
    y = np.concatenate([tr[i]["targets"][: tr[i]["lengths"]] for i in range(4)])
    assert x.tolist() == stream[:-1] and y.tolist() == stream[1:]
    last = tr[3]
    assert int(last["lengths"]) == 2 and last["targets"][2:].tolist() == [0, 0]
    te = DATASETS["wt103"].load(c, "test")
    assert len(te) == 1  # dog sat the <eos>: three predicted positions
    assert te[0]["inputs"].tolist() == [8, 6, 2, 0] and te[0]["targets"].tolist() == [6, 2, 0, 0] and int(te[0]["lengths"]) == 3


def test_wt2_counts_all_splits_and_txt_names(tmp_path):
    write(tmp_path, "wikitext-2", names=("train.txt", "valid.txt", "test.txt"),
          texts=(" b a \n", " c c \n", " c b \n"))  # fmt: skip
    inf = DATASETS["wt2"].info(DataConfig(name="wt2", root=str(tmp_path), seq_len=3))
    # counts over train+valid+test: c 3, b 2, a 1
    assert inf.vocab == ["<eos>", "c", "b", "a"] and inf.task == "lm" and inf.d_output == 4


def test_missing_split_is_named(tmp_path):
    write(tmp_path, "wikitext-2", names=("valid.txt", "test.txt"), texts=(VALID, TEST))
    with pytest.raises(DatasetNotFoundError, match=r"missing the \['train'\] split"):
        DATASETS["wt2"].load(DataConfig(name="wt2", root=str(tmp_path)), "test")
    with pytest.raises(DatasetNotFoundError, match="wikitext-103"):
        DATASETS["wt103"].load(DataConfig(name="wt103", root=str(tmp_path)), "test")
