"""The worker side of tests/test_presets_train.py's pool: set up as the suite's main process is (before ssm is
imported: single-threaded XLA CPU ops as tests/conftest.py, float64, ssm's jaxtyping annotations checked by
beartype as pyproject's --jaxtyping-packages), then train one preset two steps."""

from __future__ import annotations

import os
import sys


def init(paths: list[str]) -> None:
    sys.path[:0] = [p for p in paths if p not in sys.path]
    flag = "--xla_cpu_multi_thread_eigen=false"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    from jaxtyping import install_import_hook

    install_import_hook(["ssm"], "beartype.beartype")
    import jax

    jax.config.update("jax_enable_x64", True)


def train_preset(name: str) -> dict:
    import test_presets_train

    return test_presets_train._train_preset(name)
