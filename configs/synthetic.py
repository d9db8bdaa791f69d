"""Synthetic memory tasks, generated in memory (no files needed)."""

from configs._util import preset
from ssm.layer_configs import S4Config, S4DConfig

PRESETS = {
    # state-spaces/s4 configs/experiment/synthetic/s4-copying.yaml: copy 1024 tokens (64 symbols, no blanks);
    # 4 layers, H 64, prenorm LN, S4 rank 2 measure fourier, N 256, dt fixed = 4/1024, SSM lr 1e-4;
    # AdamW lr 1e-3 wd 0, constant; batch 8; 10k training samples, 1000 epochs; seed 1112.
    # (S4's 'deterministic' C init is not available: C is random.)
    "copying": preset(
        "S4 (FouT) copying 1024 tokens over 2048 steps (state-spaces/s4 synthetic/s4-copying.yaml)",
        "synthetic-copying",
        model=dict(layer=S4Config(measure="fout", rank=2, d_state=256, dt_min=4 / 1024, dt_max=4 / 1024),
                   n_layers=4, d_model=64, prenorm=True, norm="layer", output="glu", pool="none"),  # fmt: skip
        data=dict(name="copying", n_memorize=1024, lag=0, n_tokens=64, n_train=10000, n_eval=1000, batch_size=8),
        optim=dict(lr=1e-3, ssm_lr=1e-4, weight_decay=0.0, schedule="constant"),
        n_train=10000, epochs=1000, seed=1112, train=dict(eval_every=5000, save_every=5000),
    ),
    # state-spaces/s4 configs/experiment/synthetic/s4-delay.yaml: fully linear (1 layer, H 4, no norm, no
    # residual, no activation/output map), N 1024, measure legs, dt fixed 0.002; lr 1e-3; batch 64; 20 epochs;
    # white noise (dt 2.5e-4, ≤1000 Hz) delayed by 1000 of 4000 steps; MSE.
    "delay": preset(
        "Linear S4 delaying band-limited noise by 1000 of 4000 steps (state-spaces/s4 synthetic/s4-delay.yaml)",
        "synthetic-delay",
        model=dict(layer=S4Config(measure="legs", d_state=1024, dt_min=0.002, dt_max=0.002), n_layers=1, d_model=4,
                   norm="none", residual=False, activation="identity", output="none", pool="none"),  # fmt: skip
        data=dict(name="delay", seq_len=4000, lag=1000, n_train=16384, n_eval=1024, batch_size=64),
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="constant"),
        n_train=16384, epochs=20, seed=0,
    ),
    # state-spaces/s4 configs/dataset/adding.yaml (L 1000, 50k samples, val 10%); no official experiment:
    # our suggestion, S4 defaults 4x128, constant lr 1e-3.
    "adding": preset(
        "S4 on the adding problem, L=1000 (state-spaces/s4 dataset/adding.yaml; suggested model)",
        "synthetic-adding",
        model=dict(layer=S4Config(measure="legs", d_state=64), n_layers=4, d_model=128, prenorm=True, norm="layer",
                   output="glu", pool="mean"),  # fmt: skip
        data=dict(name="adding", seq_len=1000, n_train=45000, n_eval=5000, batch_size=50),
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="constant"),
        n_train=45000, epochs=20, seed=0,
    ),
    # Mamba paper (no S4-family source; unverified): length 4096, 16 tokens, vocab 16. A negative control:
    # LTI SSMs are expected to do poorly.
    "selective_copying": preset(
        "S4D on selective copying (16 tokens scattered in 4096 steps): negative control for LTI SSMs (Mamba paper task)",
        "synthetic-selective-copying",
        model=dict(layer=S4DConfig(d_state=64), n_layers=2, d_model=64, prenorm=True, norm="layer", output="glu",
                   pool="none"),  # fmt: skip
        data=dict(name="selective_copying", seq_len=4096, n_memorize=16, n_tokens=16, n_train=10000, n_eval=1000,
                  batch_size=64),  # fmt: skip
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="constant"),
        n_train=10000, epochs=64, seed=0,
    ),
}  # fmt: skip
