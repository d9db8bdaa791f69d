import os

# XLA's CPU runtime can deadlock when an FFT runs on its Eigen thread pool (see ssm/train/watchdog.py): a wedged
# test would hang the suite until CI's time limit, so tests run CPU ops single-threaded (read at backend start-up).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import jax  # noqa: E402

# Must run before any backend use: 4 fake CPU devices for sharding tests, float64 for equivalence tests.
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="needs --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
