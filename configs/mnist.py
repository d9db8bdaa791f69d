"""Sequential MNIST presets (pixel by pixel, L = 784).

state-spaces/s4 ``experiment=base`` (= ``pipeline=mnist`` + S4 model defaults): 4 layers, H 256,
N 64, prenorm LayerNorm, GLU, dropout 0, unidirectional, AdamW lr 1e-3 wd 0, batch 50, 200
epochs; validation = 10% of train (seed 42); ReduceLROnPlateau on val accuracy, factor 0.2,
patience 20 epochs (configs/scheduler/plateau.yaml). README sanity check: pMNIST ≈ 90% after one epoch.
"""

from configs._util import preset
from ssm.layer_configs import S4Config

N_TRAIN = 54000


def _mnist(permute: bool, name: str, desc: str):
    # state-spaces/s4 configs/experiment/base.yaml, configs/pipeline/mnist.yaml, configs/model/s4.yaml
    return preset(
        desc,
        f"mnist-{name}",
        model=dict(layer=S4Config(measure="legs", d_state=64, bidirectional=False), n_layers=4, d_model=256,
                   prenorm=True, norm="layer", dropout=0.0, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="mnist", permute=permute, batch_size=50),
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="plateau", gamma=0.2, patience=20),
        n_train=N_TRAIN, epochs=200, seed=0,
    )  # fmt: skip


PRESETS = {
    "smnist": _mnist(False, "smnist", "S4 on sequential MNIST (784x1, row-major), S4 defaults 4x256 (state-spaces/s4 experiment=base, permute=False)"),
    "pmnist": _mnist(True, "pmnist", "S4 on permuted MNIST (bit-reversal permutation), 4x256 (state-spaces/s4 experiment=base)"),
}


# Pixel-level MNIST density model (srush/annotated-s4 README, large MNIST generation; s4/train.py, s4/s4.py):
# 6 layers, H 512, N 64, prenorm LN, dropout 0, 256-token embedding, per-pixel 256-way softmax; AdamW lr 5e-3,
# wd 0.05, SSM parameters at 0.1 x lr without weight decay, cosine one-cycle (peak after 10% of the steps),
# batch 50, 100 epochs. Reported: 0.36 test NLL (nats/pixel) = 0.52 bits/dim. Sample with
# scripts/generate.py RUN_DIR --prompt-len 308 (the reference's prefix).
_GEN_STEPS = 100 * (N_TRAIN // 50)
PRESETS["generate"] = preset(
    "S4 pixel-level MNIST density model, 256-way per pixel, 6x512 (srush/annotated-s4 large MNIST generation; "
    "reports test NLL and bits/dim; 0.36 / 0.52 published)",
    "mnist-generate",
    model=dict(layer=S4Config(measure="legs", d_state=64, bidirectional=False), n_layers=6, d_model=512,
               prenorm=True, norm="layer", dropout=0.0, output="glu", pool="none"),
    data=dict(name="mnist_gen", batch_size=50),
    optim=dict(lr=5e-3, ssm_lr=5e-4, weight_decay=0.05, schedule="cosine", warmup_steps=_GEN_STEPS // 10),
    n_train=N_TRAIN, epochs=100, seed=0,
)  # fmt: skip
