"""SaShiMi autoregressive audio (8-bit, 256-way softmax per sample) on the SaShiMi U-Net (``model:sashimi``).

Model: state-spaces/s4 ``configs/model/sashimi.yaml`` as ``configs/experiment/audio/sashimi-sc09.yaml`` (and
``sashimi-youtubemix.yaml``, ``sashimi-beethoven.yaml``) set it: d_model 64, n_layers 8, pool [4, 4], expand 2,
ff 2, dropout 0, pre-norm with the scalar LayerNorm (``transposed: True``), weight-normed pooling linears, S4 with
d_state 64, n_ssm 1 and each level's kernel as long as its input (``l_max: null``); 4,751,072 parameters on SC09
(tests/test_backbones.py). Data, optimizer and lengths are the experiment configs'.
Departure: the official ReduceLROnPlateau is replaced by cosine decay.
"""

from configs._util import preset
from ssm.config import SaShiMiConfig
from ssm.layer_configs import S4Config

MODEL = SaShiMiConfig(layer=S4Config(measure="legs", d_state=64, bidirectional=False, n_ssm=1), d_model=64,
                      n_layers=8, pool=(4, 4), expand=2, ff=2, dropout=0.0, dropres=0.0, norm="scalar",
                      prenorm=True, weight_norm=True)  # fmt: skip

PRESETS = {
    # state-spaces/s4 configs/experiment/audio/sashimi-sc09.yaml: mu-law, 16000 samples, batch 32,
    # AdamW lr 1e-3 wd 0, 1000 epochs; ~31k training clips (unverified)
    "sc09": preset(
        "SaShiMi on SC09 spoken digits, 8-bit mu-law, 16 kHz, 1 s (state-spaces/s4 audio/sashimi-sc09.yaml; cosine lr)",
        "audio-sc09",
        model=MODEL, data=dict(name="sc09", seq_len=16000, batch_size=32),
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="cosine"),
        n_train=31158, epochs=1000, seed=0, train=dict(eval_every=5000, save_every=5000),
    ),
    # state-spaces/s4 configs/experiment/audio/sashimi-youtubemix.yaml: mu-law, 131072 samples, batch 1, lr 4e-3
    "youtubemix": preset(
        "SaShiMi on YouTubeMix piano, 8-bit mu-law, 131072-sample chunks (state-spaces/s4 audio/sashimi-youtubemix.yaml)",
        "audio-youtubemix",
        model=MODEL, data=dict(name="youtubemix", seq_len=131072, batch_size=1),
        optim=dict(lr=4e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="cosine"),
        n_train=400, epochs=1000, seed=0, train=dict(eval_every=5000, save_every=5000),  # (unverified chunk count)
    ),
    # state-spaces/s4 configs/experiment/audio/sashimi-beethoven.yaml: linear 8-bit, 128000 samples, batch 1, lr 4e-3
    "beethoven": preset(
        "SaShiMi on Beethoven sonatas, 8-bit linear, 8 s chunks (state-spaces/s4 audio/sashimi-beethoven.yaml)",
        "audio-beethoven",
        model=MODEL, data=dict(name="beethoven", seq_len=128000, batch_size=1),
        optim=dict(lr=4e-3, ssm_lr=1e-3, weight_decay=0.0, schedule="cosine"),
        n_train=3900, epochs=1000, seed=0, train=dict(eval_every=5000, save_every=5000),  # (unverified chunk count)
    ),
}  # fmt: skip
