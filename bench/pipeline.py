"""Pipeline benchmark: ``earlyrisk run`` against Beam's own ceiling, same run.

Both pipelines read the same synthetic wire-format file on the FnApiRunner
(Beam's DirectRunner in batch):

* ``earlyrisk``: the screening pipeline as ``earlyrisk run`` builds it
  (read, parse, per-user scoring, alerts, writing scores, alerts, writings
  and dead letters into a fresh DuckDB file);
* ``ceiling``: the same shape up to the stateful step (read, parse, batch by
  user as ``ScoreUsers`` does) into a stateful DoFn that only reads and
  writes a tiny state value and emits nothing: what Beam itself costs here.

Each is run ``repeat`` times alternately; the best wall time counts. CPU time
of this process is reported beside wall time since the machine may be shared.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from bench import corpus
from models.records import Submission
from pipelines.screening import run as run_screening
from transforms import beam_tuning
from transforms.parse import SUBMISSIONS, KeySource, ParseSubmissions
from transforms.scoring import BatchByUser
from transforms.sources import ReadSubmissions


class _EmptyStatefulDoFn(beam.DoFn):
    STATE = ReadModifyWriteStateSpec("s", BytesCoder())

    def setup(self) -> None:
        # The same SDK tuning the scoring DoFn installs: a ceiling without it
        # would be Beam's state-cache sizing, not Beam.
        beam_tuning.install()

    def process(self, element, state=beam.DoFn.StateParam(STATE)):
        state.read()
        state.write(b"x")
        return iter(())


def run_ceiling(input_path: str) -> None:
    options = PipelineOptions(["--runner", "DirectRunner"])
    with beam.Pipeline(options=options) as p:
        subs = (p | "Read" >> ReadSubmissions(f"file://{input_path}")
                | "Parse" >> ParseSubmissions(KeySource()))[SUBMISSIONS]
        (subs
         | "BatchByUser" >> beam.ParDo(BatchByUser())
         .with_output_types(tuple[str, list[Submission]])
         | "Empty" >> beam.ParDo(_EmptyStatefulDoFn()))


def run_earlyrisk(input_path: str, output_dir: str, i: int, scored: list[int]) -> None:
    summary = run_screening(
        ["--input", f"file://{input_path}",
         "--output", f"duckdb://{output_dir}/run{i}.duckdb",
         "--raw-user-ids", "--runner", "direct"],
        show_progress=False)
    scored.append(summary.scored)


def _timed(fn, *args) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0


def run(quick: bool = False, n_submissions: int | None = None, n_users: int | None = None,
        kind: str = "mix", repeat: int | None = None) -> dict:
    n = n_submissions or (5_000 if quick else 40_000)
    users = n_users or max(1, n // 10)
    repeat = repeat or (1 if quick else 2)
    with tempfile.TemporaryDirectory(prefix="earlyrisk-bench-") as tmp:
        path = str(corpus.synthetic_stream(Path(tmp) / "stream.jsonl", n, users, kind))
        # Warm-up, untimed: the first pipeline run in a process imports most of
        # Beam's runner machinery, which would be charged to whichever ran first.
        warm = str(corpus.synthetic_stream(Path(tmp) / "warm.jsonl", 200, 20, kind))
        run_ceiling(warm)
        run_earlyrisk(warm, tmp, -1, [])
        ceiling, screening, scored = [], [], []
        for i in range(repeat):
            ceiling.append(_timed(run_ceiling, path))
            screening.append(_timed(run_earlyrisk, path, tmp, i, scored))
            if scored[-1] != n:
                raise RuntimeError(f"earlyrisk run scored {scored[-1]} of {n} submissions")
    cw, cc = min(ceiling)
    sw, sc = min(screening)
    return {
        "submissions": n,
        "users": users,
        "kind": kind,
        "runner": "FnApiRunner (DirectRunner, batch)",
        "ceiling_wall_s": round(cw, 2),
        "ceiling_cpu_s": round(cc, 2),
        "ceiling_per_s": round(n / cw),
        "earlyrisk_wall_s": round(sw, 2),
        "earlyrisk_cpu_s": round(sc, 2),
        "earlyrisk_per_s": round(n / sw),
        "share_of_ceiling": round(cw / sw, 3),
    }
