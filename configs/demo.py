"""Demo presets that run anywhere with no download."""

from ssm.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from ssm.layer_configs import S4DConfig

PRESETS = {
    "digits": (
        "S4D on scikit-learn's 8x8 digits read pixel by pixel (L=64, no download); <1 min on a 2-core CPU, ~99% test accuracy",
        Config(
            model=ModelConfig(layer=S4DConfig(d_state=32), d_model=64, n_layers=4, norm="layer", prenorm=True),
            data=DataConfig(name="digits", batch_size=32, eval_batch_size=128),
            optim=OptimConfig(lr=1e-2, ssm_lr=1e-3, weight_decay=0.01, schedule="cosine", warmup_steps=50),
            train=TrainConfig(steps=600, run_dir="runs/demo-digits", log_every=100, eval_every=200, save_every=200),
        ),
    ),
}
