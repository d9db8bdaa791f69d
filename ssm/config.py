"""The configuration schema of a training run.

A run is fully described by one frozen :class:`Config`: ``model``, ``data``, ``optim`` and ``train``
sections. Presets live in ``configs/<group>.py``; the command line overrides single fields
(``--model.d-model 512``). Every section validates itself on construction and names the offending
field in its error, e.g. ``model.d_model must be a positive integer (got 0): pass --model.d-model N``.

Typed sections: the SSM layer's options are one dataclass per layer (:mod:`ssm.layer_configs`),
held as ``model.layer`` and chosen on the command line as a subcommand (``model.layer:s4d
--model.layer.init lin``); a dataset's options are its own dataclass (``Options`` in
``ssm/data/<name>.py``), held as ``data.options`` and set as ``--data.<option>``. Both sections read
through to their options (``cfg.model.d_state``, ``cfg.data.seq_len``).

The flat format of earlier versions (``ModelConfig(layer="s4d", init="lin", d_state=8)``,
``DataConfig(name="mnist", permute=True)``, and the ``config.json`` of run directories written
before 2026-12-06) is still accepted: layer and dataset options given as keywords are moved into the
typed options, where an option the layer or dataset does not have is refused by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union

import tyro

from ssm.data.options import DatasetOptions, UntypedOptions, options_class
from ssm.layer_configs import LAYER_CONFIGS, LayerConfig, S4Config, S4DConfig, layer_config_class

# config.json schema: 1 = flat model/data fields (no "schema" key), 2 = typed layer and dataset options,
# 3 = the model section names its backbone ("backbone"; schema 2 is the residual one).
SCHEMA = 3
# The state size of the flat schema, shared by every layer (the typed configs use each layer's own default).
_FLAT_D_STATE = 64

# The SSM layer, one subcommand per layer config (``model.layer:s4``, ``model.layer:s4d``, ...).
LayerOptions = Union[tuple(Annotated[c, tyro.conf.subcommand(c.name, description=c.__doc__)] for c in LAYER_CONFIGS)]


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


def _set_fields(obj: Any, kw: dict[str, Any]) -> None:
    """Assign every dataclass field of the frozen ``obj`` from ``kw`` (popped) or its default."""
    for f in dataclasses.fields(obj):
        if f.name in kw:
            v = kw.pop(f.name)
        elif f.default is not dataclasses.MISSING:
            v = f.default
        else:
            v = f.default_factory()  # type: ignore[misc]
        object.__setattr__(obj, f.name, v)


def _split_extra(cls: type, kw: dict[str, Any]) -> dict[str, Any]:
    """Pop from ``kw`` the keywords that are not fields of ``cls`` (flat-format options)."""
    own = {f.name for f in dataclasses.fields(cls)}
    return {k: kw.pop(k) for k in list(kw) if k not in own}


@dataclass(frozen=True, init=False)
class ModelConfig:
    """The residual backbone (ssm.model.SequenceModel) and its SSM layer."""

    name: ClassVar[str] = "residual"  # the subcommand (model:residual) and config.json's "backbone"

    # ModelConfig(layer=S4Config(measure="fout"), d_model=128); the flat form ModelConfig(layer="s4",
    # measure="fout", d_model=128) builds the same config (None options meaning "the layer's default", and
    # d_state 64 for every layer, as in the flat schema). The other backbones have their own config classes
    # (SaShiMiConfig, AdaptiveLMConfig, PooledConfig below); Config.model is their union (model:NAME).

    layer: LayerOptions = S4DConfig()  # the SSM layer and its options (model.layer:NAME)
    d_model: int = 64  # H: channels of the residual stream
    n_layers: int = 4  # number of residual blocks
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

    def __init__(self, **kw: Any) -> None:
        extra = _split_extra(ModelConfig, kw)
        layer = kw.get("layer", S4DConfig())
        if isinstance(layer, str):
            layer = layer_config_class(layer)()
            if extra.get("d_state") is None:
                extra["d_state"] = _FLAT_D_STATE
        if isinstance(layer, LayerConfig):
            given = {k: v for k, v in extra.items() if v is not None}
            names = [f.name for f in dataclasses.fields(layer)]
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise ValueError(
                    f"model: unknown field(s) {unknown} for ModelConfig: neither a model field nor an option of the "
                    f"{layer.name!r} layer ({type(layer).__name__}: {', '.join(names)}); unset them or choose "
                    "another layer (model.layer:NAME)"
                )
            layer = dataclasses.replace(layer, **given) if given else layer
        kw["layer"] = layer
        _set_fields(self, kw)
        self.__post_init__()

    def __getattr__(self, name: str) -> Any:
        # Read-through to the layer's options (cfg.model.d_state, cfg.model.bidirectional).
        if name.startswith("__") or name == "layer":
            raise AttributeError(name)
        layer = self.__dict__.get("layer")
        try:
            return getattr(layer, name)
        except AttributeError:
            raise AttributeError(f"ModelConfig has no field {name!r} and the {layer} layer no such option") from None

    def __post_init__(self) -> None:
        _check(isinstance(self.layer, LayerConfig), "model.layer",
               f"must be a layer config ({', '.join(c.__name__ for c in LAYER_CONFIGS)}) or a layer name",
               self.layer)  # fmt: skip
        _positive("model.d_model", self.d_model)
        _positive("model.n_layers", self.n_layers)
        _choice("model.norm", self.norm, ("layer", "batch", "none"))
        _choice("model.activation", self.activation, ("gelu", "relu", "identity"))
        _choice("model.output", self.output, ("glu", "linear", "none"))
        _choice("model.pool", self.pool, ("mean", "last", "none"))
        _choice("model.precision", self.precision, ("float32", "mixed", "auto"))
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)", self.dropout)
        _check(0.0 <= self.bn_momentum < 1.0, "model.bn_momentum", "must be in [0, 1)", self.bn_momentum)

    def layer_kwargs(self, seq_len: int | None = None) -> dict[str, Any]:
        """The keyword options given to the layer constructor (with ``d_state``)."""
        return self.layer.kwargs(seq_len)


def _check_layer(path: str, layer: Any) -> None:
    _check(isinstance(layer, LayerConfig), path,
           f"must be a layer config ({', '.join(c.__name__ for c in LAYER_CONFIGS)})", layer)  # fmt: skip


def _fraction(path: str, value: Any) -> None:
    _check(isinstance(value, (int, float)) and 0.0 <= value < 1.0, path, "must be in [0, 1)", value)


@dataclass(frozen=True)
class SaShiMiConfig:
    """The SaShiMi U-Net (ssm.nn.SaShiMiModel: embedding -> SaShiMi -> linear head), an autoregressive model of
    quantised audio. Defaults: the official SC09 model (state-spaces/s4 configs/model/sashimi.yaml,
    configs/experiment/audio/sashimi-sc09.yaml)."""

    name: ClassVar[str] = "sashimi"  # the subcommand (model:sashimi) and config.json's "backbone"

    layer: LayerOptions = S4Config(d_state=64, n_ssm=1)  # the SSM layer (l_max unset: each level its own length)
    d_model: int = 64  # H of the outer level; level i has H * expand**i channels
    n_layers: int = 8  # (SSM + FFN) residual layers in the centre and in each up stage
    pool: tuple[int, ...] = (4, 4)  # pooling factor per level; the input length must be a multiple of their product
    expand: int = 2  # channel expansion per level
    ff: int = 2  # FFN expansion (0: no FFN sub-layers)
    dropout: float = 0.0  # inside the sub-layers
    dropres: float = 0.0  # on each residual branch
    norm: Literal["scalar", "layer", "none"] = "scalar"  # the official TransposedLN(scalar=True)
    prenorm: bool = True
    weight_norm: bool = True  # on the DownPool/UpPool linears
    # As ModelConfig.precision: "mixed" runs the net under ssm.precision.mixed (bfloat16 matmuls and residual
    # stream; SSM layers, norms and the softmax in float32); "auto": mixed on GPU/TPU, float32 on CPU.
    precision: Literal["float32", "mixed", "auto"] = "float32"

    def __post_init__(self) -> None:
        _check_layer("model.layer", self.layer)
        _positive("model.d_model", self.d_model)
        _positive("model.n_layers", self.n_layers)
        _check(len(self.pool) > 0 and all(isinstance(p, int) and p > 0 for p in self.pool), "model.pool",
               "must be positive pooling factors, e.g. --model.pool 4 4", self.pool)  # fmt: skip
        _positive("model.expand", self.expand)
        _check(isinstance(self.ff, int) and self.ff >= 0, "model.ff", "must be a non-negative integer", self.ff)
        _fraction("model.dropout", self.dropout)
        _fraction("model.dropres", self.dropres)
        _choice("model.norm", self.norm, ("scalar", "layer", "none"))
        _choice("model.precision", self.precision, ("float32", "mixed", "auto"))

    def build(self, info: Any, *, key: Any) -> Any:
        """``ssm.nn.SaShiMiModel`` for the dataset ``info`` (token inputs, ``info.d_input`` classes)."""
        from ssm.nn import SaShiMiModel

        if not info.tokens or info.task not in ("generation", "lm"):
            raise ValueError(f"model:sashimi is an autoregressive model of token (quantised) sequences; the dataset's "
                             f"task is {info.task!r}: choose another backbone (model:residual)")  # fmt: skip
        kw = self.layer.kwargs(None)
        return SaShiMiModel(
            info.d_input, self.d_model, key=key, n_layers=self.n_layers, pool=self.pool, expand=self.expand,
            ff=self.ff, l_max=info.seq_len if "l_max" in self.layer.from_seq_len else None,
            layer_cls=self.layer.cls(), layer_kwargs=kw, dropout=self.dropout, dropres=self.dropres,
            norm=self.norm, prenorm=self.prenorm, weight_norm=self.weight_norm,
        )  # fmt: skip


@dataclass(frozen=True)
class AdaptiveLMConfig:
    """The WikiText-103 language model of S4 (ssm.nn.AdaptiveLM): adaptive input embedding -> n_layers x [SSM, SSM,
    FFN] pre-norm residual blocks -> LayerNorm -> adaptive log-softmax. Defaults: state-spaces/s4
    configs/experiment/lm/s4-wt103.yaml, configs/model/layer/s4s4ff.yaml, configs/pipeline/wt103.yaml."""

    name: ClassVar[str] = "adaptive_lm"

    layer: LayerOptions = S4Config(d_state=64, n_ssm=1)  # the SSM layer of both SSM sub-layers (GLU output)
    d_model: int = 1024
    n_layers: int = 16  # [SSM, SSM, FFN] blocks
    ff: int = 4  # FFN expansion
    # Ends of the shortlist and tail clusters; cutoffs at or above the dataset's vocabulary are dropped.
    cutoffs: tuple[int, ...] = (19997, 39997, 199997)
    div_val: int = 4  # cluster i embeds in d_model / div_val**i dimensions
    dropout: float = 0.25
    dropemb: float = 0.25  # on the adaptive embedding's output
    dropsoft: float = 0.25  # on the adaptive softmax's input
    tie_weights: bool = True  # softmax tables = embedding tables
    tie_projs: bool = True  # softmax tail projections = embedding's
    init_scale: float = 0.5
    bias_scale: float = 1.0
    prenorm: bool = True
    # As ModelConfig.precision: "mixed" runs the net under ssm.precision.mixed (bfloat16 matmuls and residual
    # stream; SSM layers, norms and the softmax in float32); "auto": mixed on GPU/TPU, float32 on CPU.
    precision: Literal["float32", "mixed", "auto"] = "float32"

    def __post_init__(self) -> None:
        _check_layer("model.layer", self.layer)
        _positive("model.d_model", self.d_model)
        _positive("model.n_layers", self.n_layers)
        _positive("model.ff", self.ff)
        _positive("model.div_val", self.div_val)
        for k in ("dropout", "dropemb", "dropsoft"):
            _fraction(f"model.{k}", getattr(self, k))
        _choice("model.precision", self.precision, ("float32", "mixed", "auto"))

    def build(self, info: Any, *, key: Any) -> Any:
        """``ssm.nn.AdaptiveLM`` for the dataset ``info`` (a token LM, vocabulary ``info.d_input``)."""
        from ssm.nn import AdaptiveLM, ffn_sublayer, ssm_sublayer

        if not info.tokens or info.task != "lm" or info.d_input != info.d_output:
            raise ValueError(f"model:adaptive_lm is a language model (token inputs, task 'lm'); the dataset's task is "
                             f"{info.task!r}: choose another backbone (model:residual)")  # fmt: skip
        cutoffs = tuple(c for c in self.cutoffs if c < info.d_input)
        if cutoffs != self.cutoffs:
            warnings.warn(f"model.cutoffs {list(self.cutoffs)}: the vocabulary has {info.d_input} tokens, so the "
                          f"clusters end at {list(cutoffs)}", stacklevel=2)  # fmt: skip
        ssm = ssm_sublayer(self.layer.cls(), final_act="glu", dropout=self.dropout, **self.layer.kwargs(info.seq_len))
        return AdaptiveLM(
            info.d_input, self.d_model, self.n_layers, l_max=info.seq_len,
            pattern=[ssm, ssm, ffn_sublayer(self.ff, "gelu", self.dropout, None)], cutoffs=cutoffs,
            div_val=self.div_val, dropout=self.dropout, dropemb=self.dropemb, dropsoft=self.dropsoft,
            tie_weights=self.tie_weights, tie_projs=self.tie_projs, init_scale=self.init_scale,
            bias_scale=self.bias_scale, prenorm=self.prenorm, key=key,
        )  # fmt: skip


@dataclass(frozen=True)
class PooledConfig:
    """S4Torch's classifier (TariqAHassan/S4Torch s4torch/model.py S4Model): Linear encoder -> ssm.nn.PooledBackbone
    (n_layers residual SSM blocks with average pooling between them) -> mean over time -> Linear decoder."""

    name: ClassVar[str] = "pooled"

    layer: LayerOptions = S4Config(d_state=64)
    d_model: int = 128
    n_layers: int = 4  # S4Torch's n_blocks
    pool_kernel: int | None = 2  # S4Torch --pooling avg_K (None: no pooling)
    dropout: float = 0.0
    norm: Literal["layer", "scalar", "none"] = "layer"
    norm_strategy: Literal["post", "pre"] = "post"
    # As ModelConfig.precision: "mixed" runs the net under ssm.precision.mixed (bfloat16 matmuls and residual
    # stream; SSM layers, norms and the softmax in float32); "auto": mixed on GPU/TPU, float32 on CPU.
    precision: Literal["float32", "mixed", "auto"] = "float32"

    def __post_init__(self) -> None:
        _check_layer("model.layer", self.layer)
        _positive("model.d_model", self.d_model)
        _positive("model.n_layers", self.n_layers)
        if self.pool_kernel is not None:
            _positive("model.pool_kernel", self.pool_kernel)
        _fraction("model.dropout", self.dropout)
        _choice("model.norm_strategy", self.norm_strategy, ("post", "pre"))
        _choice("model.precision", self.precision, ("float32", "mixed", "auto"))

    def build(self, info: Any, *, key: Any) -> Any:
        from ssm.backbones import PooledClassifier

        if info.task != "classification":
            raise ValueError(f"model:pooled is a sequence classifier; the dataset's task is {info.task!r}: choose "
                             "another backbone (model:residual)")  # fmt: skip
        return PooledClassifier(self, info, key=key)


# The backbone, one subcommand per config (model:residual, model:sashimi, ...). ModelConfig (the residual
# SequenceModel) is the default, and the backbone of every config.json that records none. Adding a backbone: its
# config class (``name``, ``layer``, ``d_model``, ``n_layers``, ``build(info, *, key)``) appended here.
BACKBONE_CONFIGS: tuple[type, ...] = (ModelConfig, SaShiMiConfig, AdaptiveLMConfig, PooledConfig)
ModelOptions = Union[tuple(Annotated[c, tyro.conf.subcommand(c.name, description=(c.__doc__ or "").split(". ")[0])]
                           for c in BACKBONE_CONFIGS)]  # fmt: skip


def backbone_config_class(name: str) -> type:
    """The backbone config class named ``name`` (``model:NAME``, config.json's ``"backbone"``)."""
    for c in BACKBONE_CONFIGS:
        if c.name == name:
            return c
    raise ValueError(f"unknown backbone {name!r}; choose one of {[c.name for c in BACKBONE_CONFIGS]} (model:NAME)")


@dataclass(frozen=True, init=False)
class DataConfig:
    """The dataset, its options (--data.<option>, the dataset's own) and the input pipeline."""

    # DataConfig(name="mnist", options=mnist.Options(permute=True)); the flat form DataConfig(name="mnist",
    # permute=True) builds the same config. An option the dataset does not have is refused with its name.

    name: str = "digits"  # registered dataset name
    root: str = field(default_factory=_default_root)  # data directory ($DATA_PATH, else ./data)
    batch_size: int = 32  # global training batch (over all devices and hosts)
    eval_batch_size: int = 64  # global evaluation batch
    seed: int = 0  # shuffling seed
    num_workers: int = 0  # Grain worker processes (0: read in the main process)
    # Group training batches by true length and cut each to its longest example rounded up to a multiple
    # of this many steps (padded token tasks; one compiled step per distinct length). None: full padding.
    length_bucket: int | None = None
    # The dataset's own options (--data.<option>; the class is the dataset's ``Options``).
    options: Annotated[DatasetOptions, tyro.conf.arg(name="")] = DatasetOptions()

    def __init__(self, **kw: Any) -> None:
        extra = _split_extra(DataConfig, kw)
        name = kw.get("name", "digits")
        cls = options_class(name)
        options = kw.get("options")
        if options is None or type(options) is DatasetOptions:
            options = cls()
        elif not isinstance(options, cls):
            raise ValueError(f"data.options: dataset {name!r} takes {cls.__name__} options, got "
                             f"{type(options).__name__} (another dataset's?)")  # fmt: skip
        given = {k: v for k, v in extra.items() if v is not None}
        if given and isinstance(options, UntypedOptions):
            options = UntypedOptions(items=tuple(sorted({**dict(options.items), **given}.items())))
        elif given:
            names = [f.name for f in dataclasses.fields(options)]
            for k in sorted(given):
                if k not in names:
                    raise ValueError(f"data.{k}: the {name!r} dataset has no option {k!r} (its options: "
                                     f"{', '.join(names) or 'none'}): remove {_flag('data.' + k)}")  # fmt: skip
            options = dataclasses.replace(options, **given)
        kw["options"] = options
        _set_fields(self, kw)
        self.__post_init__()

    def __getattr__(self, name: str) -> Any:
        # Read-through to the dataset's options (cfg.seq_len in the loaders).
        if name.startswith("__") or name == "options":
            raise AttributeError(name)
        options = self.__dict__.get("options")
        try:
            return getattr(options, name)
        except AttributeError:
            raise AttributeError(f"DataConfig has no field {name!r} and dataset {self.__dict__.get('name')!r} "
                                 "no such option") from None  # fmt: skip

    def __post_init__(self) -> None:
        _check(bool(self.name), "data.name", "must name a registered dataset", self.name)
        _positive("data.batch_size", self.batch_size)
        _positive("data.eval_batch_size", self.eval_batch_size)
        _check(isinstance(self.num_workers, int) and self.num_workers >= 0, "data.num_workers",
               "must be a non-negative integer", self.num_workers)  # fmt: skip
        if self.length_bucket is not None:
            _positive("data.length_bucket", self.length_bucket)


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

    model: ModelOptions = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

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
        layer = self.model.layer
        if self.data.length_bucket is not None and getattr(layer, "bidirectional", False) and not self.model.mask_padding:
            raise ValueError(
                "data.length_bucket with a bidirectional layer needs model.mask_padding (otherwise the backward "
                "direction reads the padding, and cutting it changes the model): pass --model.mask-padding, or "
                "--data.length-bucket None"
            )
        if self.data.length_bucket is not None and getattr(layer, "kernel_type", "exp") != "exp":
            raise ValueError(
                "data.length_bucket changes what DSS-softmax computes (its kernel is normalized over the whole "
                "window, so it depends on the batch's length): pass --model.layer.kernel-type exp or "
                "--data.length-bucket None"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"]["layer"] = {"name": self.model.layer.name, **self.model.layer.options()}
        d["model"]["backbone"] = self.model.name
        d["data"]["options"] = self.data.options.to_dict()
        d["schema"] = SCHEMA
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples of the dataclasses."""
    return {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
            for k, v in d.items()}  # fmt: skip


def _build(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}")
    return cls(**_tuples(d))


def _model_from_dict(d: dict[str, Any]) -> Any:
    d = dict(d)
    cls = backbone_config_class(d.pop("backbone", ModelConfig.name))
    layer = dict(d.pop("layer", {"name": S4DConfig.name}))
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}")
    return cls(layer=_build(layer_config_class(layer.pop("name")), layer), **_tuples(d))


def _data_from_dict(d: dict[str, Any]) -> DataConfig:
    d = dict(d)
    options = d.pop("options", {})
    unknown = set(d) - {f.name for f in dataclasses.fields(DataConfig)}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for DataConfig")
    cls = options_class(d.get("name", "digits"))
    if cls is UntypedOptions:
        return DataConfig(**_tuples(d), **_tuples(options))
    return DataConfig(**_tuples(d), options=_build(cls, options))


def _flat_data(d: dict[str, Any], where: str) -> DataConfig:
    """A schema-1 data section: options the dataset does not have had no effect then; they are dropped
    with a warning (a non-``None`` one) instead of refused, so that old run directories still load."""
    d = dict(d)
    cls = options_class(d.get("name", "digits"))
    if cls is not UntypedOptions:
        keep = {f.name for f in dataclasses.fields(DataConfig)} | {f.name for f in dataclasses.fields(cls)}
        for k in sorted(set(d) - keep):
            v = d.pop(k)
            if v is not None:
                warnings.warn(f"{where}: data.{k}={v!r} is not an option of the {d.get('name')!r} dataset and had no "
                              "effect; dropped", stacklevel=3)  # fmt: skip
    return DataConfig(**_tuples(d))


def config_from_dict(d: dict[str, Any], where: str = "config") -> Config:
    """Inverse of :meth:`Config.to_dict` (e.g. for the ``config.json`` of a run directory). A dict of
    the flat schema 1 (no ``"schema"`` key: run directories written before 2026-12-06) is migrated."""
    schema = d.get("schema", 1)
    if schema == 1:
        model = ModelConfig(**_tuples(d.get("model", {})))
        data = _flat_data(d.get("data", {}), where)
    elif schema in (2, SCHEMA):
        model = _model_from_dict(d.get("model", {}))
        data = _data_from_dict(d.get("data", {}))
    else:
        raise ValueError(f"{where}: config schema {schema!r} is newer than this version of ssm reads "
                         f"(schema {SCHEMA}): update ssm")  # fmt: skip
    unknown = set(d) - {"model", "data", "optim", "train", "schema"}
    if unknown:
        raise ValueError(f"{where}: unknown section(s) {sorted(unknown)}")
    return Config(
        model=model,
        data=data,
        optim=_build(OptimConfig, d.get("optim", {})),
        train=_build(TrainConfig, d.get("train", {})),
    )


def replace(cfg: Config, **sections: dict[str, Any]) -> Config:
    """``replace(cfg, model=dict(d_model=8), train=dict(steps=10))``: a copy with fields changed (layer and
    dataset options too: ``model=dict(init="lin")``, ``data=dict(seq_len=64)``)."""
    return dataclasses.replace(
        cfg, **{k: dataclasses.replace(getattr(cfg, k), **v) for k, v in sections.items()}
    )
