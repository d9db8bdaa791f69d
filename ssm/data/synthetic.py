"""Synthetic memory tasks generated in memory from a seed: copying, adding, delay, selective copying.

Each task is registered under its own name (``copying``, ``adding``, ``delay``,
``selective_copying``); this module holds all four. Splits use independent seeds derived from
``data.seed`` (train) so val and test never overlap train.

Copying targets are the M tokens only, scored against the model's last M outputs (S4's
``l_output = M`` decoder).

- copying (state-spaces/s4 ``datasets/copying.py``): M tokens uniform in 1..A−2, then
  ``lag`` blanks (0), then M markers (A−1); the last M outputs must reproduce the tokens.
- selective copying (Mamba paper): M tokens in 1..A−2 at sorted random positions of a blank
  context of length L − M, then M markers; the last M outputs must list the tokens in order.
- adding (state-spaces/s4 ``datasets/adding.py``): L×2 inputs, channel 0 Uniform[0, 1), channel 1
  a one-hot marker in each half; target = the sum of the two marked values.
- delay (state-spaces/s4 ``datasets/delay.py``): band-limited white noise u (components up to
  ``freq`` Hz at time step dt, rms 0.5); target y[t] = u[t − lag] (0 before), per position.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np

from ssm.data._files import check_split, source
from ssm.data.base import DatasetInfo
from ssm.data.options import DatasetOptions

DEFAULTS = {
    "copying": dict(seq_len=None, n_memorize=1024, lag=0, n_tokens=64, n_train=10000, n_eval=1000),
    "selective_copying": dict(seq_len=4096, n_memorize=16, n_tokens=16, n_train=10000, n_eval=1000),
    "adding": dict(seq_len=1000, n_train=45000, n_eval=5000),
    "delay": dict(seq_len=4000, lag=1000, n_train=16384, n_eval=1024),
}
DELAY_DT, DELAY_FREQ = 2.5e-4, 1000.0
_TYPES = {"seq_len": "int", "n_memorize": "int", "lag": "int", "n_tokens": "int", "n_train": "int", "n_eval": "int"}


def _options(task: str) -> type[DatasetOptions]:
    """The task's options: exactly the fields of its ``DEFAULTS`` row, with those defaults (copying's
    ``seq_len`` is derived, 2·n_memorize + lag, and may be left ``None``)."""
    fields = [(k, "int | None" if v is None else _TYPES[k], dataclasses.field(default=v)) for k, v in DEFAULTS[task].items()]
    cls = dataclasses.make_dataclass(f"{task}_options", fields, bases=(DatasetOptions,), frozen=True)
    cls.__doc__, cls.__module__ = f"Synthetic task {task!r}.", __name__
    return cls


def _o(cfg, task, name):
    return getattr(cfg, name)


def _seq_len(cfg, task) -> int:
    if task == "copying":
        m, lag = _o(cfg, task, "n_memorize"), _o(cfg, task, "lag")
        want = 2 * m + lag
        L = want if cfg.seq_len is None else cfg.seq_len
        if L != want:
            raise ValueError(f"copying: seq_len must be 2·n_memorize + lag = {want} (got {L}); set --data.lag or --data.n-memorize")
        return want
    return _o(cfg, task, "seq_len")


def copying(rng, n, m, lag, a) -> dict[str, np.ndarray]:
    if a < 3:
        raise ValueError(f"copying needs n_tokens >= 3 (blank, marker, one data token), got {a}")
    tokens = rng.integers(1, a - 1, (n, m))
    x = np.concatenate([tokens, np.zeros((n, lag), np.int64), np.full((n, m), a - 1)], axis=1)
    return {"inputs": x.astype(np.int32), "targets": tokens.astype(np.int32)}


def selective_copying(rng, n, L, m, a) -> dict[str, np.ndarray]:
    if a < 3 or L < 2 * m:
        raise ValueError(f"selective_copying needs n_tokens >= 3 and seq_len >= 2 n_memorize (got {a}, {L}, {m})")
    ctx = L - m
    x = np.zeros((n, L), np.int64)
    x[:, ctx:] = a - 1
    tokens = rng.integers(1, a - 1, (n, m))
    for i in range(n):
        pos = np.sort(rng.choice(ctx, m, replace=False))
        x[i, pos] = tokens[i]
    return {"inputs": x.astype(np.int32), "targets": tokens.astype(np.int32)}


def adding(rng, n, L) -> dict[str, np.ndarray]:
    if L < 2:
        raise ValueError(f"adding needs seq_len >= 2, got {L}")
    mid = L // 2
    u = rng.random((n, L))
    mark = np.zeros((n, L))
    rows = np.arange(n)
    mark[rows, rng.integers(0, mid, n)] = 1.0
    mark[rows, mid + rng.integers(0, L - mid, n)] = 1.0
    x = np.stack([u, mark], axis=-1).astype(np.float32)
    y = (u * mark).sum(-1, keepdims=True).astype(np.float32)
    return {"inputs": x, "targets": y}


def white_signal(rng, n, L, dt=DELAY_DT, freq=DELAY_FREQ, rms=0.5) -> np.ndarray:
    """Band-limited white noise: random Fourier coefficients on frequencies ≤ ``freq`` of a
    length-L window at step dt, zero mean, scaled to the given rms."""
    f = np.fft.rfftfreq(L, d=dt)
    coef = rng.standard_normal((n, len(f))) + 1j * rng.standard_normal((n, len(f)))
    coef[:, (f > freq) | (f == 0)] = 0
    u = np.fft.irfft(coef, n=L, axis=-1)
    scale = np.sqrt((u**2).mean(-1, keepdims=True))
    return u * (rms / np.where(scale > 0, scale, 1.0))


def delay(rng, n, L, lag) -> dict[str, np.ndarray]:
    if not 0 <= lag < L:
        raise ValueError(f"delay needs 0 <= lag < seq_len (got lag {lag}, seq_len {L})")
    u = white_signal(rng, n, L)
    y = np.zeros_like(u)
    y[:, lag:] = u[:, : L - lag]
    return {"inputs": u[..., None].astype(np.float32), "targets": y[..., None].astype(np.float32)}


def generate(task: str, cfg, split: str) -> dict[str, np.ndarray]:
    check_split(split)
    seed = cfg.seed
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split), 0x5EED])
    n = _o(cfg, task, "n_train") if split == "train" else _o(cfg, task, "n_eval")
    L = _seq_len(cfg, task)
    if task == "copying":
        return copying(rng, n, _o(cfg, task, "n_memorize"), _o(cfg, task, "lag"), _o(cfg, task, "n_tokens"))
    if task == "selective_copying":
        return selective_copying(rng, n, L, _o(cfg, task, "n_memorize"), _o(cfg, task, "n_tokens"))
    if task == "adding":
        return adding(rng, n, L)
    return delay(rng, n, L, _o(cfg, task, "lag"))


def info_of(task: str, cfg) -> DatasetInfo:
    L = _seq_len(cfg, task)
    if task in ("copying", "selective_copying"):
        a = _o(cfg, task, "n_tokens")
        return DatasetInfo(task="lm", d_input=a, d_output=a, seq_len=L, tokens=True)
    if task == "adding":
        return DatasetInfo(task="regression", d_input=2, d_output=1, seq_len=L)
    return DatasetInfo(task="regression", d_input=1, d_output=1, seq_len=L)


def _module(name: str) -> types.ModuleType:
    """A module object with this task's ``info``/``load``, registered like a dataset module."""
    m = types.ModuleType(f"ssm.data.synthetic.{name}", f"Synthetic task '{name}' (see ssm.data.synthetic).")
    m.info = lambda cfg: info_of(name, cfg)
    m.load = lambda cfg, split: source(**generate(name, cfg, split))
    m.Options = _options(name)
    return m


TASKS = {name: _module(name) for name in DEFAULTS}
