"""Word-level language modelling on WikiText with S4's published language model (``model:adaptive_lm``):
adaptive input embedding -> [S4, S4, FFN] pre-norm residual blocks -> LayerNorm -> adaptive log-softmax.

The trainer's loss and evaluation ask the model for the targets' log-probabilities only (``Backbone.lm_scores``
-> ``AdaptiveLM.scores``): no ``(L, V)`` array (WikiText-103: 8192 x 267735 per example); every cluster's
normaliser is accumulated over blocks of 2048 vocabulary rows. Departure from the official code, which gathers the
positions of each tail cluster: every tail's normaliser is computed at every position (static shapes), the same
values at more FLOPs. A recorded WikiText-2 run: docs/results/lm/README.md.
"""

from configs._util import preset
from ssm.config import AdaptiveLMConfig
from ssm.layer_configs import S4Config

PRESETS = {
    # state-spaces/s4 configs/experiment/lm/s4-wt103.yaml (model: 16 x s4s4ff, d_model 1024, dropout 0.25,
    # prenorm, causal S4 with n_ssm 1, l_max 8192; configs/pipeline/wt103.yaml: adaptive input/softmax, cutoffs
    # 19997/39997/199997, div_val 4, dropemb = dropsoft = 0.25, init_scale 0.5, tied weights and projections),
    # batch 1 x 8 GPUs, AdamW lr 5e-4 wd 0.1, cosine with 1000 warmup steps over 800k steps.
    "wt103": preset(
        "S4 LM on WikiText-103 (l_max 8192): 16 x [S4, S4, FFN] x 1024, adaptive input/softmax (state-spaces/s4 lm/s4-wt103.yaml)",
        "lm-wt103",
        model=AdaptiveLMConfig(layer=S4Config(measure="legs", d_state=64, bidirectional=False, n_ssm=1),
                               d_model=1024, n_layers=16, ff=4, cutoffs=(19997, 39997, 199997), div_val=4,
                               dropout=0.25, dropemb=0.25, dropsoft=0.25),
        data=dict(name="wt103", seq_len=8192, batch_size=8),
        optim=dict(lr=5e-4, ssm_lr=5e-4, weight_decay=0.1, schedule="cosine", warmup_steps=1000, decay_steps=800000),
        n_train=103_227_021 // 8192, epochs=800000 / (103_227_021 // 8192 // 8), seed=0,
        train=dict(eval_every=5000, save_every=5000),
    ),
    # No official source (our scale-down of state-spaces/s4 configs/experiment/lm/s4-wt103.yaml): the WT103 model
    # scaled to WikiText-2's 33,278-word vocabulary, which is below the WT103 cutoffs: its own clusters at 2000 / 10000 (shortlist of the frequent
    # words, about 94% of the tokens). 6 x [S4, S4, FFN] x 512, dropout 0.3, l_max 1024, AdamW lr 1e-3 wd 0.1,
    # cosine with 1000 warmup steps, ~50 epochs.
    "wt2": preset(
        "S4 LM on WikiText-2 (l_max 1024): 6 x [S4, S4, FFN] x 512, adaptive softmax 2000/10000; a smoke/regression test, not a reproduction",
        "lm-wt2",
        model=AdaptiveLMConfig(layer=S4Config(measure="legs", d_state=64, bidirectional=False, n_ssm=1),
                               d_model=512, n_layers=6, ff=4, cutoffs=(2000, 10000), div_val=4, dropout=0.3,
                               dropemb=0.3, dropsoft=0.3),
        data=dict(name="wt2", seq_len=1024, batch_size=8),
        optim=dict(lr=1e-3, ssm_lr=1e-3, weight_decay=0.1, schedule="cosine", warmup_steps=1000),
        n_train=2_088_628 // 1024, epochs=50, seed=0,
    ),
}  # fmt: skip
