"""Flink benchmark: the native Flink job beside ``earlyrisk run`` (Beam), same run.

Both read the same synthetic wire-format file (the ``mix`` stream of
:mod:`bench.corpus`) and write the same tables into a fresh DuckDB file:

* ``beam``: ``earlyrisk run`` on the FnApiRunner (DirectRunner, batch), in
  this process, after an untimed warm-up (as :mod:`bench.pipeline` does);
* ``flink``: ``earlyrisk run --engine flink``'s job (:mod:`flinkjob.job`) on a
  local MiniCluster in thread mode, a fresh ``.venv-flink`` process per run,
  timed from outside: the wall time includes the JVM, the MiniCluster and the
  job's start. Its **fixed start cost** is the wall time of the same job on a
  20-submission stream; the steady rate is the stream divided by the wall
  time minus that start cost.

Skipped, with the reason, when the Flink venv (``make flink``) is absent.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from bench import corpus
from bench.pipeline import run_earlyrisk

ROOT = Path(__file__).resolve().parent.parent
FLINK_VENV = Path(os.environ.get("EARLYRISK_FLINK_VENV", ROOT / ".venv-flink"))


def _flink(input_path: str, output: str) -> tuple[float, int]:
    """One Flink job run in a fresh process: (wall seconds, submissions scored)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore::FutureWarning")
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(FLINK_VENV / "bin" / "python"), "-m", "flinkjob.job", "--input",
         f"file://{input_path}", "--output", f"duckdb://{output}", "--raw-user-ids"],
        env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"Flink job failed ({done.returncode}): {done.stderr[-2000:]}")
    scored = re.search(r"^scored\s+([\d,]+)", done.stdout, re.M)
    return wall, int(scored.group(1).replace(",", "")) if scored else -1


def run(quick: bool = False, n_submissions: int | None = None, kind: str = "mix") -> dict:
    if not (FLINK_VENV / "bin" / "python").exists():
        return {"skipped": f"no Flink venv at {FLINK_VENV} (run 'make flink')"}
    n = n_submissions or (3_000 if quick else 20_000)
    users = max(1, n // 10)
    with tempfile.TemporaryDirectory(prefix="earlyrisk-bench-flink-") as tmp:
        path = str(corpus.synthetic_stream(Path(tmp) / "stream.jsonl", n, users, kind))
        tiny = str(corpus.synthetic_stream(Path(tmp) / "tiny.jsonl", 20, 5, kind))
        warm = str(corpus.synthetic_stream(Path(tmp) / "warm.jsonl", 200, 20, kind))
        run_earlyrisk(warm, tmp, -1, [])  # Beam's imports, untimed
        scored: list[int] = []
        b0 = time.perf_counter()
        run_earlyrisk(path, tmp, 0, scored)
        beam_wall = time.perf_counter() - b0
        start_cost, _ = _flink(tiny, f"{tmp}/tiny.duckdb")
        flink_wall, flink_scored = _flink(path, f"{tmp}/flink.duckdb")
    if flink_scored != n or scored[-1] != n:
        raise RuntimeError(f"scored {flink_scored} (Flink) and {scored[-1]} (Beam) of {n}")
    steady = flink_wall - start_cost
    return {
        "submissions": n,
        "users": users,
        "kind": kind,
        "beam_runner": "FnApiRunner (DirectRunner, batch)",
        "flink_runner": "PyFlink 2.3 MiniCluster, thread mode, parallelism 1",
        "beam_wall_s": round(beam_wall, 2),
        "beam_per_s": round(n / beam_wall),
        "flink_wall_s": round(flink_wall, 2),
        "flink_per_s": round(n / flink_wall),
        "flink_start_s": round(start_cost, 2),
        "flink_steady_per_s": round(n / steady) if steady > 0 else None,
    }


def lines(fl: dict) -> list[str]:
    """The section of the bench table."""
    if "skipped" in fl:
        return ["== flink", f"skipped: {fl['skipped']}"]
    return [
        f"== flink vs beam ({fl['submissions']:,} {fl['kind']} submissions, "
        f"{fl['users']:,} users, same run)",
        f"beam  earlyrisk run                  {fl['beam_per_s']:>8,} subs/s  "
        f"wall {fl['beam_wall_s']} s ({fl['beam_runner']})",
        f"flink earlyrisk run --engine flink   {fl['flink_per_s']:>8,} subs/s  "
        f"wall {fl['flink_wall_s']} s ({fl['flink_runner']})",
        f"flink fixed start cost               {fl['flink_start_s']:>8} s  "
        f"(20 submissions, fresh process); steady {fl['flink_steady_per_s'] or '-'} subs/s",
    ]
