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

import time
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from models.policy import IncrementalPolicy
from models.wire import ParseLimits
from pipelines import progress
from pipelines.options import ScreeningOptions, key_source, validate
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
        key_source(opts), ParseLimits(max_message_bytes=opts.max_message_bytes)
    )
    scored = parsed[SUBMISSIONS] | "Score" >> ScoreUsers(
        model_dir=opts.model,
        policy=IncrementalPolicy(opts.threshold, opts.max_alerts_per_user),
        state_ttl_s=opts.state_ttl_days * 86_400,
        dedupe_window=opts.dedupe_window,
        store_text=not opts.no_store_text,
    )
    dead = (parsed[DEAD_LETTERS], scored[DEAD_LETTERS]) | "MergeDeadLetters" >> beam.Flatten()
    results = {SCORES: scored[SCORES], ALERTS: scored[ALERTS], DEAD_LETTERS: dead}
    if not opts.no_store_text:
        results[WRITINGS] = scored[WRITINGS]
    results | "Write" >> WriteResults(opts.output)
    return results


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

    @property
    def per_second(self) -> float:
        return self.read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def balanced(self) -> bool:
        """Every message read was either scored or dead-lettered."""
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
            + ("read = scored + dead-lettered" if self.balanced
               else "MISMATCH: read != scored + dead-lettered"),
            f"output               {self.output}",
        ]


def _counters(result) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace("earlyrisk"))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + c.committed
    return out


def pipeline_options(argv: list[str] | None = None) -> PipelineOptions:
    """Parsed and validated options, with the runner defaults ``run`` applies."""
    options = PipelineOptions(argv)
    validate(options.view_as(ScreeningOptions))
    std = options.view_as(StandardOptions)
    if std.runner is None:
        # Naming the runner skips the Prism download attempt (offline here).
        std.runner = "DirectRunner"
    if parse_source_uri(options.view_as(ScreeningOptions).input)[0] == "pubsub":
        # Pub/Sub is unbounded: runs until stopped (Ctrl-C, or cancel on the runner).
        std.streaming = True
    return options


def run(argv: list[str] | None = None, show_progress: bool | None = None) -> RunSummary:
    """Validate options, run the pipeline to completion, return its accounting.

    A bounded Kafka read (``--until-caught-up``) commits its offsets only after
    the run finished successfully; a Pub/Sub run streams until stopped.
    """
    options = pipeline_options(argv)
    opts = options.view_as(ScreeningOptions)
    start = time.monotonic()
    with progress.ProgressLine(("read", "scored", "dead_lettered", "alerts"), "scored",
                               enabled=show_progress):
        p = beam.Pipeline(options=options)
        after_success: list = []
        build(p, opts, after_success)
        result = p.run()
        state = result.wait_until_finish()
        if state == PipelineState.DONE:
            for action in after_success:
                action()
    elapsed = time.monotonic() - start
    c = _counters(result)
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
    )
