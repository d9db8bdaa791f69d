"""The LRA presets train on data made by the offline generators, through the release readers.

A mini ListOps / Pathfinder set is generated (``ssm.data.lra_gen``), read by the registered
``listops`` / ``pathfinder`` datasets exactly as the release would be, and the ``lra.listops``,
``lra.pathfinder`` (and, with ``--runslow``, ``lra.pathx``) presets train two steps with their
model shrunk (1 layer, H 8, N 4); everything else is the preset's own.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import configs
from ssm.config import Config
from ssm.data.lra_gen import listops as gen_listops
from ssm.data.lra_gen import pathfinder as gen_pathfinder
from ssm.model import available_layers

# Tiny runs of the presets, nearly all compilation (conftest.py's quick_compile).
pytestmark = pytest.mark.usefixtures("quick_compile")


def _small(name: str, root, run_dir, model_kw=None, **data) -> Config:
    cfg = configs.get_preset(name)
    if cfg.model.layer not in available_layers():
        pytest.skip(f"layer {cfg.model.layer!r} is not implemented in this checkout")
    m = cfg.model
    model = dataclasses.replace(m, d_model=8, n_layers=1, d_state=4, n_ssm=1 if m.n_ssm is not None else None,
                                **(model_kw or {}))  # fmt: skip
    data_cfg = dataclasses.replace(cfg.data, root=str(root), batch_size=2, eval_batch_size=2, num_workers=0, **data)
    # eval_every = steps: no mid-run validation, but a valid interval for the presets' plateau schedules
    train = dataclasses.replace(
        cfg.train, steps=2, run_dir=str(run_dir), eval_every=2, save_every=0, log_every=1, eval_batches=1,
        async_checkpoint=False, progress="none", num_devices=1, wandb="disabled",
    )  # fmt: skip
    return Config(model=model, data=data_cfg, optim=dataclasses.replace(cfg.optim, grad_accum=1), train=train)


def _train(cfg: Config) -> dict:
    from ssm.train import train

    res = train(cfg, verbose=False)
    assert res["step"] == 2
    for split in ("val", "test"):
        assert math.isfinite(res[split]["loss"]), (split, res[split])
    return res


def test_lra_listops_trains_on_generated_data(tmp_path):
    params = gen_listops.ListOpsParams(num_train=8, num_val=4, num_test=4)
    gen_listops.write_release(tmp_path / "data" / "listops", params, seed=0, workers=1, progress=False)
    # seq_len shortened for speed: the generated expressions (501–1999 tokens) are truncated + <eos>
    cfg = _small("lra.listops", tmp_path / "data", tmp_path / "run", seq_len=64)
    from ssm.data import get_dataset

    info = get_dataset("listops").info(cfg.data)
    assert info.tokens and info.d_output == 10 and info.seq_len == 64
    assert np.asarray(get_dataset("listops").load(cfg.data, "train")[0]["lengths"]) == 64
    _train(cfg)


def test_lra_listops_trains_with_length_buckets(tmp_path):
    params = gen_listops.ListOpsParams(num_train=8, num_val=4, num_test=4)
    gen_listops.write_release(tmp_path / "data" / "listops", params, seed=0, workers=1, progress=False)
    cfg = _small("lra.listops", tmp_path / "data", tmp_path / "run", model_kw=dict(norm="layer", mask_padding=True),
                 seq_len=2048, length_bucket=512)  # fmt: skip
    _train(cfg)


def test_lra_pathfinder_trains_on_generated_data(tmp_path):
    gen_pathfinder.write_release(tmp_path / "data" / "pathfinder", gen_pathfinder.lra_params(32, 14), 20,
                                 seed=0, workers=1, progress=False)  # fmt: skip
    cfg = _small("lra.pathfinder", tmp_path / "data", tmp_path / "run")
    assert cfg.data.name == "pathfinder" and cfg.data.resolution == 32
    _train(cfg)


@pytest.mark.slow
def test_lra_pathx_trains_on_generated_data(tmp_path):
    gen_pathfinder.write_release(tmp_path / "data" / "pathfinder", gen_pathfinder.lra_params(128, 14), 10,
                                 seed=0, workers=1, progress=False)  # fmt: skip
    cfg = _small("lra.pathx", tmp_path / "data", tmp_path / "run")
    assert cfg.data.resolution == 128
    _train(cfg)
