"""``scripts/evaluate.py --rate 2 --resolution 2`` on an S4 Speech Commands model (the README's example), through
the real loader on a fixture in the real folder format: the model keeps its training-time ``l_max`` (the length
its C̃ is defined for) and its outputs at rate 2 on the half-rate clips are what the evaluation reports."""

from __future__ import annotations

import numpy as np
import pytest

import ssm
from _train_helpers import _script
from ssm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from ssm.data import speech_commands as sc
from test_data_speech_commands import write_sc


def _nll(logits, targets) -> float:
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(targets)), targets].mean())


@pytest.mark.usefixtures("quick_compile")  # a tiny run: compilation time
def test_s4_speech_commands_at_rate_2(tmp_path):
    from ssm.train import train

    d, _ = write_sc(tmp_path, sc.ALL_CLASSES, per_class=1, length=64)
    (d / "validation_list.txt").write_text("bed/00000000_nohash_0.wav\ncat/00000000_nohash_0.wav\n")
    (d / "testing_list.txt").write_text("".join(f"{c}/00000000_nohash_0.wav\n" for c in sc.ALL_CLASSES[2:6]))
    cfg = Config(
        model=ModelConfig(layer="s4", d_model=4, n_layers=1, d_state=4, norm="layer", pool="mean"),
        data=DataConfig(name="sc35", root=str(tmp_path), batch_size=4, eval_batch_size=4),
        optim=OptimConfig(lr=1e-2),
        train=TrainConfig(steps=2, run_dir=str(tmp_path / "run"), eval_every=0, save_every=0, progress="none",
                          eval_splits=("val",), async_checkpoint=False),
    )  # fmt: skip
    train(cfg, verbose=False)
    evaluate = _script("evaluate")
    half = evaluate.evaluate_run(cfg.train.run_dir, "test", rate=2.0, resolution=2)
    assert half["rate"] == 2.0 and half["resolution"] == 2
    model, _ = ssm.load(cfg.train.run_dir)
    assert [layer.l_max for layer in model.layers] == [16000]  # the training length, not 16000 / 2
    test = sc.DATASETS["sc35"].load(DataConfig(name="sc35", root=str(tmp_path), resolution=2), "test")
    x, y = test.arrays["inputs"], test.arrays["targets"]
    assert x.shape == (4, 8000, 1)
    want = _nll(model.predict(x, rate=2.0), y)
    assert half["metrics"]["loss"] == pytest.approx(want, rel=1e-10)
    # the full-rate evaluation reads the full-length clips with the same model
    full = evaluate.evaluate_run(cfg.train.run_dir, "test")
    xf = sc.DATASETS["sc35"].load(cfg.data, "test").arrays["inputs"]
    assert full["metrics"]["loss"] == pytest.approx(_nll(model.predict(xf), y), rel=1e-10)
