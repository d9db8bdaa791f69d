"""Length-bucketed training batches (``data.length_bucket``) and the model's padding mask.

The claim behind bucketing: cutting a padded batch to its longest example changes nothing on the real
steps. That holds if the model masks padding before every SSM (bidirectional layers look right-to-left
through it), which is checked here for every layer against the unpadded sequence.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm.config import Config, DataConfig, ModelConfig
from ssm.data.base import ArraySource, DatasetInfo
from ssm.model import available_layers, make_model
from ssm.train.pipeline import BUCKET_CHUNK, eval_batches, train_dataset

PADDED, N = 48, 200


def _source(n: int = N, seed: int = 0) -> ArraySource:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 41, n).astype(np.int32)
    x = np.zeros((n, PADDED), np.int32)
    x[:, 0] = np.arange(n)  # the example's index, to follow it through the stream
    for i, n_i in enumerate(lengths):
        x[i, 1:n_i] = 7
    return ArraySource(inputs=x, targets=np.arange(n, dtype=np.int32) % 10, lengths=lengths)


def _batches(source, *, B=8, n_batches=50, bucket=16, process=0, n_procs=1):
    ds = train_dataset(source, seed=3, global_batch=B, n_batches=n_batches, process=process, n_procs=n_procs,
                       bucket=bucket)  # fmt: skip
    return [ds[i] for i in range(len(ds))]


def test_batches_are_cut_to_their_longest_example_rounded_up():
    src = _source()
    for b in _batches(src):
        longest = int(b["lengths"].max())
        assert b["inputs"].shape == (8, min(PADDED, -(-longest // 16) * 16))
        # nothing real was cut: every example keeps its true length of tokens
        assert all((row[1:n] == 7).all() for row, n in zip(b["inputs"], b["lengths"]))


def test_every_example_once_per_epoch_and_batches_sorted_within_a_chunk():
    src = _source()
    assert N < BUCKET_CHUNK * 8  # one epoch = one chunk here
    epoch0 = _batches(src)[: N // 8]
    seen = np.concatenate([b["inputs"][:, 0] for b in epoch0])
    np.testing.assert_array_equal(np.sort(seen), np.arange(N))
    # the chunk is sorted by length and then cut into batches: length ranges of two batches never overlap
    ranges = sorted((int(b["lengths"].min()), int(b["lengths"].max())) for b in epoch0)
    assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(ranges, ranges[1:]))
    # ...and the batches are shuffled, not visited shortest first
    maxima = [int(b["lengths"].max()) for b in epoch0]
    assert maxima != sorted(maxima)
    # a new epoch reshuffles
    epoch1 = _batches(src)[N // 8 : 2 * (N // 8)]
    assert [b["inputs"][0, 0] for b in epoch1] != [b["inputs"][0, 0] for b in epoch0]


def test_processes_read_their_part_of_the_same_global_batches():
    src = _source()
    whole = _batches(src, n_batches=30)
    parts = [_batches(src, n_batches=30, process=p, n_procs=2) for p in range(2)]
    for g, a, b in zip(whole, *parts):
        assert a["inputs"].shape == b["inputs"].shape == (4, g["inputs"].shape[1])
        np.testing.assert_array_equal(np.concatenate([a["inputs"], b["inputs"]]), g["inputs"])


@pytest.mark.parametrize("n_procs", [1, 2])
def test_eval_batches_cut_by_length_visit_every_example_once(n_procs):
    src = _source(n=45)
    seen, cuts = [], []
    for p in range(n_procs):
        for b in eval_batches(src, global_batch=8, process=p, n_procs=n_procs, bucket=16):
            assert b["inputs"].shape[1] >= b["lengths"].max() and b["inputs"].shape[1] % 16 == 0
            assert all((row[1:n] == 7).all() for row, n in zip(b["inputs"], b["lengths"]))
            seen += list(b["inputs"][b["weights"] == 1, 0])
            cuts.append(b["inputs"].shape[1])
    np.testing.assert_array_equal(np.sort(seen), np.arange(45))
    assert min(cuts) < PADDED  # the short examples really were cut
    # a subset (max_batches) keeps the split's order, so it is not biased toward short examples
    first = next(eval_batches(src, global_batch=8, max_batches=1, bucket=16))
    np.testing.assert_array_equal(first["inputs"][:, 0], np.arange(8))


def test_bucketing_needs_lengths_and_validates():
    no_len = ArraySource(inputs=np.zeros((10, 5), np.int32), targets=np.zeros(10, np.int32))
    with pytest.raises(ValueError, match="length-bucket None"):
        _batches(no_len, B=2, n_batches=2)
    with pytest.raises(ValueError, match="data.length_bucket"):
        DataConfig(length_bucket=0)
    # DSS-softmax normalizes its kernel over the window: a cut batch would change the model
    with pytest.raises(ValueError, match="kernel-type exp"):
        Config(model=ModelConfig(layer="dss"), data=DataConfig(length_bucket=64))
    Config(model=ModelConfig(layer="dss", kernel_type="exp"), data=DataConfig(length_bucket=64))
    # a bidirectional layer reads the padding unless the model masks it
    with pytest.raises(ValueError, match="--model.mask-padding"):
        Config(model=ModelConfig(bidirectional=True), data=DataConfig(length_bucket=64))
    Config(model=ModelConfig(bidirectional=True, mask_padding=True), data=DataConfig(length_bucket=64))


@pytest.mark.parametrize("layer", ["s4", "s4d", "dss", "s5", "hope"])
def test_bidirectional_features_do_not_depend_on_padding(layer):
    if layer not in available_layers():
        pytest.skip(f"{layer} not in this checkout")
    info = DatasetInfo(task="classification", d_input=9, d_output=3, seq_len=32, tokens=True)
    extra = {"kernel_type": "exp"} if layer == "dss" else {}  # DSS-softmax's kernel depends on L by design
    cfg = ModelConfig(layer=layer, d_model=6, n_layers=2, d_state=4, norm="layer", dropout=0.0, pool="mean",
                      bidirectional=True, mask_padding=True, **extra)  # fmt: skip
    model, state = make_model(cfg, info, key=jax.random.PRNGKey(0))
    n = 13
    x = jax.random.randint(jax.random.PRNGKey(1), (32,), 1, 9)
    padded = x.at[n:].set(0)
    ref, _ = model.features(x[:n], state, lengths=jnp.array(n))
    for L in (16, 32):  # two cuts, as two length buckets would give
        got, _ = model.features(padded[:L], state, lengths=jnp.array(n))
        np.testing.assert_allclose(got[:n], ref, rtol=1e-10, atol=1e-12)
    # without the mask (the default, as the reference code) the backward direction reads the padding
    plain, _ = make_model(dataclasses.replace(cfg, mask_padding=False), info, key=jax.random.PRNGKey(0))
    unmasked, _ = plain.features(padded, state, lengths=jnp.array(n))
    assert not np.allclose(unmasked[:n], ref, rtol=1e-6)
