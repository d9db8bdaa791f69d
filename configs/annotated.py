"""srush/annotated-s4 classification presets: the README's MNIST and CIFAR-10 commands (``python -m s4.train
dataset={mnist,cifar}-classification layer={s4,dss,s4d} ...``) with the defaults of ``s4/config.yaml``.

What the reference does (``s4/train.py``, ``s4/s4.py``, ``s4/s4d.py``, ``s4/dss.py``, ``s4/data.py``):

- model (``StackedModel``/``SequenceBlock``): Dense encoder, blocks ``x + drop(GLU(drop(gelu(SSM(LN(x))))))``
  (prenorm LayerNorm by default), GLU as ``Dense(x) * sigmoid(Dense(x))``, dropout masks broadcast over time
  (``broadcast_dims=[0]``: one mask per channel, ``tie_dropout``), mean over time, Dense decoder; causal layers;
  every channel has its own SSM parameters (``cloneLayer`` vmaps the layer over channels);
- optimizer: the layer's ``lr`` dict puts Λ, P, B, log Δ (S4), A, B, log Δ (S4D) and Λ, log Δ (DSS) in an Adam
  group at 0.1 × lr without weight decay; every other parameter (C, D, biases, LayerNorm included) is AdamW at
  ``train.lr`` with ``train.weight_decay`` (default 0.01); ``lr_schedule=true`` is ``optax.cosine_onecycle_schedule``
  over all steps with ``pct_start=0.1`` (default div factors: start at peak/25, end at peak/25/1e4);
- Δ log-uniform in [1e-3, 1e-1] (``log_step_initializer``), one Δ per channel; N = 64 (``model.layer.N``);
- data: all 60,000 / 50,000 training images, the test set evaluated every epoch and the "best" test accuracy
  reported; MNIST ``Normalize(0.5, 0.5)``, CIFAR per-channel ``Normalize((0.4914, 0.4822, 0.4465),
  (0.2023, 0.1994, 0.2010))``; torch ``DataLoader`` without ``drop_last``.

Departures (kept because they are this library's protocol or parameterization, not a different recipe):

- validation: a seeded 10% hold-out of train selects the best checkpoint (the reference selects on test);
- schedule: linear warm-up from 0 over the first 10% of the steps, then cosine to peak × 4e-6 (the one-cycle
  schedule's end value); the reference's warm-up is a cosine ramp from peak/25;
- inputs: MNIST pixels ÷ 255 in [0, 1] and CIFAR divided by S4's std (0.247, 0.243, 0.261): affine maps of the
  reference's inputs that the Dense encoder absorbs (same function class, different initial scale);
- steps = epochs × ⌊n_train / batch⌋ (the reference also runs the last partial batch of each epoch);
- layers: S4 and S4D keep Re Λ < 0 by ``Λ = -exp(log_A_re) + i A_im`` (the reference clips Re Λ at -1e-4);
  D ~ N(0, 1) (reference: ones). S4 keeps the exact NPLR B (``b_clip=None``, as the reference). S4D-LegS here takes
  B from the HiPPO projection (reference: B = 1). DSS here shares Λ over channels, draws W with unit-variance real
  and imaginary parts and trains W at the SSM rate without decay (reference: per-channel Λ, variance ½ per part,
  W in the AdamW group).

State sizes: the reference keeps all N eigenvalues of the N × N HiPPO matrix (conjugate pairs both stored, kernel
``Re Σ_n``); the real part of a conjugate pair with free C equals one mode with one free C, so its N = 64 is the
function class of our S4/S4D ``d_state=64`` (32 stored pairs of HiPPO-LegS(64)) and of our DSS ``d_state=32``
(DSS stores N modes, the Im > 0 eigenvalues of HiPPO-LegS(2N)). Its S4D-Lin (``+model.layer.scaling=linear``) has
64 distinct frequencies ``-0.5 + iπn``, n = 0..63, that is our S4D ``init="lin", d_state=128``.
"""

from configs._util import preset
from ssm.layer_configs import DSSConfig, S4Config, S4DConfig

N_TRAIN_MNIST = 54000  # 60,000 minus the 10% hold-out
N_TRAIN_CIFAR = 45000  # 50,000 minus the 10% hold-out
# optax.cosine_onecycle_schedule defaults: start at peak / div_factor (25), end at start / final_div_factor (1e4).
ONECYCLE_END = 1.0 / (25.0 * 1e4)


def _optim(lr: float, weight_decay: float, n_steps: int) -> dict:
    # s4/train.py create_train_state: SSM group Adam at 0.1 x lr (no decay); the rest AdamW, biases and norms decayed
    return dict(lr=lr, ssm_lr=0.1 * lr, weight_decay=weight_decay, wd_bias_norm=True, schedule="cosine",
                warmup_steps=n_steps // 10, min_lr_ratio=ONECYCLE_END)  # fmt: skip


def _classifier(desc: str, run: str, layer, *, dataset: str, n_train: int, n_layers: int, d_model: int,
                batch: int, epochs: int, lr: float, weight_decay: float, dropout: float):  # fmt: skip
    n_steps = epochs * (n_train // batch)
    return preset(
        desc,
        f"annotated-{run}",
        model=dict(layer=layer, n_layers=n_layers, d_model=d_model, prenorm=True, norm="layer", dropout=dropout,
                   tie_dropout=True, activation="gelu", output="glu", pool="mean"),  # fmt: skip
        data=dict(name=dataset, batch_size=batch),
        optim=_optim(lr, weight_decay, n_steps),
        n_train=n_train, epochs=epochs, seed=1,
    )  # fmt: skip


# README "MNIST Classification": layer=s4 train.epochs=20 train.bsz=128 model.d_model=128 model.dropout=0.25
# train.lr=5e-3 train.lr_schedule=true seed=1; config.yaml: 4 layers, N 64, prenorm, weight_decay 0.01.
# Reported: "best" 99.55% test accuracy after 20 epochs.
_MNIST = dict(dataset="mnist", n_train=N_TRAIN_MNIST, n_layers=4, d_model=128, batch=128, epochs=20, lr=5e-3,
              weight_decay=0.01, dropout=0.25)  # fmt: skip
# README "CIFAR-10 Classification": layer={s4,dss,s4d} train.epochs=100 train.bsz=50 model.n_layers=6
# model.d_model=512 model.dropout=0.25 train.lr=5e-3 train.weight_decay=0.01 train.lr_schedule=true seed=1.
_CIFAR = dict(dataset="cifar10", n_train=N_TRAIN_CIFAR, n_layers=6, d_model=512, batch=50, epochs=100, lr=5e-3,
              weight_decay=0.01, dropout=0.25)  # fmt: skip

PRESETS = {
    "mnist_s4": _classifier(
        "S4 on sequential MNIST, 4x128, 20 epochs, 99.55% published (srush/annotated-s4 README, MNIST classification)",
        "mnist-s4", S4Config(measure="legs", d_state=64, n_ssm=128, b_clip=None), **_MNIST,
    ),
    "cifar_s4": _classifier(
        "S4 on colour sCIFAR, 6x512 prenorm, 100 epochs, 91.23% published (srush/annotated-s4 README, CIFAR-10)",
        "cifar-s4", S4Config(measure="legs", d_state=64, n_ssm=512, b_clip=None), **_CIFAR,
    ),
    "cifar_s4d": _classifier(
        "S4D-LegS on colour sCIFAR, 6x512 prenorm, 100 epochs, 89.76% published (srush/annotated-s4 README, CIFAR-10)",
        "cifar-s4d", S4DConfig(init="legs", d_state=64, disc="zoh"), **_CIFAR,
    ),
    # README: "+model.layer.scaling=linear" (S4D-Lin), "slightly better with 90.98%".
    "cifar_s4d_lin": _classifier(
        "S4D-Lin on colour sCIFAR, 6x512 prenorm, 100 epochs, 90.98% published (srush/annotated-s4 README, CIFAR-10)",
        "cifar-s4d-lin", S4DConfig(init="lin", d_state=128, disc="zoh"), **_CIFAR,
    ),
    # s4/dss.py: softmax kernel, one Δ for both parts of Λ (log_step of shape (1,)).
    "cifar_dss": _classifier(
        "DSS-softmax on colour sCIFAR, 6x512 prenorm, 100 epochs, 89.31% published (srush/annotated-s4 README, CIFAR-10)",
        "cifar-dss", DSSConfig(d_state=32, kernel_type="softmax", sep_dt_re_im=False), **_CIFAR,
    ),
}  # fmt: skip
