"""scripts/host_memory.py: the training scripts re-execute themselves once with the ``SSM_MALLOC`` mode's glibc
tunables (default ``hugepages``: ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``; ``keep``; ``glibc``), unless told not to
or where glibc cannot."""

import os
import subprocess
import sys

import pytest

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
sys.path.insert(0, SCRIPTS)
import host_memory  # noqa: E402


@pytest.fixture
def linux_glibc(monkeypatch):
    monkeypatch.setattr(host_memory.sys, "platform", "linux")
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("glibc", "2.36"))


def test_env_adds_the_mode_tunables_once(linux_glibc):
    # the default mode, hugepages
    assert host_memory.tuned_env({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    # the user's other tunables are kept
    env = host_memory.tuned_env({"GLIBC_TUNABLES": "glibc.malloc.check=3"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.check=3:glibc.malloc.hugetlb=1"
    keep = "glibc.malloc.mmap_max=0:glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=68719476736:glibc.malloc.hugetlb=1"
    assert host_memory.tuned_env({"SSM_MALLOC": "keep"})["GLIBC_TUNABLES"] == keep
    assert host_memory.tuned_env({"SSM_MALLOC": "hugepages"})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    assert host_memory.tuned_env({"SSM_MALLOC": "glibc"}) is None
    assert host_memory.tuned_env({"SSM_NO_HUGETLB_MALLOC": "1"}) is None  # the earlier switch
    assert host_memory.tuned_env({"SSM_NO_HUGETLB_MALLOC": "0"})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    # any of the four already given (the user's choice, or after the re-execution) leaves the environment alone
    for given in ("glibc.malloc.hugetlb=0", "glibc.malloc.check=3:glibc.malloc.arena_max=4",
                  "glibc.malloc.mmap_max=65536", "glibc.malloc.trim_threshold=131072", env["GLIBC_TUNABLES"], keep):
        for mode in ("keep", "hugepages"):
            assert host_memory.tuned_env({"GLIBC_TUNABLES": given, "SSM_MALLOC": mode}) is None, given
    # a tunable whose name only contains one of them is not one of them
    assert host_memory.tuned_env({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1"}) is not None
    with pytest.raises(SystemExit, match="SSM_MALLOC='huge' is not a host-memory mode: use one of keep, hugepages, glibc"):
        host_memory.tuned_env({"SSM_MALLOC": "huge"})


@pytest.mark.parametrize("libc", [("glibc", "2.34"), ("", ""), ("musl", "1.2")])
def test_env_unchanged_without_a_glibc_that_has_the_tunable(monkeypatch, libc):
    monkeypatch.setattr(host_memory.sys, "platform", "linux")
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: libc)
    assert host_memory.tuned_env({}) is None
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(host_memory.sys, "platform", "darwin")
    assert host_memory.tuned_env({}) is None


def test_a_script_reexecutes_itself_once_with_its_arguments(tmp_path):
    """A real process: the script calls the function first thing, as scripts/train.py does; it runs once more with the
    tunables set (where this platform qualifies), with its interpreter options and arguments, and only once."""
    script = tmp_path / "prog.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {SCRIPTS!r})\n"
        "print('start', flush=True)\n"
        "import host_memory\n"
        "host_memory.reexec_with_tuned_malloc()\n"
        "print('tunables', os.environ.get('GLIBC_TUNABLES', '-'), 'args', sys.argv[1:], 'O', sys.flags.optimize)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_memory.MODE, host_memory.OPT_OUT_OLD)}
    out = subprocess.run([sys.executable, "-O", str(script), "a", "b c"], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    expected = host_memory.tuned_env(env)
    if expected is None:  # not Linux with glibc >= 2.35: nothing to do, one run
        assert out == ["start", "tunables - args ['a', 'b c'] O 1"]
    else:
        assert out == ["start", "start", f"tunables {expected['GLIBC_TUNABLES']} args ['a', 'b c'] O 1"]
    out = subprocess.run([sys.executable, str(script)], env={**env, host_memory.MODE: "glibc"}, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["start", "tunables - args [] O 0"]
