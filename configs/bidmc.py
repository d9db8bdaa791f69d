"""BIDMC vital-sign regression (HR, RR, SpO2 from 4000x2 PPG/ECG).

state-spaces/s4 configs/experiment/bidmc/s4-bidmc.yaml: S4 6 layers, H 128, prenorm LN, N 256,
SSM lr 1e-3, bidirectional, GLU, dropout 0, mean pool; AdamW lr 0.01 wd 0.05; batch 32; 500 epochs;
seed 1112; MultiStep ×0.5 at epochs 100, 200, 300, 400, 500 (converted to optimizer steps).
"""

from configs._util import preset, steps
from ssm.layer_configs import S4Config

N_TRAIN = 5564  # 70% of the 7,949 BIDMC32 series (unverified count)


def _bidmc(target):
    return preset(
        f"S4 regression of {target} on BIDMC (L=4000), 6x128, N=256 (state-spaces/s4 bidmc/s4-bidmc.yaml)",
        f"bidmc-{target.lower()}",
        model=dict(layer=S4Config(measure="legs", d_state=256, bidirectional=True), n_layers=6, d_model=128,
                   prenorm=True, norm="layer", dropout=0.0, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="bidmc", target=target, batch_size=32),
        optim=dict(lr=0.01, ssm_lr=1e-3, weight_decay=0.05, schedule="multistep", gamma=0.5,
                   milestones=tuple(steps(e, N_TRAIN, 32) for e in (100, 200, 300, 400, 500))),
        n_train=N_TRAIN, epochs=500, seed=1112,
    )


PRESETS = {"hr": _bidmc("HR"), "rr": _bidmc("RR"), "spo2": _bidmc("SpO2")}
