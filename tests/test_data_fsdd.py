"""FSDD loader: WAV parsing, the official index split, padding, errors."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data import fsdd
from ssm.data._files import CorruptFileError, DatasetNotFoundError, write_wav


def write_fsdd(root, speakers=("george", "theo"), indices=range(0, 8), seed=0):
    rng = np.random.default_rng(seed)
    d = root / "fsdd" / "recordings"
    d.mkdir(parents=True, exist_ok=True)
    clips = {}
    for digit in range(10):
        for sp in speakers:
            for i in indices:
                s = rng.integers(-32768, 32767, int(rng.integers(20, 60)), dtype=np.int16)
                write_wav(d / f"{digit}_{sp}_{i}.wav", s, 8000)
                clips[(digit, sp, i)] = s
    return clips


def test_split_values_and_padding(tmp_path):
    clips = write_fsdd(tmp_path)
    c = DataConfig(name="fsdd", root=str(tmp_path), seq_len=48, normalize=False)
    test, train, val = (fsdd.load(c, s) for s in ("test", "train", "val"))
    assert len(test) == 10 * 2 * 5  # index 0-4
    assert len(train) + len(val) == 10 * 2 * 3 and len(val) == 6
    assert fsdd.info(c).seq_len == 48 and fsdd.info(c).d_output == 10
    # files are read in sorted name order: 0_george_0.wav is the first test example
    ex = test[0]
    s = clips[(0, "george", 0)]
    n = min(len(s), 48)
    assert ex["inputs"].shape == (48, 1) and int(ex["lengths"]) == n and int(ex["targets"]) == 0
    np.testing.assert_array_equal(ex["inputs"][:n, 0], s[:n].astype(np.float32) / 32768)
    assert (ex["inputs"][n:] == 0).all()
    labels = sorted(int(test[i]["targets"]) for i in range(len(test)))
    assert labels == sorted(list(range(10)) * 10)


def test_normalize_scales_each_clip_to_unit_rms(tmp_path):
    clips = write_fsdd(tmp_path, speakers=("jackson",), indices=(0, 1, 5))  # test and train clips
    ex = fsdd.load(DataConfig(name="fsdd", root=str(tmp_path), seq_len=48), "test")[0]  # 0_jackson_0.wav
    s = clips[(0, "jackson", 0)][:48].astype(np.float64) / 32768
    n = len(s)
    np.testing.assert_allclose(ex["inputs"][:n, 0], s / np.sqrt(np.mean(s**2)), rtol=1e-5)
    assert (ex["inputs"][n:] == 0).all()


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="recordings"):
        fsdd.load(DataConfig(name="fsdd", root=str(tmp_path)), "train")
    write_fsdd(tmp_path, speakers=("lucas",), indices=range(5, 7))
    bad = tmp_path / "fsdd" / "recordings" / "3_lucas_5.wav"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(CorruptFileError, match="3_lucas_5.wav"):
        fsdd.load(DataConfig(name="fsdd", root=str(tmp_path)), "train")
    bad.unlink()
    write_wav(tmp_path / "fsdd" / "recordings" / "three.wav", np.zeros(5, np.int16), 8000)
    with pytest.raises(CorruptFileError, match="three.wav"):
        fsdd.load(DataConfig(name="fsdd", root=str(tmp_path)), "train")
