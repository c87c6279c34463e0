"""The screening pipeline: submissions in, per-user scores and alerts out.

    ReadSubmissions -> ParseSubmissions -> ScoreUsers -> WriteResults
                           |               |    |     \\
                      dead letters    scores  alerts  writings (+ duplicate dead letters)

Run it with ``earlyrisk run`` (see ``--help``) or from Python::

    from pipelines.screening import run
    summary = run(["--input", "file://data/simulated/test.jsonl.gz"])

Step labels are stable names (``Read``, ``Parse``, ``Score``, ``Write``, ...):
Flink savepoints and Dataflow updates match state by them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from models.wire import ParseLimits
from pipelines import progress, runners
from pipelines.options import (
    OptionsError,
    ScreeningOptions,
    key_source,
    make_screening_policy,
    state_store_path,
    validate,
)
from storage.state_store import StateSpec
from transforms.parse import DEAD_LETTERS, SUBMISSIONS, ParseSubmissions
from transforms.scoring import ALERTS, SCORES, WRITINGS, ScoreUsers
from transforms.sinks import WriteResults
from transforms.sources import FilePiece, ReadSubmissions, parse_source_uri


@dataclass(frozen=True)
class Slice:
    """One pipeline run's share of a bounded input: file pieces or Kafka partition reads."""

    files: list[FilePiece] | None = None
    kafka: list | None = None


def _bounded_input(opts: ScreeningOptions) -> bool:
    """Files, and Kafka read up to the end offsets seen at start (--until-caught-up)."""
    kind = parse_source_uri(opts.input)[0]
    return kind == "file" or (kind == "kafka" and opts.until_caught_up)


def build(p: beam.Pipeline, opts: ScreeningOptions,
          after_success: list | None = None, state_spec: StateSpec | None = None,
          piece: Slice | None = None) -> dict[str, beam.PCollection]:
    """Add the screening stages to ``p``; returns the three result collections.

    ``after_success``, if given, receives callables to run once the pipeline
    has finished successfully (a bounded Kafka read commits its offsets then).
    ``state_spec``: keep per-user state in a store between runs (in-process
    runners); ``piece``: read only this slice of the input.
    """
    source = ReadSubmissions(
        opts.input, kafka_group=opts.kafka_group, kafka_start=opts.kafka_start,
        until_caught_up=opts.until_caught_up, kafka_use_xlang=opts.kafka_use_xlang,
        file_pieces=piece.files if piece is not None else None,
        kafka_reads=piece.kafka if piece is not None else None)
    if after_success is not None:
        after_success.append(source.after_success)
    raw = p | "Read" >> source
    parsed = raw | "Parse" >> ParseSubmissions(
        key_source(opts), ParseLimits(max_message_bytes=opts.max_message_bytes,
                                        max_future_skew_s=opts.max_future_skew_hours * 3600)
    )
    scored = parsed[SUBMISSIONS] | "Score" >> ScoreUsers(
        model_dir=opts.model,
        policy=make_screening_policy(opts),
        state_ttl_s=opts.state_ttl_days * 86_400,
        dedupe_window=opts.dedupe_window,
        store_text=not opts.no_store_text,
        state_spec=state_spec,
        expiry_timers=not _bounded_input(opts),
    )
    dead = (parsed[DEAD_LETTERS], scored[DEAD_LETTERS]) | "MergeDeadLetters" >> beam.Flatten()
    results = {SCORES: scored[SCORES], ALERTS: scored[ALERTS], DEAD_LETTERS: dead}
    if not opts.no_store_text:
        results[WRITINGS] = scored[WRITINGS]
    results | "Write" >> WriteResults(opts.output, bq_method=opts.bq_method,
                                      bq_create_tables=opts.bq_create_tables,
                                      retry_budget_s=opts.sink_retry_seconds)
    return results


def step_labels(p: beam.Pipeline) -> list[str]:
    """Full labels of every step, in graph order (what savepoints match on)."""
    labels: list[str] = []

    class _Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node) -> None:
            if node.full_label:
                labels.append(node.full_label)

        def visit_transform(self, node) -> None:
            labels.append(node.full_label)

    p.visit(_Visitor())
    return labels


@dataclass(frozen=True)
class RunSummary:
    read: int
    scored: int
    dead_lettered: int
    duplicates: int
    users: int
    alerts: int
    elapsed_s: float
    output: str
    dead_letter_reasons: dict[str, int]
    interrupted: bool = False
    slices: int = 1

    @property
    def per_second(self) -> float:
        return self.read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def balanced(self) -> bool:
        """Every message read was either scored or dead-lettered."""
        if self.interrupted:  # stopped mid-bundle: what was read but not written is in flight
            return self.read >= self.scored + self.dead_lettered
        return self.read == self.scored + self.dead_lettered

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letter_reasons.items()))
        return [
            f"submissions read     {self.read:>10,}",
            f"scored               {self.scored:>10,}",
            f"dead-lettered        {self.dead_lettered:>10,}"
            + (f"  ({reasons})" if reasons else ""),
            f"users                {self.users:>10,}",
            f"alerts               {self.alerts:>10,}",
            f"elapsed              {self.elapsed_s:>10.2f} s",
            f"throughput           {self.per_second:>10,.0f} submissions/s",
            "accounting           "
            + ("read = scored + dead-lettered"
               + (" + in flight" if self.interrupted and self.in_flight else "")
               if self.balanced else "MISMATCH: read != scored + dead-lettered"),
            f"output               {self.output}",
        ] + ([f"slices               {self.slices:>10,}  (pipeline runs, state carried in the "
               "store)"] if self.slices > 1 else []) + (
            [f"stopped              interrupted (Ctrl-C); {self.in_flight:,} read but not "
             "yet written (neither acknowledged nor committed: the next run reads them again)"
             if self.in_flight else "stopped              interrupted (Ctrl-C); everything "
             "read was written"] if self.interrupted else [])

    @property
    def in_flight(self) -> int:
        return max(self.read - self.scored - self.dead_lettered, 0)


def _counters(result) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace("earlyrisk"))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    return out


def pipeline_options(argv: list[str] | None = None) -> PipelineOptions:
    """Parsed and validated options, with the runner set up as ``run`` does."""
    options = PipelineOptions(argv)
    validate(options.view_as(ScreeningOptions))
    # Naming the runner also skips Beam's Prism download attempt (offline here).
    runners.configure(options)
    if parse_source_uri(options.view_as(ScreeningOptions).input)[0] == "pubsub":
        # Pub/Sub is unbounded: runs until stopped (Ctrl-C, or cancel on the runner).
        options.view_as(StandardOptions).streaming = True
    return options


@dataclass(frozen=True)
class JobSubmitted:
    """What ``run`` returns for a job it does not wait for (remote, dry run)."""

    runner: str
    state: str
    job_id: str | None
    steps: int
    dry_run: bool

    balanced = True

    def lines(self) -> list[str]:
        what = "translated (dry run, not submitted)" if self.dry_run else "submitted"
        return [
            f"runner               {self.runner}",
            f"job                  {what}",
            f"job id               {self.job_id or '-'}",
            f"state                {self.state}",
            f"steps                {self.steps}",
        ]


def run(argv: list[str] | None = None,
        show_progress: bool | None = None) -> RunSummary | JobSubmitted:
    """Validate options and run the pipeline.

    In-process runners (direct, portable with an embedded job service) run to
    completion and return the accounting; remote runners return once the job
    is submitted (or, with ``--dry_run``, translated). A bounded Kafka read
    (``--until-caught-up``) commits its offsets only after an in-process run
    finished successfully; a Pub/Sub run streams until stopped.
    """
    options = pipeline_options(argv)
    opts = options.view_as(ScreeningOptions)
    runner = runners.runner_name(options)
    local = runners.waits_for_completion(options)
    if not local and opts.output.startswith("duckdb:") and not runners.is_dry_run(options):
        raise OptionsError(
            f"duckdb:// is an embedded store for in-process runs; on {runner} write to a "
            "shared sink such as bigquery://PROJECT/DATASET")
    if not local:
        p = beam.Pipeline(options=options)
        build(p, opts)
        result = p.run()
        job_id = getattr(result, "job_id", None)
        return JobSubmitted(
            runner=runner,
            state=str(getattr(result, "state", "UNKNOWN")),
            job_id=job_id() if callable(job_id) else job_id,
            steps=len(step_labels(p)),
            dry_run=runners.is_dry_run(options),
        )
    state_path = state_store_path(opts)
    model_version = None
    if state_path is not None:
        # The model's version, read once: every slice's state is tied to it.
        model_version = _prepare_state_store(state_path, opts)
    start = time.monotonic()
    counters: Counter = Counter()
    slices = 0
    with progress.ProgressLine(("read", "scored", "dead_lettered", "alerts"), "scored",
                               enabled=show_progress):
        run_ids: list[str] = []
        interrupted = False
        try:
            for piece in _slices(options, opts, state_path):
                counters.update(_run_one(options, opts, state_path, model_version, piece,
                                         run_ids))
                slices += 1
        except _InterruptedError as e:
            counters.update(e.counters)
            slices += 1
            interrupted = True
    users = counters.get("users_new", 0) + counters.get("users_resumed", 0)
    if slices > 1 and state_path is not None:
        users = _users_changed(state_path, run_ids)  # each user once, not once per slice
    elapsed = time.monotonic() - start
    c = dict(counters)
    if interrupted:  # the runner's metrics may be incomplete: take the live counts too
        for key, value in progress.snapshot().items():
            c[key] = max(c.get(key, 0), value)
    reasons = {k.split(".", 2)[2]: v for k, v in c.items() if k.startswith("dead_lettered.")}
    if c.get("duplicates"):
        reasons["duplicate"] = c["duplicates"]
    return RunSummary(
        read=c.get("read", 0),
        scored=c.get("scored", 0),
        dead_lettered=c.get("dead_lettered", 0),
        duplicates=c.get("duplicates", 0),
        users=users,
        alerts=c.get("alerts", 0),
        elapsed_s=elapsed,
        output=opts.output,
        dead_letter_reasons=reasons,
        interrupted=interrupted,
        slices=slices,
    )


class _InterruptedError(Exception):
    """Ctrl-C stopped a run: carries the counters the runner had reported."""

    def __init__(self, counters: dict[str, int]) -> None:
        super().__init__("interrupted")
        self.counters = counters


CRASH_ENV = "EARLYRISK_CRASH_AT"
CRASH_POINTS = ("before_state_commit", "after_state_commit", "after_source_commit")


def crash_point(name: str) -> None:
    """Fault injection for the restart tests: SIGKILL this process at ``name``.

    Set ``EARLYRISK_CRASH_AT=NAME`` (one of :data:`CRASH_POINTS`, optionally
    ``NAME:K`` for the K-th time it is reached, 1-based) in the environment.
    """
    want = os.environ.get(CRASH_ENV)
    if not want:
        return
    point, _, nth = want.partition(":")
    if point != name:
        return
    _CRASH_SEEN[name] = _CRASH_SEEN.get(name, 0) + 1
    if _CRASH_SEEN[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_SEEN: dict[str, int] = {}


def _slices(options: PipelineOptions, opts: ScreeningOptions, state_path: str | None):
    """The input cut into slices (bounded input with a state store), else one whole run."""
    scheme, location = parse_source_uri(opts.input)
    size = opts.slice_size
    if scheme == "kafka" and opts.until_caught_up and state_path is not None:
        from storage.state_store import StateStore
        from transforms.kafka_io import parse_kafka_uri, plan_reads, slice_reads

        bootstrap, topic = parse_kafka_uri(opts.input)
        stored = None
        if opts.kafka_start == "committed":
            store = StateStore(state_path)
            stored = store.offsets(f"kafka:{topic}", opts.kafka_group)
            _close_stores()
        reads = plan_reads(bootstrap, topic, opts.kafka_group, opts.kafka_start, True,
                           stored=stored)
        for cut in (slice_reads(reads, size) if size else [reads]):
            yield Slice(kafka=cut)
        return
    if scheme == "file" and state_path is not None and size:
        from transforms.sources import plan_file_slices

        for files in plan_file_slices(location, size):
            yield Slice(files=files)
        return
    yield None


def _prepare_state_store(path: str, opts: ScreeningOptions) -> str:
    """Open the state store (waiting, as the sinks do, while another process holds it),
    refuse state of another model (OptionsError) and drop what killed runs staged;
    the model's version."""
    from models.portable import PortableModel
    from storage.state_store import ModelMismatchError, StateStore
    from transforms.sinks import duckdb_transient, retry_with_backoff

    store = retry_with_backoff(lambda: StateStore(path), duckdb_transient,
                               opts.sink_retry_seconds, f"opening DuckDB store {path}")
    try:
        version = PortableModel.load(opts.model).version
        store.check_model(version)
        store.discard_staging()
    except ModelMismatchError as e:
        raise OptionsError(str(e)) from None
    finally:
        _close_stores()
    return version


def _stop_streaming(result, spec: StateSpec, cancel_wait_s: float = 5.0) -> None:
    """Ctrl-C on a streaming run: snapshot the state its finished bundles changed,
    cancel the pipeline, and snapshot again what finished meanwhile."""
    import threading

    from storage.state_store import end_run, run_state

    rs = run_state(spec)
    rs.flush()
    # Cancelling waits for the Pub/Sub read's pull (up to 30 s without traffic):
    # wait a little, not for ever.
    stopper = threading.Thread(target=result.cancel, daemon=True)
    stopper.start()
    stopper.join(cancel_wait_s)
    rs.flush()
    end_run(spec.run_id)
    _close_stores()


def _close_stores() -> None:
    # In-process runs share DuckDB connections; close them so that other
    # processes (the review app, `earlyrisk sql`) can open the file at once.
    from storage.duckdb_store import close_all

    close_all()


def _users_changed(state_path: str, run_ids: list[str]) -> int:
    from storage.state_store import StateStore

    try:
        return StateStore(state_path).users_written(run_ids)
    finally:
        _close_stores()


def _run_one(options: PipelineOptions, opts: ScreeningOptions, state_path: str | None,
             model_version: str | None,
             piece: Slice | None, run_ids: list[str]) -> dict[str, int]:
    """One pipeline run (a slice, or the whole input); then its state and offsets commit."""
    from storage.state_store import end_run, run_state

    spec = None
    if state_path is not None:
        spec = StateSpec(path=state_path, run_id=uuid.uuid4().hex,
                         model_version=model_version,
                         ttl_s=opts.state_ttl_days * 86_400,
                         streaming=options.view_as(StandardOptions).streaming,
                         snapshot_every_s=opts.snapshot_seconds)
        run_ids.append(spec.run_id)
    p = beam.Pipeline(options=options)
    after_success: list = []
    results = build(p, opts, after_success, state_spec=spec, piece=piece)
    del results
    result = None
    try:
        result = p.run()
        state = result.wait_until_finish()
    except (KeyboardInterrupt, RuntimeError) as e:  # Ctrl-C: stop, account for the work
        # (the batch runner re-raises a Ctrl-C that lands inside a DoFn as RuntimeError)
        if isinstance(e, RuntimeError) and not str(e).startswith("KeyboardInterrupt"):
            raise
        if result is not None:
            if spec is not None and spec.streaming:
                _stop_streaming(result, spec)
            else:
                with contextlib.suppress(Exception):
                    result.cancel()
        if spec is not None:
            end_run(spec.run_id)
        _close_stores()
        raise _InterruptedError(_counters(result) if result is not None else {}) from None
    if state == PipelineState.DONE:
        if spec is not None:
            rs = run_state(spec)
            rs.flush()
            crash_point("before_state_commit")
            if not spec.streaming:
                offsets = []
                if piece is not None and piece.kafka:
                    offsets = [(f"kafka:{r.topic}", r.group, r.partition, r.stop)
                               for r in piece.kafka]
                rs.store().commit(spec.run_id, spec.model_version, spec.ttl_s, offsets)
            crash_point("after_state_commit")
        for action in after_success:
            action()
        crash_point("after_source_commit")
    if spec is not None:
        end_run(spec.run_id)
    _close_stores()
    return _counters(result)
