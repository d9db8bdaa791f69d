"""Typed options of the SSM layers: one frozen dataclass per layer, holding that layer's own options
with the defaults of its constructor (``ssm/layers/<name>.py``).

A layer config builds its layer (:meth:`LayerConfig.build`); the model config holds one of them
(``ModelConfig.layer``), chosen on the command line as a subcommand, e.g.
``model.layer:s4d --model.layer.init lin``. Adding a layer: write its config class here (``name``,
``layer_class`` and its options) and append it to :data:`LAYER_CONFIGS`; nothing else lists fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal


def _flag(path: str) -> str:
    return "--" + path.replace("_", "-")


@dataclass(frozen=True)
class LayerConfig:
    """The options of one SSM layer family; subclasses add their fields (all with defaults)."""

    name: ClassVar[str]  # the subcommand (``model.layer:<name>``) and the name in config.json
    layer_class: ClassVar[str]  # the class exported by :mod:`ssm.layers`
    # Constructor keywords spelled differently from the config field (config field -> keyword).
    keywords: ClassVar[dict[str, str]] = {}
    # Options whose ``None`` means "the dataset's sequence length" (filled in by :meth:`build`).
    from_seq_len: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        d_state = getattr(self, "d_state", 1)
        if not (isinstance(d_state, int) and not isinstance(d_state, bool) and d_state > 0):
            raise ValueError(f"model.layer.d_state must be a positive integer (got {d_state!r}): "
                             f"set it with {_flag('model.layer.d_state')} N")  # fmt: skip
        lo, hi = getattr(self, "dt_min", None), getattr(self, "dt_max", None)
        if lo is not None and hi is not None and not 0 < lo <= hi:
            raise ValueError(f"model.layer.dt_min must satisfy 0 < dt_min <= dt_max={hi} (got {lo!r}): "
                             f"set it with {_flag('model.layer.dt_min')} VALUE")  # fmt: skip

    def __str__(self) -> str:
        return self.name

    def options(self) -> dict[str, Any]:
        """The config's fields by name (what ``--model.layer.*`` sets)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def kwargs(self, seq_len: int | None = None) -> dict[str, Any]:
        """The layer constructor's keyword arguments (``d_model`` and ``key`` aside)."""
        out = {}
        for k, v in self.options().items():
            if v is None and k in self.from_seq_len:
                if seq_len is None:
                    continue  # the constructor's own default
                v = seq_len
            out[self.keywords.get(k, k)] = v
        return out

    def cls(self) -> type:
        import ssm.layers

        return getattr(ssm.layers, self.layer_class)

    def build(self, d_model: int, *, key: Any, seq_len: int | None = None) -> Any:
        """The layer for ``d_model`` channels; ``seq_len`` fills the options that default to the data's length."""
        return self.cls()(d_model=d_model, key=key, **self.kwargs(seq_len))


@dataclass(frozen=True)
class S4Config(LayerConfig):
    """S4 (DPLR, Gu et al. 2022): HiPPO measure, low-rank correction, bilinear discretization."""

    name: ClassVar[str] = "s4"
    layer_class: ClassVar[str] = "S4"
    from_seq_len: ClassVar[tuple[str, ...]] = ("l_max",)

    d_state: int = 64  # N: state size (N/2 conjugate pairs)
    measure: str = "legs"  # HiPPO measure: legs, legt, lagt, fout
    rank: int | None = None  # low-rank correction rank (None: 2 for legt, else 1)
    n_ssm: int = 1  # independent (A, B) copies shared across channels; must divide d_model
    l_max: int | None = None  # kernel length (None: the dataset's sequence length)
    disc: Literal["bilinear"] = "bilinear"  # DPLR has only the bilinear (Cauchy/Woodbury) form
    bidirectional: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    b_clip: float | None = 2.0  # clip of the imaginary part of the eigenvalues' B projection (None: off)
    block: int | None = None  # Cauchy kernel frequencies per block (memory/speed only; None: chosen from H*M)
    # "cauchy": per-frequency Cauchy sums (float32 error ~1e-6 to 1e-5); "vandermonde": the same kernel from FFTs of
    # Vandermonde sequences (about the same cost; float32 error 2-7x the Cauchy form's, ssm.kernels.dplr_kernel_vandermonde)
    kernel_form: Literal["cauchy", "vandermonde"] = "cauchy"


@dataclass(frozen=True)
class S4DConfig(LayerConfig):
    """S4D (diagonal, Gu et al. 2022b)."""

    name: ClassVar[str] = "s4d"
    layer_class: ClassVar[str] = "S4D"

    d_state: int = 64  # N: state size (N/2 conjugate pairs)
    init: str = "legs"  # diagonal init: legs, inv, lin, legs-ptd, ...
    disc: Literal["zoh", "bilinear"] = "zoh"
    bidirectional: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1


@dataclass(frozen=True)
class DSSConfig(LayerConfig):
    """DSS (Gupta et al. 2022): diagonal state spaces with a softmax- or exp-normalized kernel."""

    name: ClassVar[str] = "dss"
    layer_class: ClassVar[str] = "DSS"

    d_state: int = 64  # N
    kernel_type: Literal["softmax", "exp"] = "softmax"
    sep_dt_re_im: bool = True  # separate Δ for the real and imaginary parts
    bidirectional: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1


@dataclass(frozen=True)
class S5Config(LayerConfig):
    """S5 (Smith et al. 2023): one MIMO diagonal SSM, parallel scan."""

    name: ClassVar[str] = "s5"
    layer_class: ClassVar[str] = "S5"
    keywords: ClassVar[dict[str, str]] = {"c_init": "C_init"}

    d_state: int = 64  # P: latent size
    blocks: int = 1  # J: diagonal HiPPO blocks
    init: str = "hippo"
    conj_sym: bool = True  # store half of the conjugate eigenvalue pairs
    disc: Literal["zoh", "bilinear"] = "zoh"
    c_init: str = "trunc_standard_normal"  # trunc_standard_normal, lecun_normal, complex_normal
    bidirectional: bool = False
    clip_eigs: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1


@dataclass(frozen=True)
class HOPEConfig(LayerConfig):
    """HOPE (Yu et al. 2024): SSM parameterized by its Hankel operator's Markov parameters."""

    name: ClassVar[str] = "hope"
    layer_class: ClassVar[str] = "HOPE"

    d_state: int = 128  # n: Markov parameters
    init: str = "randn"
    init_scale: float = 0.25
    decay_exp: float = 0.0
    dt_min: float = 1e-4
    dt_max: float = 1e-1
    train_dt: bool = True
    bidirectional: bool = False


# Every layer config, by subcommand name (the order of the --help listing).
LAYER_CONFIGS: tuple[type[LayerConfig], ...] = (S4Config, S4DConfig, DSSConfig, S5Config, HOPEConfig)


def layer_config_class(name: str) -> type[LayerConfig]:
    for c in LAYER_CONFIGS:
        if c.name == name:
            return c
    raise ValueError(f"model.layer: unknown layer {name!r}; choose one of {[c.name for c in LAYER_CONFIGS]} "
                     "(on the command line: model.layer:NAME)")  # fmt: skip
