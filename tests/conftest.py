import os

# XLA's CPU runtime can deadlock when an FFT runs on its Eigen thread pool (see ssm/train/watchdog.py): a wedged
# test would hang the suite until CI's time limit, so tests run CPU ops single-threaded (read at backend start-up).
if "--xla_cpu_multi_thread_eigen=false" not in os.environ.get("XLA_FLAGS", ""):  # xdist workers inherit it
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

# One on-disk compilation cache for the whole run, this process and every process it starts (preset workers,
# trainings in subprocesses): the suite compiles the same tiny programs in many tests and processes, and XLA
# compilation is most of its CPU time (a subset of 34 training tests: 245 s without, 203 s with a cold cache).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="ssm-tests-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402

# Must run before any backend use: 4 fake CPU devices for sharding tests, float64 for equivalence tests.
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_enable_x64", True)

import gc  # noqa: E402
import sys  # noqa: E402

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


# pytest-xdist (README's `-n 2`, pyproject's `--dist loadscope`) sends a module's tests to one worker, to run in order
# as in a single process: its module-scoped fixtures (a trained run, a built model) are built once, and the programs
# its tests share stay compiled. Two exceptions, by node id (the controller that schedules does not import the tests):
# tests that are independent runs of their own go to whichever worker is free, one by one (they balance the run's
# end); and modules that share a session-wide result through the session's temporary directory, which xdist gives
# each worker its own of, go to the same worker (one training instead of two).
XDIST_PER_TEST = ("tests/test_presets_train.py::test_preset_trains_two_steps[",)
XDIST_SAME_WORKER = {"tests/test_notebook.py": "tests/test_inference.py"}  # _inference_helpers.trained_gen_run


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(XDIST_PER_TEST):
                return nodeid
            module = nodeid.split("::", 1)[0]
            return XDIST_SAME_WORKER.get(module, module)

        def _reschedule(self, node) -> None:
            # A worker starts a test only once it holds the next one (pytest's nextitem), so it needs 2 pending tests.
            # xdist's default sends a unit whenever 2 or fewer are pending, so a worker holds its running test and two
            # more: at the end of the run, where the units are single preset trainings of 5-15 s, one worker could run
            # on for two of them after the other had stopped. Here a unit is sent when one test is left (which then
            # waits one controller round trip, milliseconds, before it starts: once per unit).
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return ModuleScheduling(config, log)


def pytest_collection_finish(session):
    # The preset runs go to worker processes as soon as the selection is known, so they overlap the other tests.
    # Under pytest-xdist the suite's workers are the parallelism: each preset test trains in its worker instead.
    mod = sys.modules.get("test_presets_train")
    if mod is not None and "PYTEST_CURRENT_TEST" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
        mod.start_selected(session.items)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    # Each module's compiled programs stay in JAX's caches for the whole session otherwise: over ~700 tests the
    # suite's process grew by GiBs, and CI (2 cores, 24 GiB) then failed to start threads late in the run.
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def quick_compile():
    """The test's programs compiled with XLA's LLVM backend at -O0 (``_train_helpers.quick_compile``)."""
    from _train_helpers import quick_compile

    with quick_compile():
        yield
