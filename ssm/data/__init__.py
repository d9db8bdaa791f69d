"""Datasets, by name. Each entry is a module with ``info(cfg)`` and ``load(cfg, split)``
(see :mod:`ssm.data.base`)."""

from types import ModuleType

from ssm.data import aan, bidmc, cifar, digits, fsdd, imdb, mnist, mnist_gen
from ssm.data import listops, pathfinder, validate
from ssm.data.audio import DATASETS as _AUDIO
from ssm.data.informer import DATASETS as _INFORMER
from ssm.data.speech_commands import DATASETS as _SPEECH_COMMANDS
from ssm.data.synthetic import TASKS as _SYNTHETIC
from ssm.data.wikitext import DATASETS as _WIKITEXT
from ssm.data.base import SPLITS, ArraySource, DatasetInfo, split_indices

DATASETS: dict[str, ModuleType] = {
    "digits": digits,
    "mnist": mnist,
    "mnist_gen": mnist_gen,  # pixel-level density model (256-way, inputs shifted right)
    "cifar10": cifar,
    "fsdd": fsdd,
    **_SYNTHETIC,  # copying, selective_copying, adding, delay
    "imdb": imdb,
    "aan": aan,
    **_WIKITEXT,  # wt103, wt2
    **_INFORMER,  # etth1, etth2, ettm1, ettm2, weather, ecl
    "bidmc": bidmc,
    **_SPEECH_COMMANDS,  # sc35, sc10
    **_AUDIO,  # sc09, youtubemix, beethoven
    "listops": listops,  # LRA ListOps (release or scripts/prepare_data.py listops)
    "pathfinder": pathfinder,  # LRA Pathfinder / Path-X (resolution 128)
}
for _name, _module in DATASETS.items():  # every split a registered loader returns is checked
    validate.install(_name, _module)


def get_dataset(name: str) -> ModuleType:
    """The dataset module registered as ``name``; a clear error listing the valid names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"data.name: unknown dataset {name!r}; registered: {', '.join(sorted(DATASETS))} "
            "(pass --data.name NAME)"
        ) from None


__all__ = ["DATASETS", "SPLITS", "ArraySource", "DatasetInfo", "get_dataset", "split_indices"]
