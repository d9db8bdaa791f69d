"""Time-series forecasting on the Informer datasets (univariate ``S`` setting by default).

state-spaces/s4 configs/experiment/forecasting/s4-informer-{etth,ettm,ecl,weather}.yaml on
pipeline/informer.yaml: S4 2 layers, H 128, prenorm LN, N 64, unidirectional, GLU, dropout 0.25;
AdamW lr 0.01 wd 0; batch 50; 10 epochs; lookback 384 + horizon 96 (the horizon is appended as
zeros and the last 96 outputs are the forecast); MSE on standardized data; ReduceLROnPlateau on val
loss (factor 0.2, patience 20 epochs = 100 of the 5 validations per epoch here, so within 10 epochs the
lr stays at 0.01, as in the reference). S4's calendar-feature encoder (timeenc 0) is not used. Other
horizons: ``--data.pred-len``.
"""

from configs._util import preset
from ssm.layer_configs import S4Config

N_WINDOWS = {  # training windows with seq_len 384, pred_len 96: rows_train - 480 + 1
    "etth1": 8640 - 479, "etth2": 8640 - 479, "ettm1": 34560 - 479, "weather": int(35064 * 0.7) - 479,
    "ecl": int(26304 * 0.7) - 479,
}  # fmt: skip
SOURCE = {"etth1": "etth", "etth2": "etth", "ettm1": "ettm", "weather": "weather", "ecl": "ecl"}


def _forecast(name):
    # state-spaces/s4 configs/experiment/forecasting/s4-informer-<SOURCE>.yaml
    return preset(
        f"S4 forecasting on {name} (univariate, lookback 384, horizon 96) (state-spaces/s4 forecasting/s4-informer-{SOURCE[name]}.yaml)",
        f"forecast-{name}",
        model=dict(layer=S4Config(measure="legs", d_state=64, bidirectional=False), n_layers=2, d_model=128,
                   prenorm=True, norm="layer", dropout=0.25, output="glu", pool="none"),  # fmt: skip
        data=dict(name=name, seq_len=384, pred_len=96, features="S", batch_size=50),
        optim=dict(lr=0.01, ssm_lr=1e-3, weight_decay=0.0, schedule="plateau", gamma=0.2, patience=100),
        n_train=N_WINDOWS[name], epochs=10, seed=0, evals_per_epoch=5,  # validation every 0.2 epoch
    )


PRESETS = {name: _forecast(name) for name in N_WINDOWS}
