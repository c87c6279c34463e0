"""Runs the slices of a big bounded run, each in a fresh process.

Peak memory of an in-process Beam run over many consecutive slices grows with
every slice (measured: 972, 1,246, 1,564, 1,783, 2,122, 2,559 MiB for five
slices of 200,000 submissions in one process; see docs/PERFORMANCE.md): what
one pipeline run leaves behind in the process is not all given back to the
system. A process per slice gives all of it back, so the peak is one slice's.

The parent (:func:`run_slices`, called by ``pipelines.screening.run``) plans
the slices, starts one worker per slice in turn (``python -m
pipelines.slice_worker``), shows the running totals the worker reports on a
pipe, adds up its counters and stops at the first failure or Ctrl-C. A
worker does exactly what an in-process slice does (``_run_one``: the
pipeline run, then the state commit, then the source commit) and writes its
counters to a JSON file. State and offsets are carried between slices by the
store, as between separate runs.

Faults: a worker killed by a signal (``EARLYRISK_CRASH_AT``, the OOM killer)
takes the parent down with the same signal, after one line on stderr; the
parent killed (SIGKILL included) takes the worker down with it (same process
group, and ``PR_SET_PDEATHSIG`` on Linux). Either way the store holds the
slices committed before the kill and the next run continues from there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from pipelines import progress

SEEN_ENV = "EARLYRISK_CRASH_SEEN"  # crash points already passed by earlier slices
_PARENT_ENV = "EARLYRISK_SLICE_PARENT"
_ROOT = Path(__file__).resolve().parent.parent


class SliceFailedError(RuntimeError):
    """A slice's worker failed; the message is its one-line reason."""


class SlicesResult:
    def __init__(self) -> None:
        self.counters: Counter = Counter()
        self.run_ids: list[str] = []
        self.slices = 0
        self.interrupted = False


def run_slices(argv: list[str], pieces: list, show_progress: bool | None) -> SlicesResult:
    """Run ``pieces`` one worker process each; the caller shows the progress line."""
    out = SlicesResult()
    seen: dict[str, int] = {}
    base: Counter = Counter()
    for i, piece in enumerate(pieces, 1):
        child = _Worker(argv, piece, seen, i, len(pieces), show_progress)
        try:
            result = child.run(base)
        finally:
            child.cleanup()
        out.slices += 1
        out.counters.update(result["counters"])
        base.update(result["counters"])
        out.run_ids += result["run_ids"]
        seen = result["crash_seen"]
        if result["interrupted"] or child.interrupted:
            out.interrupted = True
            break
    return out


class _Worker:
    def __init__(self, argv: list[str], piece, seen: dict[str, int], index: int, total: int,
                 show_progress: bool | None) -> None:
        self.argv = argv
        self.piece = piece
        self.seen = seen
        self.index = index
        self.total = total
        self.show_progress = show_progress
        self.interrupted = False
        fd, self.result_path = tempfile.mkstemp(prefix="earlyrisk-slice-", suffix=".json")
        os.close(fd)

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.result_path)

    def run(self, base: Counter) -> dict:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, **{SEEN_ENV: json.dumps(self.seen), _PARENT_ENV: str(os.getpid())})
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        job = pickle.dumps({"argv": self.argv, "piece": self.piece, "progress_fd": write_fd,
                            "result": self.result_path, "show_progress": self.show_progress})
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.slice_worker"],
                                stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env, cwd=os.getcwd())
        os.close(write_fd)
        reader = threading.Thread(target=_follow, args=(read_fd, base), daemon=True)
        reader.start()
        try:
            proc.stdin.write(job)
            proc.stdin.close()
            proc.wait()
        except KeyboardInterrupt:
            # Ctrl-C: the terminal sent SIGINT to the worker too (same process
            # group); forward it in case it was sent to this process alone. The
            # worker stops its slice as an in-process run does and reports.
            self.interrupted = True
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            while True:
                try:
                    proc.wait()
                    break
                except KeyboardInterrupt:
                    continue
        reader.join(5)
        code = proc.returncode
        if code < 0:  # killed by a signal: go down the same way
            sig = signal.Signals(-code)
            print(f"earlyrisk: slice {self.index} of {self.total}: its worker process was "
                  f"killed by {sig.name}; the slices before it are committed, run again to "
                  "continue", file=sys.stderr, flush=True)
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            time.sleep(5)
            raise SliceFailedError(f"slice {self.index} killed by {sig.name}")
        try:
            result = json.loads(Path(self.result_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise SliceFailedError(f"slice {self.index} of {self.total}: its worker process "
                                   f"exited with status {code} without a result") from None
        if "error" in result:
            if result.get("usage"):
                from pipelines.options import OptionsError

                raise OptionsError(result["error"])
            raise SliceFailedError(result["error"])
        return result


def _follow(fd: int, base: Counter) -> None:
    """The worker's running totals (JSON lines) on top of the earlier slices' totals."""
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                live = json.loads(line)
                progress.set_counts({k: base.get(k, 0) + live.get(k, 0)
                                     for k in set(base) | set(live)})


def _die_with_parent() -> None:
    """SIGKILL this worker when the parent dies, however it dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    parent = os.environ.get(_PARENT_ENV)
    if parent and os.getppid() != int(parent):  # the parent died before prctl
        os._exit(1)


def _sigint_once(signum, frame) -> None:
    # The first Ctrl-C stops the slice; the parent's forwarded copy and repeats
    # must not interrupt the stop itself (state flush, cancel).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _report(fd: int, stop: threading.Event) -> None:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        while True:
            done = stop.wait(0.5)
            with contextlib.suppress(OSError):
                f.write(json.dumps(progress.snapshot()) + "\n")
                f.flush()
            if done:
                return


def main() -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, _sigint_once)
    job = pickle.loads(sys.stdin.buffer.read())
    import logging

    from pipelines import screening
    from pipelines.options import OptionsError, ScreeningOptions, state_store_path

    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    screening.crash_seen_from_env()
    stop = threading.Event()
    reporter = threading.Thread(target=_report, args=(job["progress_fd"], stop), daemon=True)
    reporter.start()
    result: dict = {"run_ids": [], "interrupted": False}
    try:
        options = screening.pipeline_options(job["argv"])
        opts = options.view_as(ScreeningOptions)
        try:
            result["counters"] = screening._run_one(options, opts, state_store_path(opts),
                                                   job["piece"], result["run_ids"])
        except screening._InterruptedError as e:
            counters = dict(e.counters)
            for key, value in progress.snapshot().items():
                counters[key] = max(counters.get(key, 0), value)
            result.update(counters=counters, interrupted=True)
        except KeyboardInterrupt:
            result.update(counters=progress.snapshot(), interrupted=True)
    except OptionsError as e:
        result.update(error=str(e), usage=True)
    except Exception as e:
        from pipelines.cli import _run_failure

        reason = _run_failure(e)
        if reason is None:
            raise  # a bug: the traceback goes to stderr, the parent reports no result
        result["error"] = reason
    finally:
        stop.set()
        reporter.join(2)
    result["crash_seen"] = dict(screening._CRASH_SEEN)
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
