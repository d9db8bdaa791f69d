"""The S4D paper's ablation configs, each with the S4 (DPLR) layer and the S4D LegS / Inv / Lin inits.

Sources: state-spaces/s4 configs/experiment/{cifar/s4-cifar-ablation, sc/s4-sc-ablation,
bidmc/s4-bidmc-ablation}.yaml (ablations of Gu et al. 2022, "On the Parameterization and Initialization of
Diagonal State Space Models"). Other axes (ZOH vs bilinear, real-part
transform, frozen B, dt range) are one override away: ``--model.layer.disc``, ``--optim.ssm-lr 0``, ...
"""

import dataclasses

from configs._util import preset, steps
from ssm.layer_configs import S4Config, S4DConfig

LAYERS = {  # suffix: the layer (the task adds its state size and direction)
    "": S4Config(measure="legs", rank=1),
    "_s4d_legs": S4DConfig(init="legs"),
    "_s4d_inv": S4DConfig(init="inv"),
    "_s4d_lin": S4DConfig(init="lin"),
}


def _cifar(layer):
    # cifar/s4-cifar-ablation.yaml: 4x128, N 64, postnorm LN, dropout 0.1, bidirectional, no GLU (final_act id);
    # AdamW lr 0.01 wd 0.01; batch 50; cosine 900 / 90k; 100 epochs; seed 1111
    return dict(
        model=dict(layer=dataclasses.replace(layer, d_state=64, bidirectional=True), n_layers=4, d_model=128,
                   prenorm=False, norm="layer", dropout=0.1, output="linear", pool="mean"),  # fmt: skip
        data=dict(name="cifar10", batch_size=50),
        optim=dict(lr=0.01, ssm_lr=1e-3, weight_decay=0.01, schedule="cosine", warmup_steps=900, decay_steps=90000),
        n_train=45000, epochs=100, seed=1111,
    )  # fmt: skip


def _sc(layer):
    # sc/s4-sc-ablation.yaml: SC35 raw, 4x128, N 64, prenorm BN, unidirectional, no GLU, decoder last;
    # lr 0.004 wd 0; batch 32; cosine to 50k steps; 10 epochs; seed 1111
    return dict(
        model=dict(layer=dataclasses.replace(layer, d_state=64, bidirectional=False), n_layers=4, d_model=128,
                   prenorm=True, norm="batch", dropout=0.0, output="linear", pool="last"),  # fmt: skip
        data=dict(name="sc35", batch_size=32),
        optim=dict(lr=0.004, ssm_lr=1e-3, weight_decay=0.0, schedule="cosine", decay_steps=50000),
        n_train=84843, epochs=10, seed=1111,
    )  # fmt: skip


def _bidmc(layer):
    # bidmc/s4-bidmc-ablation.yaml: 4x128, N 256, no GLU, lr 0.004 wd 0.01, 200 epochs, seed 1111, target SpO2
    # MultiStep at epochs 50, 100, 150, 200 (γ 0.5 as in s4-bidmc.yaml; the ablation's γ is unverified)
    return dict(
        model=dict(layer=dataclasses.replace(layer, d_state=256, bidirectional=True), n_layers=4, d_model=128,
                   prenorm=True, norm="layer", dropout=0.0, output="linear", pool="mean"),  # fmt: skip
        data=dict(name="bidmc", target="SpO2", batch_size=32),
        optim=dict(lr=0.004, ssm_lr=1e-3, weight_decay=0.01, schedule="multistep", gamma=0.5,
                   milestones=tuple(steps(e, 5564, 32) for e in (50, 100, 150, 200))),
        n_train=5564, epochs=200, seed=1111,
    )  # fmt: skip


PRESETS = {}
for task, make, what in (("cifar", _cifar, "sCIFAR"), ("sc", _sc, "SC35"), ("bidmc", _bidmc, "BIDMC SpO2")):
    for suffix, layer in LAYERS.items():
        kind = "S4-LegS (DPLR)" if not suffix else "S4D-" + layer.init.capitalize()
        PRESETS[task + suffix] = preset(
            f"S4D-paper ablation on {what} with {kind}, 4x128 (state-spaces/s4 {task}/s4-{task}-ablation.yaml)",
            f"ablation-{task}{suffix}", **make(layer),
        )  # fmt: skip
