"""The trainer's log filters: an asyncio "Future exception was never retrieved" record is dropped when its
exception is a full or unwritable run directory (reported by the trainer's one-line error, exit 5) or was raised
in Orbax's own code (a skipped checkpoint, already named in a CheckpointWarning), and kept for any other
exception."""

import errno
import logging

from ssm.train import checkpoint


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.getLogger("asyncio").makeRecord(
        "asyncio", logging.ERROR, __file__, 1, "Future exception was never retrieved\nfuture: <Future finished>",
        None, (type(exc), exc, None),
    )


def test_unread_full_disk_future_is_dropped_and_other_failures_are_kept():
    checkpoint._silence_library_noise()
    log = logging.getLogger("asyncio")
    assert not log.filter(_record(OSError(errno.ENOSPC, "No space left on device")))
    assert not log.filter(_record(ValueError("RESOURCE_EXHAUSTED: Error writing local file \"/r/x\" [os_error_code='28']")))
    assert log.filter(_record(OSError(errno.ENOENT, "No such file or directory")))
    assert log.filter(_record(RuntimeError("something else")))
    # a record without an exception (asyncio's other reports) passes through untouched
    plain = log.makeRecord("asyncio", logging.ERROR, __file__, 1, "Task exception was never retrieved", None, None)
    assert log.filter(plain)
    absl = logging.getLogger("absl")
    assert absl.filter(absl.makeRecord("absl", logging.WARNING, __file__, 1, "an ordinary warning", None, None))


def _raised_in(filename: str) -> BaseException:
    """A ValueError whose traceback has a frame of code compiled from ``filename``."""
    namespace: dict = {}
    exec(compile("def read():\n    raise ValueError('Requested shape: (16,) is not compatible')\n", filename, "exec"),
         namespace)
    try:
        namespace["read"]()
    except ValueError as e:
        return e
    raise AssertionError("read() did not raise")


def test_unread_future_of_an_orbax_read_is_dropped_and_others_are_kept():
    checkpoint._silence_library_noise()
    log = logging.getLogger("asyncio")
    msg = "_GatheringFuture exception was never retrieved\nfuture: <_GatheringFuture finished exception=ValueError()>"

    def rec(exc):
        return log.makeRecord("asyncio", logging.ERROR, __file__, 1, msg, None, (type(exc), exc, exc.__traceback__))

    assert not log.filter(rec(_raised_in("/site-packages/orbax/checkpoint/_src/serialization/serialization.py")))
    assert log.filter(rec(_raised_in("/site-packages/mylib/reader.py")))
    assert log.filter(rec(ValueError("never raised, no traceback")))
