"""Preset registry: ``configs/<group>.py`` defines ``PRESETS: dict[str, tuple[str, Config]]``
(name -> (one-line description, Config)); the preset ``<group>.<name>`` is selected with
``python scripts/train.py --cfg group.name``. Groups are discovered automatically: adding a module
here is enough.
"""

from __future__ import annotations

import importlib
import pkgutil

from ssm.config import Config


def groups() -> list[str]:
    """The preset groups: every module of this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def all_presets() -> dict[str, tuple[str, Config]]:
    """Every preset as ``{"group.name": (description, Config)}``."""
    out: dict[str, tuple[str, Config]] = {}
    for group in groups():
        module = importlib.import_module(f"{__name__}.{group}")
        presets = getattr(module, "PRESETS", None)
        if not isinstance(presets, dict):
            raise TypeError(f"configs/{group}.py must define PRESETS: dict[str, tuple[str, Config]]")
        for name, entry in presets.items():
            desc, cfg = entry
            if not isinstance(cfg, Config):
                raise TypeError(f"preset {group}.{name}: expected (description, Config), got {entry!r}")
            out[f"{group}.{name}"] = (desc, cfg)
    return out


def get_preset(name: str) -> Config:
    """The preset ``group.name``; a ``ValueError`` listing the valid names otherwise."""
    presets = all_presets()
    if name not in presets:
        raise ValueError(
            f"unknown preset {name!r} for --cfg; valid presets:\n  " + "\n  ".join(sorted(presets))
        )
    return presets[name][1]


def describe(name: str) -> str:
    return all_presets()[name][0]
