"""SaShiMi audio loaders: quantization formulas on hand values, shifting/padding, splits, errors."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data import audio
from ssm.data._files import CorruptFileError, DatasetNotFoundError, write_wav


def test_linear_quantization_by_hand():
    s = np.array([-2.0, 0.0, 2.0, 1.0])
    # u = (s + 2)/(4 + 1e-6) = [0, .5, .99999975, .75]; q = floor(u·255.99 + .005)
    assert audio.linear_encode(s).tolist() == [0, 127, 255, 191]


def test_mulaw_quantization_by_hand():
    q = audio.mu_law_encode(np.array([-1.0, 0.0, 1.0]))
    # a = -1 + 2(s+1)/(2 + 1e-6): a(0) = -5e-7 (slightly below 0), so
    # e = -ln(1 + 255·4.9e-7)/ln 256 = -2.25e-5 and (e + 1)/2·255.99 + .005 = 127.997 -> 127
    assert q.tolist() == [0, 127, 255]
    import math

    a = -1 + 2 * (0.0 + 1) / (2 + 1e-6)
    e = math.copysign(math.log(1 + 255 * abs(a + 1e-8)) / math.log(256), a)
    assert math.floor((e + 1) / 2 * 255.99 + 0.005) == 127
    s2 = np.array([-1.0, -0.5, 1.0])
    a2 = -1 + 2 * 0.5 / (2 + 1e-6)
    e2 = -math.log(1 + 255 * abs(a2 + 1e-8)) / math.log(256)
    assert audio.mu_law_encode(s2)[1] == math.floor((e2 + 1) / 2 * 255.99 + 0.005)
    # decode inverts the companding up to the quantization step
    x = np.linspace(-1, 1, 11)
    assert np.abs(audio.mu_law_decode(audio.mu_law_encode(x)) - x).max() < 0.05


def test_sc09_examples_and_lists(tmp_path):
    d = tmp_path / "sc09"
    rng = np.random.default_rng(0)
    clips = {}
    for c in audio.DIGITS:
        (d / c).mkdir(parents=True)
        for k in range(2):
            s = rng.integers(-20000, 20000, 30 + k, dtype=np.int16)
            write_wav(d / c / f"a{k}_nohash_0.wav", s, 16000)
            clips[f"{c}/a{k}_nohash_0.wav"] = s
    (d / "validation_list.txt").write_text("one/a0_nohash_0.wav\n")
    (d / "testing_list.txt").write_text("nine/a1_nohash_0.wav\ntwo/a1_nohash_0.wav\n")
    c = DataConfig(name="sc09", root=str(tmp_path), seq_len=40)
    m = audio.DATASETS["sc09"]
    assert [len(m.load(c, s)) for s in ("train", "val", "test")] == [17, 1, 2]
    ex = m.load(c, "val")[0]
    q = audio.mu_law_encode(clips["one/a0_nohash_0.wav"] / 32768.0)
    assert int(ex["lengths"]) == 30
    assert ex["targets"][:30].tolist() == q.tolist() and (ex["targets"][30:] == 0).all()
    assert ex["inputs"][0] == 128 and ex["inputs"][1:30].tolist() == q[:29].tolist()
    assert (ex["inputs"][30:] == 128).all()
    inf = m.info(c)
    assert inf.tokens and inf.d_input == 256 and inf.task == "generation"


def test_beethoven_chunks_linear_and_natsort_split(tmp_path):
    d = tmp_path / "beethoven"
    d.mkdir()
    for i in range(1, 51):  # natural order 1..50 (lexicographic would put 10 before 2)
        write_wav(d / f"{i}.wav", np.full(25, i, np.int16) * np.int16(1 + (np.arange(25) % 3)), 16000)
    c = DataConfig(name="beethoven", root=str(tmp_path), seq_len=10)
    m = audio.DATASETS["beethoven"]
    tr, va, te = (m.load(c, s) for s in ("train", "val", "test"))
    # 50 files: 44 / 3 / 3; each 25-sample file -> 2 chunks of 10 (remainder dropped)
    assert (len(tr), len(va), len(te)) == (88, 6, 6)
    s = (np.full(25, 45) * (1 + (np.arange(25) % 3)))[:10] / 32768.0
    np.testing.assert_array_equal(va[0]["targets"], audio.linear_encode(s))  # file 45 is first in val


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="youtube_mix"):
        audio.DATASETS["youtubemix"].load(DataConfig(name="youtubemix", root=str(tmp_path)), "train")
    d = tmp_path / "youtube_mix"
    d.mkdir()
    for i in range(9):  # 9 files: the smallest folder whose 88/6/6 % split leaves a file to each split
        write_wav(d / f"x{i}.wav", np.zeros(10, np.int16), 8000)
    with pytest.raises(CorruptFileError, match="x8.wav.*16 kHz"):
        audio.DATASETS["youtubemix"].load(DataConfig(name="youtubemix", root=str(tmp_path), seq_len=4), "test")
