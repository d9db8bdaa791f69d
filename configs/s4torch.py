"""S4Torch's classification commands (TariqAHassan/S4Torch README "Training", ``train.py``) on its pooled model
(``model:pooled``: Linear encoder -> ``ssm.nn.PooledBackbone`` -> mean over time -> Linear).

``train.py`` defaults where a command does not set them: ``s4_n`` 64, ``p_dropout`` 0.2, ``norm_type`` layer,
``lr_s4`` 1e-3, ``weight_decay`` 0.01, ``patience`` 5, ``min_lr`` 1e-6, ``val_prop`` 0.1; AdamW with
ReduceLROnPlateau (PyTorch defaults: factor 0.1) stepped per epoch on the validation accuracy.
Departures: S4Torch's ``lr_s4`` (no weight decay) covers every parameter of its blocks (norms and block linears
too), here only the SSM parameters (``optim.ssm_lr``), the block linears taking ``optim.lr``; its scheduler monitors
``val_acc`` in PyTorch's default ``mode="min"`` (it reduces while the accuracy rises), here the plateau schedule
follows the best validation metric; the sc10 command's ``norm_type=batch`` is a LayerNorm here (the pooled
backbone has no BatchNorm) and its auto-scaled batch (``--batch_size=-1``) is 16.
"""

from configs._util import preset
from ssm.config import PooledConfig
from ssm.layer_configs import S4Config

S4 = S4Config(measure="legs", d_state=64, bidirectional=False)


def _optim(lr: float, wd: float, patience: int) -> dict:
    return dict(lr=lr, ssm_lr=1e-3, weight_decay=wd, schedule="plateau", gamma=0.1, patience=patience,
                min_lr_ratio=1e-6 / lr)  # fmt: skip


def _mnist(permute: bool) -> tuple:
    # README: python train.py --dataset={s,p}mnist --batch_size=16 --pooling=avg_2 --max_epochs=100 --lr=1e-2
    #   --n_blocks=6 --d_model=128 --norm_type=layer   (98.4% / 94.0% validation accuracy after 5 epochs)
    name = "pmnist" if permute else "smnist"
    return preset(
        f"S4Torch on {'permuted' if permute else 'sequential'} MNIST: 6 blocks x 128, avg_2 pooling (S4Torch README --dataset={name})",
        f"s4torch-{name}",
        model=PooledConfig(layer=S4, d_model=128, n_layers=6, pool_kernel=2, dropout=0.2, norm="layer"),
        data=dict(name="mnist", permute=permute, batch_size=16),
        optim=_optim(1e-2, 0.01, 5), n_train=54000, epochs=100, seed=1234,
    )  # fmt: skip


PRESETS = {
    "smnist": _mnist(False),
    "pmnist": _mnist(True),
    # README: --dataset=scifar10 --batch_size=32 --max_epochs=200 --lr=1e-2 --n_blocks=6 --pooling=avg_2
    #   --d_model=1024 --weight_decay=0.01 --p_dropout=0.25 --patience=20   (79.3% best validation accuracy)
    "scifar": preset(
        "S4Torch on sequential CIFAR-10: 6 blocks x 1024, avg_2 pooling (S4Torch README --dataset=scifar10)",
        "s4torch-scifar",
        model=PooledConfig(layer=S4, d_model=1024, n_layers=6, pool_kernel=2, dropout=0.25, norm="layer"),
        data=dict(name="cifar10", batch_size=32),
        optim=_optim(1e-2, 0.01, 20), n_train=45000, epochs=200, seed=1234,
    ),
    # README: --dataset=speechcommands10 --batch_size=-1 --max_epochs=150 --lr=1e-2 --n_blocks=6 --pooling=avg_2
    #   --d_model=128 --weight_decay=0.0 --norm_type=batch --p_dropout=0.1 --patience=10   (94.3% best)
    "sc10": preset(
        "S4Torch on Speech Commands 10 (16000 samples): 6 blocks x 128, avg_2 pooling (S4Torch README; LayerNorm for batch norm)",
        "s4torch-sc10",
        model=PooledConfig(layer=S4, d_model=128, n_layers=6, pool_kernel=2, dropout=0.1, norm="layer"),
        data=dict(name="sc10", batch_size=16),
        optim=_optim(1e-2, 0.0, 10), n_train=24482, epochs=150, seed=1234,
    ),
}  # fmt: skip
