"""Speech Commands loader: class order, list-file split (SC35), stratified split (SC10),
per-time-index standardization, resolution, MFCC pieces against independent maths, errors."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data import speech_commands as sc
from ssm.data._files import CorruptFileError, DatasetNotFoundError, write_wav


def write_sc(root, classes, per_class=3, short_every=0, seed=0, length=16000):
    rng = np.random.default_rng(seed)
    d = root / "speech_commands"
    clips = {}
    for c in classes:
        (d / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            n = length // 2 if short_every and k % short_every == 0 else length
            s = rng.integers(-3000, 3000, n, dtype=np.int16)
            write_wav(d / c / f"{k:08x}_nohash_0.wav", s, 16000)
            clips[f"{c}/{k:08x}_nohash_0.wav"] = s
    return d, clips


def test_sc35_lists_classes_and_standardization(tmp_path):
    d, clips = write_sc(tmp_path, sc.ALL_CLASSES, per_class=3, short_every=3, length=40)
    # length 40 "clips" are allowed (<= 16000) and zero-padded to 16000
    (d / "validation_list.txt").write_text("bed/00000001_nohash_0.wav\n")
    (d / "testing_list.txt").write_text("zero/00000002_nohash_0.wav\ncat/00000000_nohash_0.wav\n")
    c = DataConfig(name="sc35", root=str(tmp_path))
    tr, va, te = (sc.DATASETS["sc35"].load(c, s) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (105 - 3, 1, 2)
    assert int(va[0]["targets"]) == 0  # bed is class 0 in ALL_CLASSES order
    assert sorted(int(te[i]["targets"]) for i in range(2)) == [1, 34]  # cat, zero
    # per-time-index standardization with train statistics (unbiased std)
    train_rel = sorted(set(clips) - {"bed/00000001_nohash_0.wav", "zero/00000002_nohash_0.wav", "cat/00000000_nohash_0.wav"},
                       key=lambda r: (sc.ALL_CLASSES.index(r.split("/")[0]), r))  # fmt: skip
    X = np.zeros((len(train_rel), 16000))
    for i, r in enumerate(train_rel):
        X[i, : len(clips[r])] = clips[r] / 32768.0
    mu, sd = X.mean(0), X.std(0, ddof=1)
    v = clips["bed/00000001_nohash_0.wav"] / 32768.0
    want = (np.pad(v, (0, 16000 - len(v))) - mu) / (sd + 1e-5)
    got = va[0]["inputs"][:, 0]
    assert va[0]["inputs"].shape == (16000, 1)
    np.testing.assert_allclose(got[:40], want[:40], rtol=1e-5, atol=1e-5)
    assert np.allclose(got[40:], 0)  # beyond every clip: zeros standardized to (0 - 0)/(0 + 1e-5)
    r2 = sc.DATASETS["sc35"].load(DataConfig(name="sc35", root=str(tmp_path), resolution=2), "val")[0]["inputs"]
    np.testing.assert_array_equal(r2[:, 0], got[::2])
    assert sc.DATASETS["sc35"].info(DataConfig(name="sc35", resolution=2)).seq_len == 8000


def test_sc10_drops_short_and_splits_70_15_15(tmp_path):
    d, _ = write_sc(tmp_path, sc.SUBSET_CLASSES, per_class=21, short_every=7, length=320)
    # those 210 clips are shorter than 16000 samples and must be dropped; add 20 full ones per class
    for c in sc.SUBSET_CLASSES:
        for k in range(20):
            write_wav(d / c / f"full{k:02d}_nohash_0.wav", np.full(16000, k, np.int16), 16000)
    (d / "validation_list.txt").write_text("")
    (d / "testing_list.txt").write_text("")
    c = DataConfig(name="sc10", root=str(tmp_path))
    sizes = [len(sc.DATASETS["sc10"].load(c, s)) for s in ("train", "val", "test")]
    assert sizes == [140, 30, 30]  # 200 full-length clips (the 210 short ones dropped)
    labels = [int(sc.DATASETS["sc10"].load(c, "val")[i]["targets"]) for i in range(30)]
    assert np.bincount(labels, minlength=10).tolist() == [3] * 10  # stratified


def test_mfcc_pieces_against_independent_maths():
    scipy_fft = pytest.importorskip("scipy.fft")
    from scipy.signal import get_window

    # DCT-II orthonormal
    z = np.random.default_rng(0).normal(size=(3, 64))
    np.testing.assert_allclose(z @ sc.dct_matrix(), scipy_fft.dct(z, type=2, norm="ortho", axis=-1)[:, :20], atol=1e-12)
    # mel filter m: a triangle rising from HTK point m to 1 at point m+1, falling to 0 at m+2
    fb = sc.mel_filterbank(n_freqs=8001, n_mels=8, sr=16000)  # 1 Hz bins
    pts = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 10) / 2595) - 1)
    f = np.arange(8001.0)
    for m in range(8):
        tri = np.clip(np.minimum((f - pts[m]) / (pts[m + 1] - pts[m]), (pts[m + 2] - f) / (pts[m + 2] - pts[m + 1])), 0, None)
        np.testing.assert_allclose(fb[:, m], tri, atol=1e-9)
    # whole pipeline on one frame, recomputed by hand: reflect pad 100, periodic Hann, |DFT|^2
    x = np.random.default_rng(1).normal(size=1000) * 0.1
    out = sc.mfcc(x[None])
    assert out.shape == (1, 11, 20)  # 1000 // 100 + 1 frames
    xp = np.concatenate([x[1:101][::-1], x, x[-101:-1][::-1]])
    k = 4
    frame = xp[100 * k : 100 * k + 200] * get_window("hann", 200, fftbins=True)
    n = np.arange(200)
    power = np.abs(np.exp(-2j * np.pi * np.outer(np.arange(101), n) / 200) @ frame) ** 2
    want = scipy_fft.dct(np.log(power @ sc.mel_filterbank() + 1e-6), type=2, norm="ortho")[:20]
    np.testing.assert_allclose(out[0, k], want, rtol=1e-9, atol=1e-9)


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="speech_commands_v0.02.tar.gz"):
        sc.DATASETS["sc10"].load(DataConfig(name="sc10", root=str(tmp_path)), "train")
    d, _ = write_sc(tmp_path, sc.SUBSET_CLASSES, per_class=1)
    (d / "validation_list.txt").write_text("")
    (d / "testing_list.txt").write_text("")
    write_wav(d / "go" / "bad.wav", np.zeros(10, np.int16), 8000)
    with pytest.raises(CorruptFileError, match="bad.wav"):
        sc.DATASETS["sc10"].load(DataConfig(name="sc10", root=str(tmp_path)), "train")
