"""Speech Commands presets: SC35 (S4 V4 / S4D paper), SC10 (S4 paper V1), SC35 with MFCCs, and S5.

Evaluation at 8 kHz (zero-shot, S4's ``resolution 2``): rerun eval with ``--data.resolution 2``
(the loader keeps every 2nd sample; the SSM step must be scaled by the same rate).
"""

from configs._util import preset
from ssm.layer_configs import S4Config, S5Config

N_SC35, N_SC10 = 84843, 24482  # (unverified) list-file train size; 70% of the 34,975 full-length SC10 clips


def _sc35(name, desc, *, mfcc):
    # state-spaces/s4 configs/experiment/sc/s4-sc.yaml: S4 6x128, N 64, prenorm BatchNorm, dropout 0,
    # bidirectional, GLU, n_ssm 2; AdamW lr 0.01 wd 0.05, batch 16, cosine 1000 warmup / 200k, 40 epochs
    return preset(
        desc,
        f"sc-{name}",
        model=dict(layer=S4Config(measure="legs", d_state=64, bidirectional=True, n_ssm=2), n_layers=6, d_model=128,
                   prenorm=True, norm="batch", dropout=0.0, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="sc35", mfcc=mfcc or None, batch_size=16),
        optim=dict(lr=0.01, ssm_lr=1e-3, weight_decay=0.05, schedule="cosine", warmup_steps=1000, decay_steps=200000),
        n_train=N_SC35, epochs=40, seed=2222,
    )  # fmt: skip


PRESETS = {
    "sc35": _sc35("sc35", "S4 on Speech Commands 35 classes, raw 16 kHz (L=16000), ~96.5% (state-spaces/s4 sc/s4-sc.yaml)", mfcc=False),
    # as sc35 with dataset.mfcc=true (configs/dataset/sc.yaml): 20 MFCCs x 161 frames
    "sc35_mfcc": _sc35("sc35_mfcc", "S4 on Speech Commands 35 classes, 20 MFCCs x 161 frames (state-spaces/s4 sc.yaml mfcc=true)", mfcc=True),
    # state-spaces/s4 v1 configs/experiment/s4-sc.yaml (= ag1988/dss s4-sc.yaml): 6x128, prenorm BN, dropout 0.1,
    # AdamW lr 0.01 wd 0, batch 20, 200 epochs; ReduceLROnPlateau on val accuracy, factor 0.2, patience 20 epochs.
    "sc10": preset(
        "S4 on Speech Commands 10 classes, raw 16 kHz, 98.3% in the S4 paper (state-spaces/s4 v1 s4-sc.yaml)",
        "sc-sc10",
        model=dict(layer=S4Config(measure="legs", d_state=64, bidirectional=False), n_layers=6, d_model=128,
                   prenorm=True, norm="batch", dropout=0.1, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="sc10", batch_size=20),
        optim=dict(lr=0.01, ssm_lr=1e-3, weight_decay=0.0, schedule="plateau", gamma=0.2, patience=20),
        n_train=N_SC10, epochs=200, seed=1112,
    ),
    # lindermanlab/S5 bin/run_experiments/run_speech35.sh: 6x96, P 128, J 16, lecun_normal C, bidirectional,
    # batch 16, ssm lr 2e-3, lr 8e-3, wd 0.04, dropout 0.1, 40 epochs, 1 warmup epoch (noBCdecay grouping not representable)
    "s5_sc35": preset(
        "S5 on Speech Commands 35 classes, raw 16 kHz, 96.5% in the S5 paper (lindermanlab/S5 run_speech35.sh)",
        "sc-s5-sc35",
        model=dict(layer=S5Config(d_state=128, blocks=16, c_init="lecun_normal", conj_sym=True, disc="zoh",
                   bidirectional=True), n_layers=6, d_model=96, prenorm=True, norm="batch", bn_momentum=0.95,
                   dropout=0.1, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="sc35", batch_size=16),
        optim=dict(lr=8e-3, ssm_lr=2e-3, weight_decay=0.04, schedule="cosine", warmup_steps=N_SC35 // 16),
        n_train=N_SC35, epochs=40, seed=4062966,
    ),
}  # fmt: skip
