"""Free Spoken Digit Dataset (8 kHz raw waveforms, 10 classes, official speaker-independent-index split).

No official S4 config: srush/annotated-s4 ``create_fsdd_classification_dataset`` fixes the data
(10 classes, length 6400); the model is a small S4D classifier sized for a CPU.
"""

from configs._util import preset
from ssm.layer_configs import S4DConfig

PRESETS = {
    "digits": preset(
        "S4D on FSDD spoken digits, raw 8 kHz waveform cut/padded to 6400 samples, 4x64 (annotated-s4 data; own model)",
        "fsdd-digits",
        model=dict(layer=S4DConfig(d_state=64, bidirectional=True), n_layers=4, d_model=64, prenorm=True,
                   norm="layer", dropout=0.1, output="glu", pool="mean"),  # fmt: skip
        data=dict(name="fsdd", seq_len=6400, batch_size=16),
        optim=dict(lr=4e-3, ssm_lr=1e-3, weight_decay=0.01, schedule="cosine", warmup_steps=100),
        n_train=2430, epochs=30, seed=0,
    ),
}
