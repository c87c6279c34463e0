"""Live progress on the terminal for in-process runs.

DoFns call :func:`tick`; when the pipeline runs in this process (the
DirectRunner), a :class:`ProgressLine` thread prints the running totals once
a second on stderr. On a remote runner the ticks happen on workers and
nothing is shown here: Beam's own metrics and the runner's UI take over.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict

_counts: defaultdict[str, int] = defaultdict(int)


def tick(name: str, n: int = 1) -> None:
    # A plain dict update: cheap, and atomic enough under the GIL for a display.
    _counts[name] += n


def snapshot() -> dict[str, int]:
    return dict(_counts)


def reset() -> None:
    _counts.clear()


class ProgressLine:
    """Context manager printing ``read N | scored N | ... | N/s`` on stderr."""

    def __init__(self, keys: tuple[str, ...], rate_key: str, enabled: bool | None = None,
                 stream=None) -> None:
        self._keys = keys
        self._rate_key = rate_key
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def _line(self) -> str:
        counts = snapshot()
        elapsed = max(time.monotonic() - self._start, 1e-9)
        parts = [f"{k} {counts.get(k, 0):,}" for k in self._keys]
        rate = counts.get(self._rate_key, 0) / elapsed
        return " | ".join(parts) + f" | {rate:,.0f}/s | {elapsed:,.0f}s"

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._stream.write("\r" + self._line() + "   ")
            self._stream.flush()

    def __enter__(self) -> ProgressLine:
        reset()
        self._start = time.monotonic()
        if self._enabled:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._stream.write("\r" + self._line() + "\n")
            self._stream.flush()
