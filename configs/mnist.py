"""Sequential MNIST presets (pixel by pixel, L = 784).

state-spaces/s4 ``experiment=base`` (= ``pipeline=mnist`` + S4 model defaults): 4 layers, H 256,
N 64, prenorm LayerNorm, GLU, dropout 0, unidirectional, AdamW lr 1e-3 wd 0, batch 50, 200
epochs; validation = 10% of train (seed 42). The reference's ReduceLROnPlateau is replaced by a
cosine decay over the run. README sanity check: pMNIST ≈ 90% after one epoch.
"""

from configs._util import preset

N_TRAIN = 54000


def _mnist(permute: bool, name: str, desc: str):
    # state-spaces/s4 configs/experiment/base.yaml, configs/pipeline/mnist.yaml, configs/model/s4.yaml
    return preset(
        desc,
        f"mnist-{name}",
        model=dict(layer="s4", measure="legs", n_layers=4, d_model=256, d_state=64, prenorm=True, norm="layer",
                   dropout=0.0, output="glu", pool="mean", bidirectional=False),  # fmt: skip
        data=dict(name="mnist", permute=permute, batch_size=50),
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="cosine"),
        n_train=N_TRAIN, epochs=200, seed=0,
    )  # fmt: skip


PRESETS = {
    "smnist": _mnist(False, "smnist", "S4 on sequential MNIST (784x1, row-major), S4 defaults 4x256 (state-spaces/s4 experiment=base, permute=False)"),
    "pmnist": _mnist(True, "pmnist", "S4 on permuted MNIST (bit-reversal permutation), 4x256 (state-spaces/s4 experiment=base)"),
}
