"""AAN retrieval loader: TSV parsing (quotes literal), two-document tokens, vocab, errors."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data import aan
from ssm.data._files import CorruptFileError, DatasetNotFoundError

ROWS = {
    "train": [("1.0", 'a"b', "bb"), ("0.0", "ccc", "ab")],
    "eval": [("0.0", "a", "xyz")],
    "test": [("1.0", "cab", '"c"')],
}


def write_aan(root):
    d = root / "aan"
    d.mkdir(parents=True, exist_ok=True)
    for part, rows in ROWS.items():
        lines = [f"{lab}\tid{i}a\tid{i}b\t{t1}\t{t2}" for i, (lab, t1, t2) in enumerate(rows)]
        (d / f"new_aan_pairs.{part}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_tokens_vocab_and_pairs(tmp_path):
    write_aan(tmp_path)
    c = DataConfig(name="aan", root=str(tmp_path), seq_len=4)
    inf = aan.info(c)
    # train chars: a"b bb ccc ab -> b:4, c:3, a:2, ":1 ; ties none; '"' (0x22) sorts first anyway
    assert inf.vocab == ["<pad>", "<unk>", "<eos>", "b", "c", "a", '"'] and inf.task == "retrieval"
    tr = aan.load(c, "train")
    ex = tr[0]
    assert int(ex["targets"]) == 1
    assert ex["inputs"].tolist() == [5, 6, 3, 2] and int(ex["lengths"]) == 4  # a " b <eos>
    assert ex["inputs2"].tolist() == [3, 3, 2, 0] and int(ex["lengths2"]) == 3
    ex = tr[1]  # "ccc" fills 3 + eos; "ab"
    assert int(ex["targets"]) == 0 and ex["inputs"].tolist() == [4, 4, 4, 2]
    va = aan.load(c, "val")[0]  # eval file -> val; x y z are out of vocabulary
    assert va["inputs2"].tolist() == [1, 1, 1, 2]
    te = aan.load(c, "test")[0]
    assert te["inputs"].tolist() == [4, 5, 3, 2] and te["inputs2"].tolist() == [6, 4, 6, 2]


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="new_aan_pairs"):
        aan.load(DataConfig(name="aan", root=str(tmp_path)), "train")
    write_aan(tmp_path)
    f = tmp_path / "aan" / "new_aan_pairs.test.tsv"
    f.write_text("1.0\tid\tid\tonly four columns\n")
    with pytest.raises(CorruptFileError, match=r"new_aan_pairs.test.tsv.*line 1 has 4"):
        aan.load(DataConfig(name="aan", root=str(tmp_path)), "test")
