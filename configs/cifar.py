"""Sequential CIFAR-10 presets: colour sCIFAR (S4) and noise-padded sCIFAR (HOPE-SSM)."""

from configs._util import preset
from ssm.layer_configs import HOPEConfig, S4Config, S4DConfig

N_TRAIN = 45000

PRESETS = {
    # state-spaces/s4 configs/experiment/cifar/s4-cifar.yaml: S4 6x512, N 64, postnorm LN, dropout 0.1,
    # bidirectional, GLU, n_ssm 2; AdamW lr 0.01 wd 0.05, batch 50, cosine 900 warmup / 180k steps, 200 epochs.
    "scifar": preset(
        "S4 on colour sequential CIFAR-10 (1024x3), 6x512 postnorm, ~91% (state-spaces/s4 cifar/s4-cifar.yaml)",
        "cifar-scifar",
        model=dict(layer=S4Config(measure="legs", d_state=64, bidirectional=True, n_ssm=2), n_layers=6, d_model=512,
                   prenorm=False, norm="layer", dropout=0.1, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="cifar10", batch_size=50),
        optim=dict(lr=0.01, ssm_lr=1e-3, weight_decay=0.05, schedule="cosine", warmup_steps=900, decay_steps=180000),
        n_train=N_TRAIN, epochs=200, seed=2222,
    ),
    # AnnanYu/HOPE-SSM noisycifar_HOPE.py: 4x128, dropout 0.1, postnorm LN, HOPE N 256, dt fixed at 0.1
    # (dt_min = dt_max, dt lr 0), SSM lr min(1e-3, lr);
    # AdamW lr 0.01 wd 0.01, batch 64, cosine over 100 epochs. The reference mean-pools only the
    # noise half (positions 1024..2047); the model here pools all 2048 positions.
    "noisy_scifar": preset(
        "HOPE on noise-padded sCIFAR (1024 image + 1024 noise rows), 4x128 (HOPE-SSM noisycifar_HOPE.py)",
        "cifar-noisy-hope",
        model=dict(layer=HOPEConfig(d_state=256, dt_min=0.1, dt_max=0.1), n_layers=4, d_model=128, prenorm=False,
                   norm="layer", dropout=0.1, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="cifar10", noise_pad=1024, batch_size=64),
        optim=dict(lr=0.01, ssm_lr=1e-3, dt_lr=0.0, weight_decay=0.01, schedule="cosine"),
        n_train=N_TRAIN, epochs=100, seed=0,
    ),
    # AnnanYu/HOPE-SSM noisycifar_S4D.py: the S4D baseline of the same experiment (expected to degrade)
    "noisy_scifar_s4d": preset(
        "S4D baseline on noise-padded sCIFAR, 4x128 (HOPE-SSM noisycifar_S4D.py)",
        "cifar-noisy-s4d",
        model=dict(layer=S4DConfig(d_state=64, dt_min=0.1, dt_max=0.1), n_layers=4, d_model=128, prenorm=False,
                   norm="layer", dropout=0.1, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="cifar10", noise_pad=1024, batch_size=64),
        optim=dict(lr=0.01, ssm_lr=1e-3, dt_lr=0.0, weight_decay=0.01, schedule="cosine"),
        n_train=N_TRAIN, epochs=100, seed=0,
    ),
}  # fmt: skip
