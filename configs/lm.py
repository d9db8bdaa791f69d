"""Word-level language modelling on WikiText.

Not representable here (noted so results are not mistaken for the paper's): S4's WT103 block
structure [S4, S4, FFN] ×16 and the adaptive input/softmax (cutoffs 19997/39997/199997, div_val 4);
these presets stack S4+GLU blocks with a plain tied softmax instead.
"""

from configs._util import preset
from ssm.layer_configs import S4Config

PRESETS = {
    # state-spaces/s4 configs/experiment/lm/s4-wt103.yaml: d_model 1024, dropout 0.25, prenorm, causal S4,
    # n_ssm 1, S4 lr = global lr, l_max 8192, batch 1 x 8 GPUs, AdamW lr 5e-4 wd 0.1, cosine 1000 / 800k steps.
    # 16 blocks of (S4, S4, FFN) -> 32 S4 blocks here, no FFN, no adaptive softmax.
    "wt103": preset(
        "Causal S4 LM on WikiText-103 (l_max 8192), 32x1024 S4 blocks (state-spaces/s4 lm/s4-wt103.yaml; no FFN/adaptive softmax)",
        "lm-wt103",
        model=dict(layer=S4Config(measure="legs", d_state=64, bidirectional=False, n_ssm=1), n_layers=32,
                   d_model=1024, prenorm=True, norm="layer", dropout=0.25, output="glu", pool="none",
                   tie_embeddings=True),
        data=dict(name="wt103", seq_len=8192, batch_size=8),
        optim=dict(lr=5e-4, ssm_lr=5e-4, weight_decay=0.1, schedule="cosine", warmup_steps=1000, decay_steps=800000),
        n_train=103_227_021 // 8192, epochs=800000 / (103_227_021 // 8192 // 8), seed=0,
        train=dict(eval_every=5000, save_every=5000),
    ),
    # No official source (our scale-down of state-spaces/s4 configs/experiment/lm/s4-wt103.yaml): 6 blocks of [S4, S4, FFN] -> 12 S4 blocks, d_model 512,
    # dropout 0.3, tied softmax (vocab 33k), l_max 1024, AdamW lr 1e-3 wd 0.1, cosine 1000 warmup, ~50 epochs.
    "wt2": preset(
        "Causal S4 LM on WikiText-2 (l_max 1024), 12x512, a smoke/regression test, not a reproduction (after state-spaces/s4 lm/s4-wt103.yaml)",
        "lm-wt2",
        model=dict(layer=S4Config(measure="legs", d_state=64, bidirectional=False), n_layers=12, d_model=512,
                   prenorm=True, norm="layer", dropout=0.3, output="glu", pool="none", tie_embeddings=True),
        data=dict(name="wt2", seq_len=1024, batch_size=8),
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.1, schedule="cosine", warmup_steps=1000),
        n_train=2_088_628 // 1024, epochs=50, seed=0,
    ),
}  # fmt: skip
