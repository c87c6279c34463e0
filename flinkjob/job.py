"""The screening job on Apache Flink's own runtime (PyFlink DataStream API).

    Read -> Parse -> key by user -> ScoreUser -> key by table -> WriteTable
              \\__ dead letters (side output) __________/

The same Beam-free core as the Beam job (:mod:`models`): parsing, pseudonyms,
the incremental scorer, dedupe, decision policy and records; per-user state is
the Beam job's compact ``UserState`` bytes in Flink's keyed ``ValueState``,
with an event-time expiry timer. Every operator has a stable uid (``UIDS``):
savepoints map state by them, so they must never change.

Run it locally (a MiniCluster inside this process)::

    earlyrisk run --engine flink --input file://data/simulated/test.jsonl.gz

or submit it to a cluster with ``flink run -py flinkjob/job.py -- ...`` (see
deploy/flink/README.md). It runs under the Flink virtualenv (.venv-flink).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `flink run -py flinkjob/job.py` puts only flinkjob/ there
    sys.path.insert(0, str(ROOT))

from models.engine import DEFAULT_STATE_TTL_S  # noqa: E402
from models.scorer import DEFAULT_DEDUPE_WINDOW  # noqa: E402

KEY_ENV = "EARLYRISK_PSEUDONYM_KEY"

# Stable operator uids (savepoint compatibility): append, never rename.
UIDS = {
    "read": "earlyrisk-read",
    "read_lines": "earlyrisk-read-lines",
    "parse": "earlyrisk-parse",
    "event_time": "earlyrisk-event-time",
    "score": "earlyrisk-score-user",
    "write": "earlyrisk-write",
    "summary": "earlyrisk-summary",
}


class UsageError(ValueError):
    """Bad arguments: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flinkjob.job", description="The earlyrisk screening job on Flink.")
    p.add_argument("--input", required=True,
                   help="file://PATH.jsonl[.gz] (a glob works) or kafka://HOST:PORT/TOPIC")
    p.add_argument("--output", default="duckdb://earlyrisk.duckdb",
                   help="duckdb://PATH (local runs) or bigquery://PROJECT/DATASET")
    p.add_argument("--bq-create-tables", action="store_true",
                   help="with bigquery://: create the dataset and missing tables first")
    p.add_argument("--model", default=None, help="portable model directory (default: bundled)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--policy", default="incremental")
    p.add_argument("--max-alerts-per-user", type=int, default=1)
    p.add_argument("--state-ttl-days", type=float, default=DEFAULT_STATE_TTL_S / 86_400)
    p.add_argument("--dedupe-window", type=int, default=DEFAULT_DEDUPE_WINDOW)
    p.add_argument("--max-message-bytes", type=int, default=1_000_000)
    p.add_argument("--max-future-skew-hours", type=float, default=24.0)
    p.add_argument("--sink-retry-seconds", type=float, default=300.0)
    p.add_argument("--no-store-text", action="store_true")
    p.add_argument("--raw-user-ids", action="store_true")
    p.add_argument("--pseudonym-key-file", default=None,
                   help=f"key file, used when ${KEY_ENV} is unset")
    p.add_argument("--kafka-group", default="earlyrisk")
    p.add_argument("--kafka-start", default="committed",
                   choices=("earliest", "latest", "committed"))
    p.add_argument("--watermark-lag-hours", type=float, default=24.0,
                   help="kafka:// only: event-time watermark lag behind the latest writing "
                        "(drives the expiry timers; default 24)")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--checkpoint-dir", default=None,
                   help="enable checkpoints into this directory (file:// or a path)")
    p.add_argument("--checkpoint-interval-ms", type=int, default=10_000)
    p.add_argument("--sink-batch", type=int, default=5_000,
                   help="rows per store write (default 5000)")
    p.add_argument("--sink-flush-ms", type=int, default=1_000,
                   help="longest a row waits before it is written (default 1000 ms)")
    p.add_argument("--flink-conf", action="append", default=[], metavar="KEY=VALUE",
                   help="any Flink configuration option (repeatable)")
    p.add_argument("--connector-dir", default=None,
                   help="folder with the Kafka connector jars (default: "
                        "<venv>/connectors, put there by deploy/flink/install.sh)")
    p.add_argument("--no-wait", action="store_true",
                   help="submit and return (cluster runs); default: wait and print a summary")
    return p


def _model_policy(opts):
    from models.policy import policy_from_options

    try:
        return policy_from_options(opts.policy, opts.threshold, opts.max_alerts_per_user)
    except ValueError as e:
        raise UsageError(f"--policy: {e}") from None


def _key_source(opts):
    from models.wire import KeySource

    if opts.raw_user_ids:
        return KeySource()
    if os.environ.get(KEY_ENV):
        if len(os.environ[KEY_ENV].encode()) < 16:
            raise UsageError(f"${KEY_ENV} must be at least 16 bytes")
        return KeySource(env_var=KEY_ENV)
    if not opts.pseudonym_key_file:
        raise UsageError(f"set ${KEY_ENV}, pass --pseudonym-key-file, or opt out with "
                         "--raw-user-ids")
    path = Path(opts.pseudonym_key_file)
    if not path.is_file():
        raise UsageError(f"pseudonymisation key file {path} does not exist")
    return KeySource(env_var=KEY_ENV, key_file=str(path.resolve()))


def _input(uri: str) -> tuple[str, object]:
    """("file", [paths]) or ("kafka", (bootstrap, topic))."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        pattern = (parsed.netloc + parsed.path) if parsed.scheme == "file" else uri
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise UsageError(f"no file matches {pattern!r}")
        return "file", paths
    if parsed.scheme == "kafka":
        topic = parsed.path.strip("/")
        if not parsed.netloc or not topic or "/" in topic:
            raise UsageError(f"{uri!r}: expected kafka://HOST:PORT/TOPIC")
        return "kafka", (parsed.netloc, topic)
    raise UsageError(f"{uri!r}: unsupported source scheme {parsed.scheme!r} "
                     "(the Flink job reads file:// and kafka://)")


def _bundle() -> str:
    """A folder holding the job's Python packages, for the workers.

    ``add_python_file`` puts the folder itself on the workers' path: it must
    contain ``models/`` (putting ``models/`` itself there would let
    ``models/tokenize.py`` shadow the standard library).
    """
    out = Path(tempfile.mkdtemp(prefix="earlyrisk-flink-"))
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("models", "storage", "flinkjob"):
        shutil.copytree(ROOT / pkg, out / pkg, ignore=skip)
    return str(out)


def _model(model_dir: str | None) -> dict[str, bytes]:
    from flinkjob.functions import model_files
    from models.portable import ModelFormatError

    if model_dir is not None and not Path(model_dir).is_dir():
        raise UsageError(f"--model {model_dir}: not a directory")
    try:
        return model_files(model_dir)
    except ModelFormatError as e:
        raise UsageError(f"--model: {e}") from None


def _connector_jars(opts) -> list[str]:
    d = Path(opts.connector_dir) if opts.connector_dir else Path(sys.prefix) / "connectors"
    jars = sorted(d.glob("*.jar"))
    if not any(j.name.startswith("flink-connector-kafka") for j in jars):
        raise UsageError(f"no Kafka connector jars in {d} (run deploy/flink/install.sh, or "
                         "pass --connector-dir)")
    return [j.resolve().as_uri() for j in jars]


def build(env, opts, model: dict[str, bytes]):
    """Add the screening operators to ``env``; returns the summary stream.

    The summary stream carries ``(table, rows written)`` after every store
    write and ``("_users_new", n)`` for new users.
    """
    from pyflink.common import Duration, Types, WatermarkStrategy
    from pyflink.common.watermark_strategy import TimestampAssigner

    from flinkjob.functions import (
        PARSE_DEAD_LETTERS,
        KafkaPayload,
        Parse,
        ReadLines,
        ScoreUser,
        WriteTable,
        shard,
    )
    from models.wire import ParseLimits

    kind, where = _input(opts.input)
    if kind == "file":
        raw = (env.from_collection(where, type_info=Types.STRING()).name("Read").uid(UIDS["read"])
               .flat_map(ReadLines()).name("ReadLines").uid(UIDS["read_lines"]))
    else:
        from pyflink.common.serialization import ByteArraySchema
        from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource

        bootstrap, topic = where
        if opts.kafka_start == "earliest":
            start = KafkaOffsetsInitializer.earliest()
        elif opts.kafka_start == "latest":
            start = KafkaOffsetsInitializer.latest()
        else:
            # The group's committed offsets, else earliest. PyFlink names the
            # reset strategy by its shaded class (flink-sql-connector-kafka);
            # the plain connector jars carry the unshaded one.
            from pyflink.java_gateway import get_gateway

            jvm = get_gateway().jvm
            start = KafkaOffsetsInitializer(
                jvm.org.apache.flink.connector.kafka.source.enumerator.initializer
                .OffsetsInitializer.committedOffsets(
                    jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy.EARLIEST))
        source = (KafkaSource.builder().set_bootstrap_servers(bootstrap).set_topics(topic)
                  .set_group_id(opts.kafka_group).set_starting_offsets(start)
                  .set_value_only_deserializer(ByteArraySchema())
                  .set_property("commit.offsets.on.checkpoint", "true")
                  .set_property("session.timeout.ms", "6000")
                  .set_property("partition.discovery.interval.ms", "10000")
                  .build())
        raw = (env.from_source(source, WatermarkStrategy.no_watermarks(), "Read")
               .uid(UIDS["read"])
               .map(KafkaPayload(topic), output_type=Types.PICKLED_BYTE_ARRAY())
               .name("ReadLines").uid(UIDS["read_lines"]))
    parsed = raw.process(Parse(_key_source(opts), ParseLimits(
        max_message_bytes=opts.max_message_bytes,
        max_future_skew_s=opts.max_future_skew_hours * 3600))).name("Parse").uid(UIDS["parse"])
    subs = parsed
    if kind == "kafka":
        class _EventTime(TimestampAssigner):
            def extract_timestamp(self, value, record_timestamp: int) -> int:
                return int(value.created_utc * 1000)

        # with_idleness must come first: PyFlink's with_idleness returns a new
        # strategy that forgets a Python timestamp assigner set before it (the
        # watermark would then follow the Kafka record times, i.e. now).
        strategy = (WatermarkStrategy
                    .for_bounded_out_of_orderness(
                        Duration.of_millis(int(opts.watermark_lag_hours * 3_600_000)))
                    .with_idleness(Duration.of_seconds(60))
                    .with_timestamp_assigner(_EventTime()))
        subs = (parsed.assign_timestamps_and_watermarks(strategy)
                .name("EventTime").uid(UIDS["event_time"]))
    scored = (subs.key_by(lambda s: s.user_id, key_type=Types.STRING())
              .process(ScoreUser(model, _model_policy(opts), opts.state_ttl_days * 86_400,
                                 opts.dedupe_window, 8, not opts.no_store_text))
              .name("Score").uid(UIDS["score"]))
    rows = scored.union(parsed.get_side_output(PARSE_DEAD_LETTERS))
    shards = opts.parallelism
    return (rows.key_by(lambda batch: shard(batch, shards), key_type=Types.INT())
            .process(WriteTable(opts.output, opts.sink_batch, opts.sink_flush_ms,
                                opts.sink_retry_seconds),
                     output_type=Types.TUPLE([Types.STRING(), Types.LONG()]))
            .name("Write").uid(UIDS["write"]))


def environment(opts, bundle: str, jars: list[str]):
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    conf.set_string("python.execution-mode", "thread")  # ~20x faster than process mode here
    conf.set_string("python.executable", sys.executable)
    # Thread mode embeds CPython in the JVM: it must be told where the venv's
    # packages (pemja, pyflink, numpy, duckdb) are.
    conf.set_string("python.pythonpath", sysconfig.get_paths()["purelib"])
    if opts.checkpoint_dir:
        d = opts.checkpoint_dir if "://" in opts.checkpoint_dir else \
            Path(opts.checkpoint_dir).resolve().as_uri()
        conf.set_string("execution.checkpointing.dir", d)
        conf.set_string("execution.checkpointing.interval", f"{opts.checkpoint_interval_ms} ms")
        conf.set_string("execution.checkpointing.externalized-checkpoint-retention",
                        "RETAIN_ON_CANCELLATION")
    for item in opts.flink_conf:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--flink-conf {item!r}: expected KEY=VALUE")
        conf.set_string(key.strip(), value.strip())
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(opts.parallelism)
    env.add_python_file(bundle)
    if jars:
        env.add_jars(*jars)
    return env


def _prepare_output(opts) -> None:
    from storage.uris import SinkURIError, parse_sink_uri

    try:
        scheme, location = parse_sink_uri(opts.output)
    except SinkURIError as e:
        raise UsageError(str(e)) from None
    if scheme == "bigquery" and opts.bq_create_tables:
        from storage.bigquery_store import ensure_tables, parse_bigquery_uri

        ensure_tables(parse_bigquery_uri(location))


def summary_lines(counts: dict[str, int], elapsed_s: float, output: str) -> list[str]:
    scored, dead = counts.get("scores", 0), counts.get("dead_letters", 0)
    read = scored + dead
    return [
        f"submissions read     {read:>10,}",
        f"scored               {scored:>10,}",
        f"dead-lettered        {dead:>10,}",
        f"users                {counts.get('_users_new', 0):>10,}",
        f"alerts               {counts.get('alerts', 0):>10,}",
        f"elapsed              {elapsed_s:>10.2f} s",
        f"throughput           {read / elapsed_s if elapsed_s > 0 else 0:>10,.0f} "
        "submissions/s",
        "engine               flink (PyFlink, thread mode)",
        f"output               {output}",
    ]


def run(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.parallelism < 1:
        raise UsageError("--parallelism must be at least 1")
    if opts.dedupe_window < 1:
        raise UsageError("--dedupe-window must be at least 1")
    if opts.state_ttl_days <= 0:
        raise UsageError("--state-ttl-days must be positive")
    kind, _ = _input(opts.input)
    _prepare_output(opts)
    jars = _connector_jars(opts) if kind == "kafka" else []
    model = _model(opts.model)
    bundle = _bundle()
    start = time.monotonic()
    try:
        env = environment(opts, bundle, jars)
        summary = build(env, opts, model)
        if opts.no_wait:
            summary.print().name("Summary").uid(UIDS["summary"])
            client = env.execute_async("earlyrisk")
            print(f"job id               {client.get_job_id()}")
            return 0
        counts: dict[str, int] = {}
        with summary.execute_and_collect("earlyrisk") as results:
            for name, n in results:
                counts[name] = counts.get(name, 0) + n
    finally:
        shutil.rmtree(bundle, ignore_errors=True)
    print("\n".join(summary_lines(counts, time.monotonic() - start, opts.output)))
    return 0


def main(argv: list[str] | None = None) -> int:
    import logging

    # PyFlink imports its own Beam (2.61), which warns about filesystems it lacks.
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    try:
        return run(argv)
    except UsageError as e:
        print(f"earlyrisk: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
