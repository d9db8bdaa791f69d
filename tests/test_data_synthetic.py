"""Synthetic tasks: structure of each example checked by hand, determinism, split independence."""

import numpy as np
import pytest

from ssm.config import DataConfig
from ssm.data.synthetic import TASKS, white_signal


def cfg(name, **kw):
    return DataConfig(name=name, **kw)


def test_copying_structure():
    M, lag, A = 5, 3, 8
    c = cfg("copying", n_memorize=M, lag=lag, n_tokens=A, n_train=7, n_eval=4)
    m = TASKS["copying"]
    info = m.info(c)
    assert info.seq_len == 2 * M + lag and info.tokens and info.d_output == A and info.task == "lm"
    src = m.load(c, "train")
    assert len(src) == 7 and len(m.load(c, "test")) == 4
    ex = src[0]
    x, y = ex["inputs"], ex["targets"]
    assert x.dtype == np.int32 and x.shape == (2 * M + lag,)
    tokens = x[:M]
    assert (tokens >= 1).all() and (tokens <= A - 2).all()
    assert (x[M : M + lag] == 0).all() and (x[M + lag :] == A - 1).all()
    np.testing.assert_array_equal(y, tokens)  # scored against the last M outputs
    with pytest.raises(ValueError, match="2·n_memorize"):
        m.info(cfg("copying", n_memorize=M, lag=lag, seq_len=99))


def test_adding_target_is_sum_of_marked():
    m = TASKS["adding"]
    c = cfg("adding", seq_len=10, n_eval=6)
    src = m.load(c, "val")
    for i in range(5):
        ex = src[i]
        u, mark = ex["inputs"][:, 0], ex["inputs"][:, 1]
        assert ex["inputs"].shape == (10, 2) and ex["targets"].shape == (1,)
        assert mark[:5].sum() == 1 and mark[5:].sum() == 1  # one marker per half
        assert abs(ex["targets"][0] - u[mark == 1].sum()) < 1e-6
    assert m.info(c).task == "regression" and m.info(c).d_input == 2


def test_delay_target_is_shifted_input():
    lag = 5
    ex = TASKS["delay"].load(cfg("delay", seq_len=64, lag=lag, n_eval=3), "test")[1]
    u, y = ex["inputs"][:, 0], ex["targets"][:, 0]
    assert ex["inputs"].shape == (64, 1) and ex["targets"].shape == (64, 1)
    assert (y[:lag] == 0).all()
    np.testing.assert_array_equal(y[lag:], u[:-lag])


def test_white_signal_band_limit_and_rms():
    u = white_signal(np.random.default_rng(0), 3, 4000, dt=2.5e-4, freq=100.0, rms=0.5)
    assert np.allclose(np.sqrt((u**2).mean(-1)), 0.5)
    spec = np.abs(np.fft.rfft(u, axis=-1))
    f = np.fft.rfftfreq(4000, d=2.5e-4)
    assert spec[:, f > 100.0].max() < 1e-9 * spec.max()
    assert np.allclose(u.mean(-1), 0, atol=1e-12)


def test_selective_copying_structure():
    c = cfg("selective_copying", seq_len=40, n_train=5)
    ex = TASKS["selective_copying"].load(c, "train")[3]
    x, y = ex["inputs"], ex["targets"]
    M = 16
    ctx = x[: 40 - M]
    assert (x[40 - M :] == 15).all()  # markers = A - 1
    data = ctx[ctx != 0]
    assert len(data) == M and ((data >= 1) & (data <= 14)).all()
    np.testing.assert_array_equal(y, data)  # in order of appearance


def test_seeded_and_splits_differ():
    a = TASKS["adding"].load(cfg("adding", seq_len=8, seed=1), "train")[0]["inputs"]
    b = TASKS["adding"].load(cfg("adding", seq_len=8, seed=1), "train")[0]["inputs"]
    c = TASKS["adding"].load(cfg("adding", seq_len=8, seed=1), "test")[0]["inputs"]
    d = TASKS["adding"].load(cfg("adding", seq_len=8, seed=2), "train")[0]["inputs"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
