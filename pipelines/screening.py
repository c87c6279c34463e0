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
import time
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
    validate,
)
from transforms.parse import DEAD_LETTERS, SUBMISSIONS, ParseSubmissions
from transforms.scoring import ALERTS, SCORES, WRITINGS, ScoreUsers
from transforms.sinks import WriteResults
from transforms.sources import ReadSubmissions, parse_source_uri


def build(p: beam.Pipeline, opts: ScreeningOptions,
          after_success: list | None = None) -> dict[str, beam.PCollection]:
    """Add the screening stages to ``p``; returns the three result collections.

    ``after_success``, if given, receives callables to run once the pipeline
    has finished successfully (a bounded Kafka read commits its offsets then).
    """
    source = ReadSubmissions(
        opts.input, kafka_group=opts.kafka_group, kafka_start=opts.kafka_start,
        until_caught_up=opts.until_caught_up, kafka_use_xlang=opts.kafka_use_xlang)
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
        ] + ([f"stopped              interrupted (Ctrl-C); {self.in_flight:,} read but not "
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
    start = time.monotonic()
    with progress.ProgressLine(("read", "scored", "dead_lettered", "alerts"), "scored",
                               enabled=show_progress):
        p = beam.Pipeline(options=options)
        after_success: list = []
        build(p, opts, after_success)
        result = None
        interrupted = False
        try:
            result = p.run()
            state = result.wait_until_finish()
        except (KeyboardInterrupt, RuntimeError) as e:  # Ctrl-C: stop, account for the work
            # (the batch runner re-raises a Ctrl-C that lands inside a DoFn as RuntimeError)
            if isinstance(e, RuntimeError) and not str(e).startswith("KeyboardInterrupt"):
                raise
            interrupted = True
            state = PipelineState.CANCELLED
            if result is not None:
                with contextlib.suppress(Exception):
                    result.cancel()
        if state == PipelineState.DONE:
            for action in after_success:
                action()
    elapsed = time.monotonic() - start
    # In-process runs share DuckDB connections; close them so that other
    # processes (the review app, `earlyrisk sql`) can open the file at once.
    from storage.duckdb_store import close_all

    close_all()
    c = _counters(result) if result is not None else {}
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
        users=c.get("users_new", 0),
        alerts=c.get("alerts", 0),
        elapsed_s=elapsed,
        output=opts.output,
        dead_letter_reasons=reasons,
        interrupted=interrupted,
    )
