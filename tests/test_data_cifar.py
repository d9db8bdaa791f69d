"""CIFAR-10 pickle loader: RGB / grayscale / noise-padded sequences, split, errors."""

import pickle

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data import cifar
from ssm.data._files import CorruptFileError, DatasetNotFoundError


def write_cifar(root, n=10, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar" / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in cifar.FILES:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        with open(d / f, "wb") as fh:  # python-2 style: bytes keys, as in the release
            pickle.dump({b"batch_label": f.encode(), b"labels": y, b"data": x, b"filenames": [b"a.png"] * n}, fh, protocol=2)
        out[f] = (x, y)
    return out


def test_rgb_sequence_and_normalization(tmp_path):
    raw = write_cifar(tmp_path)
    c = DataConfig(name="cifar10", root=str(tmp_path))
    te = cifar.load(c, "test")
    x, y = raw["test_batch"]
    ex = te[4]
    assert ex["inputs"].shape == (1024, 3) and int(ex["targets"]) == y[4]
    # pixel (r, c) = position 32 r + c; channel k comes from plane k of the row
    r, col = 7, 30
    for k in range(3):
        v = x[4, 1024 * k + 32 * r + col] / 255.0
        assert abs(ex["inputs"][32 * r + col, k] - (v - cifar.MEAN[k]) / cifar.STD[k]) < 1e-5
    tr, va = cifar.load(c, "train"), cifar.load(c, "val")
    assert len(tr) == 45 and len(va) == 5
    un = cifar.load(DataConfig(name="cifar10", root=str(tmp_path), normalize=False), "test")[4]["inputs"]
    np.testing.assert_array_equal(un[:, 0] * 255, x[4, :1024].astype(np.float32))


def test_grayscale_matches_pil_luma_on_hand_pixels(tmp_path):
    raw = write_cifar(tmp_path)
    x = raw["test_batch"][0]
    planes = x[0].reshape(3, 1024)  # a view: R, G, B planes
    for pixel, rgb in enumerate([(255, 0, 0), (0, 255, 0), (255, 0, 255), (10, 20, 30)]):
        planes[:, pixel] = rgb
    with open(tmp_path / "cifar" / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({b"labels": raw["test_batch"][1], b"data": x}, fh, protocol=2)
    g = cifar.load(DataConfig(name="cifar10", root=str(tmp_path), grayscale=True, normalize=False), "test")[0]
    assert g["inputs"].shape == (1024, 1)
    # ITU-R 601-2 luma L = R 299/1000 + G 587/1000 + B 114/1000, rounded:
    # red 76.245 -> 76, green 149.685 -> 150, magenta 76.245 + 29.07 = 105.315 -> 105,
    # (10, 20, 30): 2.99 + 11.74 + 3.42 = 18.15 -> 18
    np.testing.assert_array_equal(np.round(g["inputs"][:4, 0] * 255), [76, 150, 105, 18])
    gn = cifar.load(DataConfig(name="cifar10", root=str(tmp_path), grayscale=True), "test")[0]["inputs"]
    assert abs(gn[0, 0] - (76 / 255 - 122.6 / 255) / (61 / 255)) < 1e-5


def test_noise_padding(tmp_path):
    raw = write_cifar(tmp_path)
    c = DataConfig(name="cifar10", root=str(tmp_path), noise_pad=1024)
    assert cifar.info(c).seq_len == 2048
    te = cifar.load(c, "test")
    a, b = te[2]["inputs"], te[2]["inputs"]
    assert a.shape == (2048, 3)
    v = raw["test_batch"][0][2, 1024 * 1 + 5] / 255.0
    assert abs(a[5, 1] - (v - cifar.MEAN[1]) / cifar.STD_HOPE[1]) < 1e-5
    noise = a[1024:]
    assert noise.min() >= 0 and noise.max() < 1 and noise.std() > 0.2
    np.testing.assert_array_equal(a, b)  # eval noise fixed per example
    tr = cifar.load(c, "train")
    first, second = tr[0]["inputs"], tr[0]["inputs"]
    np.testing.assert_array_equal(first[:1024], second[:1024])
    assert not np.array_equal(first[1024:], second[1024:])  # fresh training noise each read


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        cifar.load(DataConfig(name="cifar10", root=str(tmp_path)), "train")
    write_cifar(tmp_path)
    f = tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_3"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="data_batch_3"):
        cifar.load(DataConfig(name="cifar10", root=str(tmp_path)), "train")
