"""Long Range Arena presets: S4 (official V4 configs) and the DSS, S5 and S4-PTD variants.

Hyperparameters from the public configs of state-spaces/s4, ag1988/dss, lindermanlab/S5 and
AnnanYu/Approximate_Diagonal; each preset cites its source config.
Data: ListOps and Pathfinder/Path-X read the LRA release (or the offline generator's output,
``ssm.data.lra_gen``) through the ``listops`` / ``pathfinder`` datasets; IMDB (``imdb``), AAN
(``aan``) and the grayscale CIFAR image task (``cifar10`` with ``grayscale``).

Separate dt and A/B learning rates map to ``optim.dt_lr`` and ``optim.ssm_lr``, ReduceLROnPlateau
(V1/DSS) to the ``plateau`` schedule. Not representable here, approximated as noted: S5's half-GLU
activations and optimizer groupings (GLU output, standard grouping); DSS Path-X's unknown plateau
patience (cosine decay over the run).
"""

from configs._util import given, preset
from ssm.layer_configs import DSSConfig, S4Config, S4DConfig, S5Config

N_TRAIN = {"listops": 96000, "imdb": 25000, "aan": 147086, "cifar": 45000, "pathfinder": 160000, "pathx": 160000}
DATA = {  # dataset name and options per task
    "listops": dict(name="listops", seq_len=2048),
    "imdb": dict(name="imdb", seq_len=4096),
    "aan": dict(name="aan", seq_len=4000),
    "cifar": dict(name="cifar10", grayscale=True),
    "pathfinder": dict(name="pathfinder", resolution=32),
    "pathx": dict(name="pathfinder", resolution=128),
}
S4_LRA = dict(norm="batch", output="glu", pool="mean")


def _s4(task, *, n_layers, d_model, d_state, prenorm, dropout, n_ssm, batch, lr, warmup, total, epochs, seed, dt_min=None,
        dt_lr=None, scan_layers=False):
    # state-spaces/s4 configs/experiment/lra/s4-<task>.yaml (V4): AdamW wd 0.05, cosine with warmup per step
    return preset(
        f"S4 (V4 config) on LRA {task}: {n_layers}x{d_model}, N={d_state}, {epochs} epochs (state-spaces/s4 lra/s4-{task}.yaml)",
        f"lra-{task}",
        model=dict(S4_LRA, layer=S4Config(measure="legs", bidirectional=True, d_state=d_state, n_ssm=n_ssm,
                                          **given(dt_min=dt_min)),
                   n_layers=n_layers, d_model=d_model, prenorm=prenorm, dropout=dropout, scan_layers=scan_layers),
        data=dict(DATA[task], batch_size=batch),
        optim=dict(lr=lr, ssm_lr=1e-3, dt_lr=dt_lr, weight_decay=0.05, schedule="cosine", warmup_steps=warmup,
                   decay_steps=total),
        n_train=N_TRAIN[task], epochs=epochs, seed=seed,
    )  # fmt: skip


PRESETS = {
    # state-spaces/s4 configs/experiment/lra/s4-listops.yaml (dt at the global lr; A, B at 1e-3)
    "listops": _s4("listops", n_layers=6, d_model=256, d_state=4, prenorm=False, dropout=0.0, n_ssm=1, batch=32,
                   lr=0.01, warmup=12000, total=120000, epochs=40, seed=3333, dt_lr=0.01),
    # state-spaces/s4 configs/experiment/lra/s4-imdb.yaml (dt at the global lr; A, B at 1e-3)
    "imdb": _s4("imdb", n_layers=6, d_model=256, d_state=4, prenorm=True, dropout=0.0, n_ssm=1, batch=16,
                lr=0.01, warmup=5000, total=50000, epochs=32, seed=3333, dt_lr=0.01),
    # state-spaces/s4 configs/experiment/lra/s4-aan.yaml (dt at the global lr; A, B at 1e-3)
    "aan": _s4("aan", n_layers=6, d_model=256, d_state=4, prenorm=True, dropout=0.0, n_ssm=1, batch=64,
               lr=0.01, warmup=5000, total=50000, epochs=20, seed=3333, dt_lr=0.01),
    # state-spaces/s4 configs/experiment/lra/s4-cifar.yaml (grayscale, Normalize(122.6/255, 61/255))
    "cifar": _s4("cifar", n_layers=6, d_model=512, d_state=64, prenorm=False, dropout=0.1, n_ssm=1, batch=50,
                 lr=0.01, warmup=18000, total=180000, epochs=200, seed=2222),
    # state-spaces/s4 configs/experiment/lra/s4-pathfinder.yaml (n_ssm = H)
    "pathfinder": _s4("pathfinder", n_layers=6, d_model=256, d_state=64, prenorm=True, dropout=0.0, n_ssm=256,
                      batch=64, lr=0.004, warmup=50000, total=500000, epochs=200, seed=3333),
    # state-spaces/s4 configs/experiment/lra/s4-pathx.yaml (dt_min 1e-4, n_ssm = H). Blocks unrolled: under lax.scan
    # (scan_layers=True: same parameters, same outputs) the step compiles in 5.0 s instead of 7.6-7.9 s but runs
    # 9-20 % slower (docs/benchmarks.md, "Path-X: where the bidirectional S4 layer's time goes").
    "pathx": _s4("pathx", n_layers=6, d_model=256, d_state=64, prenorm=True, dropout=0.0, n_ssm=256, batch=16,
                 lr=0.001, warmup=50000, total=500000, epochs=50, seed=3333, dt_min=1e-4),
}  # fmt: skip


# ---------------------------------------------------------------- DSS (ag1988/dss)
def _dss(task, *, n_layers, d_model, prenorm, dropout, pool, batch, lr, wd, epochs, patience, seed=1112, dt_min=None,
         dt_max=None, ssm_lr=1e-3, dt_lr=None, seq_len=None, note=""):  # fmt: skip
    # ag1988/dss configs/experiment/s4-lra-<task>.yaml (= S4 V1 lra/old) + model=dss + README overrides;
    # DSS-softmax layer (configs/model/layer/dss.yaml), N 64, unidirectional, BatchNorm;
    # ReduceLROnPlateau factor 0.2 on val accuracy, stepped per epoch (one validation per epoch here);
    # patience None (Path-X, not in the V1 table): cosine over the run.
    data = dict(DATA[task], batch_size=batch)
    if seq_len:
        data["seq_len"] = seq_len
    return preset(
        f"DSS-softmax on LRA {task}{note} (ag1988/dss s4-lra-{task}.yaml + README overrides)",
        f"lra-dss-{task}",
        model=dict(layer=DSSConfig(d_state=64, bidirectional=False, **given(dt_min=dt_min, dt_max=dt_max)),
                   norm="batch", output="glu", n_layers=n_layers, d_model=d_model, prenorm=prenorm, dropout=dropout,
                   pool=pool),
        data=data,
        optim=dict(lr=lr, ssm_lr=ssm_lr, dt_lr=dt_lr, weight_decay=wd,
                   **(dict(schedule="plateau", gamma=0.2, patience=patience) if patience else dict(schedule="cosine"))),
        n_train=N_TRAIN[task], epochs=epochs, seed=seed,
    )  # fmt: skip


PRESETS.update({
    # README: model.layer.lr.log_dt=0.02 (Lambda, W stay at 1e-3)
    "dss_listops": _dss("listops", n_layers=6, d_model=128, prenorm=False, dropout=0.0, pool="mean", batch=50,
                        lr=0.01, wd=0.01, epochs=50, dt_lr=0.02, patience=5),
    # README: model.layer.lr.log_dt=0.02
    "dss_imdb": _dss("imdb", n_layers=4, d_model=128, prenorm=True, dropout=0.0, pool="last", batch=50, lr=0.01,
                     wd=0.0, epochs=40, seq_len=2048, dt_lr=0.02, patience=10, note=" (l_max 2048)"),
    "dss_aan": _dss("aan", n_layers=6, d_model=256, prenorm=True, dropout=0.0, pool="mean", batch=64, lr=0.002,
                    wd=0.0, epochs=25, patience=20),
    # README: trainer.max_epochs=200 train.seed=0
    "dss_cifar": _dss("cifar", n_layers=6, d_model=512, prenorm=False, dropout=0.2, pool="mean", batch=50,
                      lr=0.004, wd=0.01, epochs=200, seed=0, patience=10),
    # README: scheduler.patience=13
    "dss_pathfinder": _dss("pathfinder", n_layers=6, d_model=256, prenorm=True, dropout=0.1, pool="last",
                           batch=100, lr=0.004, wd=0.0, epochs=200, patience=13),
    # README: dt_min 1e-4, dt_max 1e-2, lr.log_dt 1e-4, batch 16, 35 epochs
    "dss_pathx": _dss("pathx", n_layers=6, d_model=256, prenorm=True, dropout=0.0, pool="mean", batch=16,
                      lr=0.0005, wd=0.0, epochs=35, dt_min=1e-4, dt_max=1e-2, dt_lr=1e-4, patience=None,
                      note=" (dt 1e-4..1e-2; loss moves after ~90k steps)"),
})  # fmt: skip


# ---------------------------------------------------------------- S5 (lindermanlab/S5)
def _s5(task, *, n_layers, d_model, P, J, c_init, batch, ssm_lr, lr, wd, dropout, epochs, warmup_epochs, seed,
        bn_momentum=0.95, clip_eigs=None, dt_min=None):  # fmt: skip
    # lindermanlab/S5 bin/run_experiments/run_lra_<task>.sh: ZOH, prenorm BatchNorm, bidirectional,
    # linear warmup then cosine to 0 over the run (lr and ssm_lr).
    from configs._util import steps

    return preset(
        f"S5 on LRA {task}: {n_layers}x{d_model}, P={P}, J={J} (lindermanlab/S5 run_lra_{task}.sh)",
        f"lra-s5-{task}",
        model=dict(layer=S5Config(d_state=P, blocks=J, c_init=c_init, conj_sym=True, disc="zoh", bidirectional=True,
                                    **given(clip_eigs=clip_eigs, dt_min=dt_min)),
                   n_layers=n_layers, d_model=d_model, prenorm=True,
                   norm="batch", bn_momentum=bn_momentum, dropout=dropout, output="glu", pool="mean"),  # fmt: skip
        data=dict(DATA[task], batch_size=batch),
        optim=dict(lr=lr, ssm_lr=ssm_lr, weight_decay=wd, schedule="cosine",
                   warmup_steps=steps(warmup_epochs, N_TRAIN[task], batch) if warmup_epochs else 0),  # fmt: skip
        n_train=N_TRAIN[task], epochs=epochs, seed=seed,
    )  # fmt: skip


PRESETS.update({
    "s5_listops": _s5("listops", n_layers=8, d_model=128, P=16, J=8, c_init="lecun_normal", batch=50, ssm_lr=1e-3,
                      lr=3e-3, wd=0.04, dropout=0.0, epochs=40, warmup_epochs=1, seed=6554595),
    "s5_imdb": _s5("imdb", n_layers=6, d_model=256, P=192, J=12, c_init="lecun_normal", batch=50, ssm_lr=1e-3,
                   lr=4e-3, wd=0.07, dropout=0.1, epochs=35, warmup_epochs=0, seed=8825365),
    "s5_aan": _s5("aan", n_layers=6, d_model=128, P=256, J=16, c_init="trunc_standard_normal", batch=32,
                  ssm_lr=1e-3, lr=2e-3, wd=0.05, dropout=0.0, epochs=20, warmup_epochs=1, seed=5464368),
    "s5_cifar": _s5("cifar", n_layers=6, d_model=512, P=384, J=3, c_init="lecun_normal", batch=50, ssm_lr=1e-3,
                    lr=4.5e-3, wd=0.07, dropout=0.1, epochs=250, warmup_epochs=1, seed=16416, clip_eigs=True),
    "s5_pathfinder": _s5("pathfinder", n_layers=6, d_model=192, P=256, J=8, c_init="trunc_standard_normal",
                         batch=64, ssm_lr=9e-4, lr=4.5e-3, wd=0.03, dropout=0.05, epochs=200, warmup_epochs=1,
                         seed=8180844, bn_momentum=0.9),
    "s5_pathx": _s5("pathx", n_layers=6, d_model=128, P=256, J=16, c_init="complex_normal", batch=32, ssm_lr=6e-4,
                    lr=1.8e-3, wd=0.06, dropout=0.0, epochs=75, warmup_epochs=1, seed=6429262, bn_momentum=0.9,
                    dt_min=1e-4),
})  # fmt: skip


# ---------------------------------------------------------------- S4-PTD (AnnanYu/Approximate_Diagonal)
def _ptd(task, *, n_layers, d_model, prenorm, norm, dropout, ssm_lr, batch, lr, wd, warmup, total, epochs, seed,
         dt_min=None, dt_max=None):  # fmt: skip
    # AnnanYu/Approximate_Diagonal S4-PTD/configs/experiment/lra/s4-PTD-<task>.yaml: diagonal kernel on the
    # perturbed-then-diagonalized HiPPO-LegS (S4D init "legs-ptd"), bidirectional, GLU, N 64, cosine warmup.
    # Cosine horizons longer (or shorter) than the run are kept as written.
    return preset(
        f"S4-PTD on LRA {task}: {n_layers}x{d_model} (Approximate_Diagonal s4-PTD-{task}.yaml)",
        f"lra-s4ptd-{task}",
        model=dict(layer=S4DConfig(init="legs-ptd", d_state=64, bidirectional=True,
                                   **given(dt_min=dt_min, dt_max=dt_max)),
                   output="glu", pool="mean", n_layers=n_layers, d_model=d_model, prenorm=prenorm, norm=norm,
                   dropout=dropout),  # fmt: skip
        data=dict(DATA[task], batch_size=batch),
        optim=dict(lr=lr, ssm_lr=ssm_lr, weight_decay=wd, schedule="cosine", warmup_steps=warmup, decay_steps=total),
        n_train=N_TRAIN[task], epochs=epochs, seed=seed,
    )  # fmt: skip


PRESETS.update({
    "s4ptd_listops": _ptd("listops", n_layers=8, d_model=256, prenorm=False, norm="batch", dropout=0.0, ssm_lr=4e-4,
                          batch=50, lr=0.002, wd=0.05, warmup=12000, total=1200000, epochs=80, seed=2222, dt_max=1.0),
    "s4ptd_imdb": _ptd("imdb", n_layers=6, d_model=256, prenorm=True, norm="batch", dropout=0.0, ssm_lr=1e-3,
                       batch=16, lr=0.01, wd=0.05, warmup=5000, total=50000, epochs=80, seed=3333),
    "s4ptd_aan": _ptd("aan", n_layers=6, d_model=128, prenorm=True, norm="batch", dropout=0.0, ssm_lr=1e-3,
                      batch=64, lr=0.004, wd=0.03, warmup=5000, total=100000, epochs=40, seed=3333),
    "s4ptd_cifar": _ptd("cifar", n_layers=6, d_model=128, prenorm=False, norm="layer", dropout=0.1, ssm_lr=1e-3,
                        batch=128, lr=0.01, wd=0.01, warmup=3600, total=1760000, epochs=2000, seed=2222),
    "s4ptd_pathfinder": _ptd("pathfinder", n_layers=6, d_model=256, prenorm=True, norm="batch", dropout=0.0,
                             ssm_lr=1e-3, batch=64, lr=0.004, wd=0.03, warmup=150000, total=800000, epochs=300,
                             seed=3333),
    "s4ptd_pathx": _ptd("pathx", n_layers=6, d_model=128, prenorm=True, norm="batch", dropout=0.0, ssm_lr=1e-3,
                        batch=20, lr=0.001, wd=0.03, warmup=200000, total=1250000, epochs=100, seed=3333, dt_min=1e-4),
})  # fmt: skip
