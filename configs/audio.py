"""SaShiMi autoregressive audio (8-bit, 256-way softmax per sample).

SaShiMi's multi-scale U-Net (pooling [4, 4], 8 S4+FF layers per stage, channel expansion ×2) is not
available in the model here: these presets stack causal S4 blocks at the top stage's width
(d_model 64, 8 layers), keep the data, optimizer and lengths of the configs
(state-spaces/s4 configs/experiment/audio/sashimi-*.yaml), and replace ReduceLROnPlateau by cosine.
"""

from configs._util import preset
from ssm.layer_configs import S4Config

MODEL = dict(layer=S4Config(measure="legs", d_state=64, bidirectional=False, n_ssm=1), n_layers=8, d_model=64,
             prenorm=True, norm="layer", dropout=0.0, output="glu", pool="none")  # fmt: skip

PRESETS = {
    # state-spaces/s4 configs/experiment/audio/sashimi-sc09.yaml: mu-law, 16000 samples, batch 32,
    # AdamW lr 1e-3 wd 0, 1000 epochs; ~31k training clips (unverified)
    "sc09": preset(
        "Causal S4 stack on SC09 spoken digits, 8-bit mu-law, 16 kHz, 1 s (state-spaces/s4 audio/sashimi-sc09.yaml; flat, not U-Net)",
        "audio-sc09",
        model=MODEL, data=dict(name="sc09", seq_len=16000, batch_size=32),
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="cosine"),
        n_train=31158, epochs=1000, seed=0, train=dict(eval_every=5000, save_every=5000),
    ),
    # state-spaces/s4 configs/experiment/audio/sashimi-youtubemix.yaml: mu-law, 131072 samples, batch 1, lr 4e-3
    "youtubemix": preset(
        "Causal S4 stack on YouTubeMix piano, 8-bit mu-law, 131072-sample chunks (state-spaces/s4 audio/sashimi-youtubemix.yaml)",
        "audio-youtubemix",
        model=MODEL, data=dict(name="youtubemix", seq_len=131072, batch_size=1),
        optim=dict(lr=4e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="cosine"),
        n_train=400, epochs=1000, seed=0, train=dict(eval_every=5000, save_every=5000),  # (unverified chunk count)
    ),
    # state-spaces/s4 configs/experiment/audio/sashimi-beethoven.yaml: linear 8-bit, 128000 samples, batch 1, lr 4e-3
    "beethoven": preset(
        "Causal S4 stack on Beethoven sonatas, 8-bit linear, 8 s chunks (state-spaces/s4 audio/sashimi-beethoven.yaml)",
        "audio-beethoven",
        model=MODEL, data=dict(name="beethoven", seq_len=128000, batch_size=1),
        optim=dict(lr=4e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="cosine"),
        n_train=3900, epochs=1000, seed=0, train=dict(eval_every=5000, save_every=5000),  # (unverified chunk count)
    ),
}  # fmt: skip
