"""Retrying a write while its store is unavailable: Beam-free, for every engine.

The Beam sinks (:mod:`transforms.sinks`) and the native Flink job's sink
(:mod:`flinkjob.functions`) retry transient store failures (a DuckDB file
locked by another process, a failing disk) with the same backoff and give up
with the same error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class SinkUnavailableError(RuntimeError):
    """The store stayed unavailable for the whole retry budget."""


def retry_with_backoff(action: Callable[[], T], is_transient: Callable[[BaseException], bool],
                       budget_s: float, what: str, first_delay_s: float = 0.2,
                       max_delay_s: float = 10.0,
                       sleep: Callable[[float], None] = time.sleep) -> T:
    """``action()``, retried on transient errors with doubling delays.

    Gives up with :class:`SinkUnavailableError` once ``budget_s`` has passed;
    any other error is raised at once.
    """
    start = time.monotonic()
    delay = first_delay_s
    attempt = 1
    while True:
        try:
            return action()
        except Exception as e:
            if not is_transient(e):
                raise
            waited = time.monotonic() - start
            if waited + delay > budget_s:
                raise SinkUnavailableError(
                    f"{what}: still failing after {attempt} attempts over {waited:.1f} s: "
                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
            log.warning("%s failed (attempt %d, retrying in %.1f s): %s", what, attempt,
                        delay, str(e).splitlines()[0] if str(e) else type(e).__name__)
            sleep(delay)
            delay = min(delay * 2, max_delay_s)
            attempt += 1


_TRANSIENT_IO = ("lock", "no space left", "input/output error", "resource temporarily",
                 "device or resource busy", "disk quota", "interrupted")


def duckdb_transient(e: BaseException) -> bool:
    """Errors that say the store is unavailable for now, not that it is wrong.

    DuckDB raises IOException both for a file locked by another process or a
    failed write (disk full, I/O error), which may pass and are retried, and
    for a path that can never work (a directory, no permission), which fails
    at once. (Out of memory is handled below this, where DuckDB is written:
    storage.duckdb_store.retry_out_of_memory grows the limit and writes again.)
    """
    import errno

    import duckdb

    if isinstance(e, OSError) and not isinstance(e, duckdb.Error):
        return e.errno in (errno.EAGAIN, errno.EBUSY, errno.EIO, errno.ENOSPC, errno.EDQUOT,
                           errno.EINTR)
    if isinstance(e, duckdb.IOException):
        text = str(e).lower()
        return any(t in text for t in _TRANSIENT_IO)
    return False
