"""Informer CSV loader: column order, borders, train-only scaling, windows, errors."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data._files import CorruptFileError, DatasetNotFoundError
from ssm.data.informer import DATASETS, borders

COLS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def write_ett(root, name="ETTh1.csv", n=14400, seed=0):
    rng = np.random.default_rng(seed)
    v = np.round(rng.normal(size=(n, 7)) * 3 + np.arange(7), 3)
    v[:, 0] += np.arange(n) * 0.001  # trend: train statistics differ from the whole file
    d = root / "informer" / "etth"
    d.mkdir(parents=True, exist_ok=True)
    lines = ["date," + ",".join(COLS)]
    for i in range(n):
        h = i % 24
        lines.append(f"2016-07-{1 + (i // 24) % 28:02d} {h:02d}:00:00," + ",".join(f"{x:.3f}" for x in v[i]))
    (d / name).write_text("\n".join(lines) + "\n")
    return v


def test_ett_univariate_windows_and_scaling(tmp_path):
    v = write_ett(tmp_path)
    L, P = 8, 4
    c = DataConfig(name="etth1", root=str(tmp_path), seq_len=L, pred_len=P)
    m = DATASETS["etth1"]
    inf = m.info(c)
    assert (inf.d_input, inf.d_output, inf.seq_len, inf.task) == (1, 1, L + P, "regression")
    ot = v[:, 6]
    mu, sd = ot[:8640].mean(), ot[:8640].std()  # train rows only, population std
    z = (ot - mu) / sd
    tr = m.load(c, "train")
    assert len(tr) == 8640 - L - P + 1
    ex = tr[5]
    np.testing.assert_allclose(ex["inputs"][:L, 0], z[5 : 5 + L], rtol=1e-5, atol=1e-6)
    assert (ex["inputs"][L:] == 0).all()
    np.testing.assert_allclose(ex["targets"][:, 0], z[5 + L : 5 + L + P], rtol=1e-5, atol=1e-6)
    te = m.load(c, "test")  # rows [11520 - L, 14400)
    assert len(te) == 14400 - (11520 - L) - L - P + 1
    np.testing.assert_allclose(te[0]["inputs"][:L, 0], z[11520 - L : 11520], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(te[0]["targets"][:, 0], z[11520 : 11520 + P], rtol=1e-5, atol=1e-6)


def test_multivariate_modes(tmp_path):
    v = write_ett(tmp_path)
    c = DataConfig(name="etth1", root=str(tmp_path), seq_len=6, pred_len=2, features="M")
    inf = DATASETS["etth1"].info(c)
    assert inf.d_input == 7 and inf.d_output == 7
    ex = DATASETS["etth1"].load(c, "val")[0]  # starts at row 8640 - 6
    z = (v - v[:8640].mean(0)) / v[:8640].std(0)
    np.testing.assert_allclose(ex["inputs"][:6], z[8634:8640], rtol=1e-5, atol=1e-6)
    c = DataConfig(name="etth1", root=str(tmp_path), seq_len=6, pred_len=2, features="MS", target="HULL")
    ex = DATASETS["etth1"].load(c, "val")[0]
    order = [0, 2, 3, 4, 5, 6, 1]  # target moved last
    np.testing.assert_allclose(ex["inputs"][:6], z[8634:8640][:, order], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex["targets"][:, 0], z[8640:8642, 1], rtol=1e-5, atol=1e-6)


def test_custom_borders():
    b = borders("custom", 100, 10)
    assert b == {"train": (0, 70), "val": (60, 80), "test": (70, 100)}
    assert borders("ett_minute", 57600, 5)["val"] == (34560 - 5, 46080)


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="ETTh1.csv"):
        DATASETS["etth1"].load(DataConfig(name="etth1", root=str(tmp_path)), "train")
    d = tmp_path / "informer" / "etth"
    d.mkdir(parents=True)
    (d / "ETTh1.csv").write_text("date," + ",".join(COLS) + "\n2016-07-01 00:00:00,1,2,3\n")
    with pytest.raises(CorruptFileError, match="ETTh1.csv.*line 2"):
        DATASETS["etth1"].load(DataConfig(name="etth1", root=str(tmp_path)), "train")
