"""BIDMC loader: .ts parsing, the S4 70/15/15 sklearn split, processed .npy layout, errors."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data import bidmc
from ssm.data._files import CorruptFileError, DatasetNotFoundError

HEADER = "#comment\n@problemName BIDMC32HR\n@timeStamps false\n@missing false\n@univariate false\n@dimensions 2\n@equalLength true\n@seriesLength {L}\n@targetlabel true\n@data\n"


def write_ts(path, x, y):
    lines = [":".join(",".join(f"{v:.4f}" for v in x[i, :, d]) for d in range(x.shape[2])) + f":{y[i]:.3f}" for i in range(len(x))]
    path.write_text(HEADER.format(L=x.shape[1]) + "\n".join(lines) + "\n")


def test_ts_parse_and_split(tmp_path):
    rng = np.random.default_rng(0)
    xa, ya = np.round(rng.normal(size=(14, 6, 2)), 4), np.round(rng.uniform(60, 100, 14), 3)
    xb, yb = np.round(rng.normal(size=(6, 6, 2)), 4), np.round(rng.uniform(60, 100, 6), 3)
    d = tmp_path / "bidmc" / "HR"
    d.mkdir(parents=True)
    write_ts(d / "BIDMC32HR_TRAIN.ts", xa, ya)
    write_ts(d / "BIDMC32HR_TEST.ts", xb, yb)
    x, y = bidmc.read_ts(d / "BIDMC32HR_TRAIN.ts")
    np.testing.assert_allclose(x, xa) and np.testing.assert_allclose(y, ya)
    c = DataConfig(name="bidmc", root=str(tmp_path), target="HR")
    tr, va, te = (bidmc.load(c, s) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (14, 3, 3)  # 20 -> 14 / 6 -> 3 / 3
    # the split is sklearn's ShuffleSplit: train indices = permutation(20, random_state 0)[6:]
    perm = np.random.RandomState(0).permutation(20)
    allx = np.concatenate([xa, xb]).astype(np.float32)
    ally = np.concatenate([ya, yb]).astype(np.float32)
    np.testing.assert_array_equal(tr[0]["inputs"], allx[perm[6]])
    assert tr[0]["targets"].shape == (1,) and tr[0]["targets"][0] == ally[perm[6]]
    rest = perm[:6]
    perm2 = np.random.RandomState(1).permutation(6)
    np.testing.assert_array_equal(va[0]["inputs"], allx[rest[perm2[3]]])
    np.testing.assert_array_equal(te[0]["inputs"], allx[rest[perm2[0]]])


def test_processed_npy_layout(tmp_path):
    d = tmp_path / "bidmc" / "RR" / "reshuffle"
    d.mkdir(parents=True)
    for s, n in (("train", 4), ("valid", 2), ("test", 3)):
        np.save(d / f"{s}x.npy", np.full((n, 4000, 2), n, np.float64))
        np.save(d / f"{s}y.npy", np.arange(n, dtype=np.float64))
    c = DataConfig(name="bidmc", root=str(tmp_path))  # default target RR
    te = bidmc.load(c, "test")
    assert len(te) == 3 and te[2]["inputs"].shape == (4000, 2) and te[2]["targets"].tolist() == [2.0]
    assert bidmc.info(c).task == "regression"


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="zenodo.org/record/4001464"):
        bidmc.load(DataConfig(name="bidmc", root=str(tmp_path), target="SpO2"), "train")
    d = tmp_path / "bidmc" / "HR"
    d.mkdir(parents=True)
    (d / "BIDMC32HR_TRAIN.ts").write_text(HEADER.format(L=2) + "1,2:3,4:5\n1,2:3\n")
    (d / "BIDMC32HR_TEST.ts").write_text(HEADER.format(L=2) + "1,2:3,4:5\n")
    with pytest.raises(CorruptFileError, match="BIDMC32HR_TRAIN.ts.*line 12"):
        bidmc.load(DataConfig(name="bidmc", root=str(tmp_path), target="HR"), "train")
