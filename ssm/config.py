"""The configuration schema of a training run.

A run is fully described by one frozen :class:`Config`: ``model``, ``data``, ``optim`` and ``train``
sections. Presets live in ``configs/<group>.py``; the command line overrides single fields
(``--model.d-model 512``). Every section validates itself on construction and names the offending
field in its error, e.g. ``model.d_model must be a positive integer (got 0): pass --model.d-model N``.

Layer-specific options (``init``, ``disc``, ``dt_min``...) are flat optional fields of
:class:`ModelConfig`: ``None`` means "the layer's own default" and is not passed to the layer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

LayerName = Literal["s4", "s4d", "dss", "s5", "hope"]


def _default_root() -> str:
    return os.environ.get("DATA_PATH", "./data")


def _flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def _check(cond: bool, path: str, what: str, value: Any) -> None:
    if not cond:
        raise ValueError(f"{path} {what} (got {value!r}): set it with {_flag(path)} VALUE")


def _positive(path: str, value: Any) -> None:
    _check(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        path,
        "must be a positive integer",
        value,
    )


def _nonneg(path: str, value: Any) -> None:
    _check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
        path,
        "must be a non-negative number",
        value,
    )


def _choice(path: str, value: Any, choices: tuple[Any, ...]) -> None:
    _check(value in choices, path, f"must be one of {choices}", value)


@dataclass(frozen=True)
class ModelConfig:
    """The backbone (:class:`ssm.model.SequenceModel`) and its SSM layer."""

    layer: LayerName = "s4d"  # SSM layer family
    d_model: int = 64  # H: channels of the residual stream
    n_layers: int = 4  # number of residual blocks
    d_state: int = 64  # N: state size per layer (S5: latent size P)
    prenorm: bool = True  # normalise before (True) or after (False) the residual branch
    norm: Literal["layer", "batch", "none"] = "layer"  # BatchNorm keeps running stats in eqx.nn.State
    bn_momentum: float = 0.9  # running-statistics momentum of BatchNorm (PyTorch momentum 0.1)
    dropout: float = 0.0  # dropout rate inside each block
    tie_dropout: bool = False  # one dropout mask per channel shared over time (S4's DropoutNd)
    activation: Literal["gelu", "relu", "identity"] = "gelu"  # after the SSM layer
    output: Literal["glu", "linear", "none"] = "glu"  # block output: Linear(H,2H)+GLU, Linear(H,H), none
    residual: bool = True  # identity residual around each block
    pool: Literal["mean", "last", "none"] = "mean"  # sequence pooling before the decoder (masked by lengths)
    # Zero the padding (steps at or after the true length) at every SSM's input, so that the outputs on the real
    # steps do not depend on the padding (bidirectional layers read it otherwise). Off by default, as the
    # reference code (and every run recorded before 2026-12-02).
    mask_padding: bool = False
    tie_embeddings: bool = False  # LM: decoder weight = embedding matrix
    scan_layers: bool = False  # stack the blocks and lax.scan over them (compile once for N layers)
    # "mixed": bfloat16 residual stream, encoder/decoder/block matmuls; norms, SSM kernels and FFT convolutions
    # in float32 (parameters stay float32). "auto": mixed on GPU/TPU, float32 on CPU.
    precision: Literal["float32", "mixed", "auto"] = "float32"
    # Layer options: None = the layer's default; passed to the layer constructor only when set.
    bidirectional: bool | None = None
    init: str | None = None  # S4D: "legs" | "diag-lin" | "diag-inv" ...; S5: "hippo"; HOPE: "randn" ...
    disc: str | None = None  # "zoh" | "bilinear"
    dt_min: float | None = None
    dt_max: float | None = None
    measure: str | None = None  # S4: HiPPO measure ("legs", "fout", ...)
    rank: int | None = None  # S4: low-rank correction rank
    n_ssm: int | None = None  # S4: independent (A, B) copies (None: layer default)
    l_max: int | None = None  # S4: kernel length (None: the dataset's sequence length)
    b_clip: float | None = None  # S4
    block: int | None = None  # S4
    kernel_type: str | None = None  # DSS: "softmax" | "exp"
    sep_dt_re_im: bool | None = None  # DSS
    blocks: int | None = None  # S5: number of diagonal HiPPO blocks J
    conj_sym: bool | None = None  # S5: store half of the conjugate eigenvalue pairs
    clip_eigs: bool | None = None  # S5
    c_init: str | None = None  # S5 C_init: "trunc_standard_normal" | "lecun_normal" | "complex_normal"
    init_scale: float | None = None  # HOPE
    decay_exp: float | None = None  # HOPE
    train_dt: bool | None = None  # HOPE

    def __post_init__(self) -> None:
        _choice("model.layer", self.layer, ("s4", "s4d", "dss", "s5", "hope"))
        _positive("model.d_model", self.d_model)
        _positive("model.n_layers", self.n_layers)
        _positive("model.d_state", self.d_state)
        _choice("model.norm", self.norm, ("layer", "batch", "none"))
        _choice("model.activation", self.activation, ("gelu", "relu", "identity"))
        _choice("model.output", self.output, ("glu", "linear", "none"))
        _choice("model.pool", self.pool, ("mean", "last", "none"))
        _choice("model.precision", self.precision, ("float32", "mixed", "auto"))
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)", self.dropout)
        _check(0.0 <= self.bn_momentum < 1.0, "model.bn_momentum", "must be in [0, 1)", self.bn_momentum)
        if self.dt_min is not None and self.dt_max is not None:
            _check(
                0 < self.dt_min <= self.dt_max,
                "model.dt_min",
                f"must satisfy 0 < dt_min <= dt_max={self.dt_max}",
                self.dt_min,
            )
        if self.scan_layers and self.norm == "batch":
            raise ValueError(
                "model.scan_layers=True is not supported with model.norm='batch' (BatchNorm state "
                "is per layer): pass --model.no-scan-layers or --model.norm layer"
            )

    _LAYER_FIELDS = (
        "bidirectional", "init", "disc", "dt_min", "dt_max", "measure", "rank", "n_ssm", "l_max", "b_clip",
        "block", "kernel_type", "sep_dt_re_im", "blocks", "conj_sym", "clip_eigs", "c_init", "init_scale",
        "decay_exp", "train_dt",
    )  # fmt: skip
    _LAYER_NAMES = {"c_init": "C_init"}  # config field -> layer keyword, where they differ

    def layer_kwargs(self) -> dict[str, Any]:
        """The keyword options given to the layer constructor: only those set (not None)."""
        return {
            self._LAYER_NAMES.get(n, n): getattr(self, n)
            for n in self._LAYER_FIELDS
            if getattr(self, n) is not None
        }


@dataclass(frozen=True)
class DataConfig:
    """The dataset (a name registered in :data:`ssm.data.DATASETS`) and its input pipeline.

    Dataset options are flat optional fields; ``None`` means the dataset's default.
    """

    name: str = "digits"  # registered dataset name
    root: str = field(default_factory=_default_root)  # data directory ($DATA_PATH, else ./data)
    batch_size: int = 32  # global training batch (over all devices and hosts)
    eval_batch_size: int = 64  # global evaluation batch
    seed: int = 0  # shuffling seed
    num_workers: int = 0  # Grain worker processes (0: read in the main process)
    # Group training batches by true length and cut each to its longest example rounded up to a multiple
    # of this many steps (padded token tasks; one compiled step per distinct length). None: full padding.
    length_bucket: int | None = None
    # Dataset options (None = the dataset's default):
    seq_len: int | None = None  # sequence length / l_max
    permute: bool | None = None  # permuted pixel order (pMNIST)
    val_fraction: float | None = None  # held-out fraction of train used for validation
    grayscale: bool | None = None
    normalize: bool | None = None
    resolution: int | None = None  # subsampling factor (Speech Commands)
    noise_pad: int | None = None
    split_seed: int | None = None  # seed of the train/val hold-out (reference: 42)
    perm_seed: int | None = None  # pMNIST: random permutation seed (None: bit-reversal, as S4)
    pred_len: int | None = None  # forecasting horizon (Informer data)
    features: str | None = None  # forecasting channels: "S" (target only), "M" (all->all), "MS" (all->target)
    target: str | None = None  # regression target: BIDMC "HR"/"RR"/"SpO2", forecasting column name
    mfcc: bool | None = None  # Speech Commands: 20 MFCCs x 161 frames instead of the waveform
    n_train: int | None = None  # synthetic tasks: training examples
    n_eval: int | None = None  # synthetic tasks: examples per val/test split
    n_memorize: int | None = None  # copying tasks: tokens to memorize
    n_tokens: int | None = None  # copying tasks: alphabet size (incl. blank and marker)
    lag: int | None = None  # copying: blanks between tokens and markers; delay: the delay in steps
    contour: int | None = None  # Pathfinder/Path-X contour length: 6, 9 or 14 (LRA "hard", the default)

    def __post_init__(self) -> None:
        _check(bool(self.name), "data.name", "must name a registered dataset", self.name)
        _positive("data.batch_size", self.batch_size)
        _positive("data.eval_batch_size", self.eval_batch_size)
        _check(isinstance(self.num_workers, int) and self.num_workers >= 0, "data.num_workers",
               "must be a non-negative integer", self.num_workers)  # fmt: skip
        if self.seq_len is not None:
            _positive("data.seq_len", self.seq_len)
        if self.length_bucket is not None:
            _positive("data.length_bucket", self.length_bucket)
        if self.val_fraction is not None:
            _check(0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)",
                   self.val_fraction)  # fmt: skip


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with parameter groups: SSM parameters (``ssm_lr``, no weight decay; log Δ at ``dt_lr`` if set)
    and the rest.

    All learning rates follow the same schedule shape: linear warmup from 0 over ``warmup_steps``,
    then ``cosine`` / ``linear`` decay to ``min_lr_ratio`` × peak at ``decay_steps`` (default:
    ``train.steps``; counted from step 0, warmup included), ``constant``, ``multistep`` (× ``gamma``
    at each step count in ``milestones``, PyTorch's MultiStepLR stepped per optimizer step), or
    ``plateau`` (PyTorch's ReduceLROnPlateau stepped at each validation on the best-checkpoint metric:
    × ``gamma`` after more than ``patience`` validations without a 1e-4 relative improvement, down to
    ``min_lr_ratio`` × peak).

    ``ema_decay`` (None: off) keeps an exponential moving average of the weights, updated after every
    optimizer step (:mod:`ssm.train.ema`); validation, test, best-checkpoint selection and ``ssm.load`` then
    use the averaged weights.
    """

    lr: float = 1e-3  # peak learning rate of the non-SSM parameters
    ssm_lr: float | None = 1e-3  # peak learning rate of the SSM parameters (None: same as lr; 0: frozen)
    dt_lr: float | None = None  # peak learning rate of log Δ alone (None: ssm_lr like the other SSM parameters)
    weight_decay: float = 0.0  # decoupled weight decay of the non-SSM parameters
    wd_bias_norm: bool = False  # also decay biases and normalisation parameters
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    schedule: Literal["cosine", "linear", "constant", "multistep", "plateau"] = "cosine"
    warmup_steps: int = 0
    decay_steps: int | None = None  # None: train.steps
    min_lr_ratio: float = 0.0  # final lr = min_lr_ratio * peak
    milestones: tuple[int, ...] = ()  # multistep: optimizer steps at which the lr is multiplied by gamma
    gamma: float = 0.1  # multistep / plateau factor
    patience: int = 10  # plateau: validations without improvement tolerated before a reduction
    clip_norm: float | None = None  # global-norm gradient clipping (None: off)
    grad_accum: int = 1  # split each batch into this many micro-batches, one optimizer step
    ema_decay: float | None = None  # EMA of the weights: ema <- d*ema + (1-d)*params per step (None: off)

    def __post_init__(self) -> None:
        _nonneg("optim.lr", self.lr)
        if self.ssm_lr is not None:
            _nonneg("optim.ssm_lr", self.ssm_lr)
        if self.dt_lr is not None:
            _nonneg("optim.dt_lr", self.dt_lr)
        _nonneg("optim.weight_decay", self.weight_decay)
        _choice("optim.schedule", self.schedule, ("cosine", "linear", "constant", "multistep", "plateau"))
        if self.schedule == "multistep":
            ms = self.milestones
            _check(len(ms) > 0 and all(isinstance(m, int) and m > 0 for m in ms) and list(ms) == sorted(set(ms)),
                   "optim.milestones", "the multistep schedule needs increasing positive step counts, e.g. "
                   "--optim.milestones 1000 2000", ms)  # fmt: skip
        _check(0.0 < self.gamma <= 1.0, "optim.gamma", "must be in (0, 1]", self.gamma)
        _check(isinstance(self.patience, int) and self.patience >= 0, "optim.patience",
               "must be a non-negative integer", self.patience)  # fmt: skip
        _check(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "optim.warmup_steps",
               "must be a non-negative integer", self.warmup_steps)  # fmt: skip
        if self.decay_steps is not None:
            _positive("optim.decay_steps", self.decay_steps)
        _check(0.0 <= self.min_lr_ratio <= 1.0, "optim.min_lr_ratio", "must be in [0, 1]", self.min_lr_ratio)
        if self.clip_norm is not None:
            _check(self.clip_norm > 0, "optim.clip_norm", "must be > 0 (or unset)", self.clip_norm)
        _positive("optim.grad_accum", self.grad_accum)
        _check(0.0 <= self.b1 < 1.0, "optim.b1", "must be in [0, 1)", self.b1)
        _check(0.0 <= self.b2 < 1.0, "optim.b2", "must be in [0, 1)", self.b2)
        if self.ema_decay is not None:
            _check(0.0 < self.ema_decay < 1.0, "optim.ema_decay",
                   "must be in (0, 1), e.g. 0.999 (unset: no EMA)", self.ema_decay)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """The loop: steps, evaluation, checkpoints, logging."""

    steps: int = 1000  # total optimizer steps
    run_dir: str = "runs/default"  # all outputs of the run; rerunning on an existing dir resumes
    seed: int = 0  # model init, dropout
    log_every: int = 50  # train-metric log interval (steps)
    eval_every: int = 500  # validation interval (steps); 0: only at the end
    eval_splits: tuple[str, ...] = ("val", "test")  # evaluated every eval_every (val) / at the end (all)
    eval_batches: int | None = None  # cap on evaluation batches per split (None: whole split)
    save_every: int = 500  # checkpoint interval (steps); a checkpoint is also written at the end
    keep: int = 2  # latest checkpoints kept (the best one is kept separately)
    best_metric: str | None = None  # e.g. "accuracy" (max) or "loss" (min); None: by task
    async_checkpoint: bool = True  # write checkpoints in the background
    wandb: Literal["disabled", "offline", "online"] = "disabled"
    wandb_project: str = "ssm"
    progress: Literal["auto", "bar", "lines", "none"] = "auto"  # bar on a TTY, log lines otherwise
    distributed: bool = False  # call jax.distributed.initialize() (multi-host)
    num_devices: int | None = None  # devices of the data mesh (None: all)
    # Exit with code 75 when no step, evaluation batch or checkpoint completes for this long (a wedged XLA
    # CPU runtime sleeps forever); rerunning resumes. None: off.
    hang_timeout_s: float | None = 1800.0
    # Resume a run directory although these fields differ from its recorded config: steps, eval/save/log
    # cadence, eval splits and batches, keep, devices, data root/workers (never the model, data or optimizer).
    allow_resume_changes: bool = False

    def __post_init__(self) -> None:
        _positive("train.steps", self.steps)
        _check(self.hang_timeout_s is None or self.hang_timeout_s > 0, "train.hang_timeout_s",
               "must be positive seconds or None (off)", self.hang_timeout_s)  # fmt: skip
        _check(bool(self.run_dir), "train.run_dir", "must be a directory path", self.run_dir)
        _positive("train.log_every", self.log_every)
        _check(isinstance(self.eval_every, int) and self.eval_every >= 0, "train.eval_every",
               "must be a non-negative integer", self.eval_every)  # fmt: skip
        _check(isinstance(self.save_every, int) and self.save_every >= 0, "train.save_every",
               "must be a non-negative integer", self.save_every)  # fmt: skip
        _positive("train.keep", self.keep)
        for s in self.eval_splits:
            _choice("train.eval_splits", s, ("val", "test", "train"))
        if self.eval_batches is not None:
            _positive("train.eval_batches", self.eval_batches)
        if self.num_devices is not None:
            _positive("train.num_devices", self.num_devices)
        _choice("train.wandb", self.wandb, ("disabled", "offline", "online"))
        _choice("train.progress", self.progress, ("auto", "bar", "lines", "none"))


@dataclass(frozen=True)
class Config:
    """A whole run."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        if self.data.batch_size % self.optim.grad_accum:
            raise ValueError(
                f"data.batch_size ({self.data.batch_size}) must be divisible by optim.grad_accum "
                f"({self.optim.grad_accum}): change --data.batch-size or --optim.grad-accum"
            )
        if self.optim.schedule == "plateau" and (not self.train.eval_every or "val" not in self.train.eval_splits):
            raise ValueError(
                "optim.schedule 'plateau' is stepped by validations: set --train.eval-every N (> 0) with 'val' in "
                "--train.eval-splits, or choose another --optim.schedule"
            )
        if self.data.length_bucket is not None and self.model.bidirectional and not self.model.mask_padding:
            raise ValueError(
                "data.length_bucket with a bidirectional layer needs model.mask_padding (otherwise the backward "
                "direction reads the padding, and cutting it changes the model): pass --model.mask-padding, or "
                "--data.length-bucket None"
            )
        if self.data.length_bucket is not None and self.model.layer == "dss" and self.model.kernel_type != "exp":
            raise ValueError(
                "data.length_bucket changes what DSS-softmax computes (its kernel is normalized over the whole "
                "window, so it depends on the batch's length): pass --model.kernel-type exp or --data.length-bucket None"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _build(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}")
    kw = {}
    for k, v in d.items():
        if isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        kw[k] = v
    return cls(**kw)


def config_from_dict(d: dict[str, Any]) -> Config:
    """Inverse of :meth:`Config.to_dict` (e.g. for the ``config.json`` of a run directory)."""
    return Config(
        model=_build(ModelConfig, d.get("model", {})),
        data=_build(DataConfig, d.get("data", {})),
        optim=_build(OptimConfig, d.get("optim", {})),
        train=_build(TrainConfig, d.get("train", {})),
    )


def replace(cfg: Config, **sections: dict[str, Any]) -> Config:
    """``replace(cfg, model=dict(d_model=8), train=dict(steps=10))``: a copy with fields changed."""
    return dataclasses.replace(
        cfg, **{k: dataclasses.replace(getattr(cfg, k), **v) for k, v in sections.items()}
    )
