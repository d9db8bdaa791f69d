"""MNIST IDX loader: format parsing, preprocessing, the pMNIST permutation, and errors."""

import gzip

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data import mnist
from ssm.data._files import CorruptFileError, DatasetNotFoundError


def idx_bytes(arr: np.ndarray) -> bytes:
    magic = bytes([0, 0, 0x08, arr.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return magic + dims + arr.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=20, n_test=10, *, gz=True, sep="-", seed=0):
    """Tiny MNIST in the official IDX format; returns the raw arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, nd in (("images", x, 3), ("labels", y, 1)):
            name = f"{part}-{kind}{sep}idx{nd}-ubyte"
            raw = idx_bytes(arr)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        data[part] = (x, y)
    return data


def cfg(root, **kw):
    return DataConfig(name="mnist", root=str(root), **kw)


@pytest.mark.parametrize("gz,sep", [(True, "-"), (False, "-"), (True, "."), (False, ".")])
def test_smnist_pixels_labels_and_split(tmp_path, gz, sep):
    data = write_mnist(tmp_path / "mnist", gz=gz, sep=sep)
    c = cfg(tmp_path)
    test = mnist.load(c, "test")
    x, y = data["t10k"]
    assert len(test) == 10
    ex = test[3]
    assert ex["inputs"].shape == (784, 1) and ex["inputs"].dtype == np.float32
    # row-major: pixel (r, c) at position 28 r + c, value byte/255 with no normalization
    assert ex["inputs"][28 * 5 + 7, 0] == np.float32(x[3, 5, 7]) / np.float32(255)
    np.testing.assert_array_equal(ex["inputs"][:, 0] * 255, x[3].reshape(-1).astype(np.float32))
    assert int(ex["targets"]) == int(y[3])
    tr, va = mnist.load(c, "train"), mnist.load(c, "val")
    assert len(tr) == 18 and len(va) == 2  # 10% held out
    # train and val partition the training file
    xt = data["train"][0].reshape(20, -1).astype(np.float32) / 255
    rows = [tr[i]["inputs"][:, 0] for i in range(18)] + [va[i]["inputs"][:, 0] for i in range(2)]
    matched = sorted(int(np.flatnonzero((xt == r).all(1))[0]) for r in rows)
    assert matched == list(range(20))


def test_bit_reversal_permutation_by_hand():
    assert mnist.bit_reversal_permutation(8).tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    # n not a power of two: reversed 3-bit indices, keeping those < 6
    assert mnist.bit_reversal_permutation(6).tolist() == [0, 4, 2, 1, 5, 3]
    p = mnist.bit_reversal_permutation(784)
    assert sorted(p.tolist()) == list(range(784))
    # independent construction: reverse the 10-bit binary string of each index
    ref = [int(format(j, "010b")[::-1], 2) for j in range(1024)]
    assert p.tolist() == [v for v in ref if v < 784]
    assert p[:4].tolist() == [0, 512, 256, 768]


def test_pmnist_applies_permutation(tmp_path):
    data = write_mnist(tmp_path / "mnist")
    seq = mnist.load(cfg(tmp_path), "test")[0]["inputs"][:, 0]
    per = mnist.load(cfg(tmp_path, permute=True), "test")[0]["inputs"][:, 0]
    p = mnist.bit_reversal_permutation(784)
    np.testing.assert_array_equal(per, seq[p])  # out[i] = x[perm[i]]
    assert per[1] == np.float32(data["t10k"][0][0].reshape(-1)[512]) / np.float32(255)


def test_torchvision_layout_and_cache(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    c = cfg(tmp_path)
    a = mnist.load(c, "test")[0]["inputs"]
    assert list((tmp_path / ".cache").glob("mnist-*.npz"))
    np.testing.assert_array_equal(mnist.load(c, "test")[0]["inputs"], a)  # from the cache


def test_missing_dataset_names_paths_layout_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        mnist.load(cfg(tmp_path), "train")
    msg = str(e.value)
    assert str(tmp_path / "mnist") in msg and "train-images-idx3-ubyte" in msg and "yann.lecun.com" in msg


def test_truncated_and_bad_magic_name_the_file(tmp_path):
    write_mnist(tmp_path / "mnist", gz=False)
    f = tmp_path / "mnist" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CorruptFileError, match="train-images-idx3-ubyte.*payload"):
        mnist.load(cfg(tmp_path), "train")
    write_mnist(tmp_path / "m2" / "mnist", gz=True)
    g = tmp_path / "m2" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    g.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(8)))
    with pytest.raises(CorruptFileError, match="t10k-labels-idx1-ubyte.gz.*magic"):
        mnist.load(cfg(tmp_path / "m2"), "test")
    h = tmp_path / "m2" / "mnist" / "t10k-images-idx3-ubyte.gz"
    h.write_bytes(h.read_bytes()[:50])
    with pytest.raises(CorruptFileError, match="t10k-images-idx3-ubyte.gz"):
        mnist.load(cfg(tmp_path / "m2"), "test")
