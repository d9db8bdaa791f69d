"""Typed dataset options: each dataset declares its own frozen dataclass ``Options`` (a subclass of
:class:`DatasetOptions`, defaults visible in ``--help``); :class:`ssm.config.DataConfig` holds one as
``data.options`` and reads through to it (``cfg.seq_len``). An option a dataset does not declare is
refused by construction (``DataConfig(name="mnist", seq_len=8)`` names the option and the dataset).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import tyro


@dataclass(frozen=True)
class DatasetOptions:
    """The options of a dataset (none here; each dataset subclasses this)."""

    def __post_init__(self) -> None:
        # Checks of options that several datasets share, named as on the command line.
        seq_len = getattr(self, "seq_len", None)
        if seq_len is not None and not (isinstance(seq_len, int) and not isinstance(seq_len, bool) and seq_len > 0):
            raise ValueError(f"data.seq_len must be a positive integer (got {seq_len!r}): set it with --data.seq-len N")
        vf = getattr(self, "val_fraction", None)
        if vf is not None and not 0.0 <= vf < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1) (got {vf!r}): set it with --data.val-fraction VALUE")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class UntypedOptions(DatasetOptions):
    """Options of a dataset module that declares no ``Options`` class (e.g. a test's toy dataset): any
    option is accepted and an unset one reads as ``None`` (the behaviour of the flat config)."""

    items: tyro.conf.Suppress[tuple[tuple[str, Any], ...]] = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return dict(self.items).get(name)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.items)


def with_defaults(base: type, dataset: str, **defaults: Any) -> type:
    """A subclass of the options class ``base`` whose defaults are ``defaults`` (datasets that share a
    loader but not its defaults, e.g. each WikiText's window length); the help shows the real values."""
    fields = [(k, base.__dataclass_fields__[k].type, dataclasses.field(default=v)) for k, v in defaults.items()]
    cls = dataclasses.make_dataclass(f"{dataset}_options", fields, bases=(base,), frozen=True)
    cls.__doc__ = f"Options of the {dataset!r} dataset."
    cls.__module__ = base.__module__
    return cls


def options_class(name: str) -> type[DatasetOptions]:
    """The options class of the registered dataset ``name`` (:class:`UntypedOptions` when it declares none
    or is not registered)."""
    from ssm.data import DATASETS

    module = DATASETS.get(name)
    cls = getattr(module, "Options", None) if module is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, DatasetOptions) else UntypedOptions
