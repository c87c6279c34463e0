"""Options of the screening pipeline (``earlyrisk run``).

:class:`ScreeningOptions` is a Beam ``PipelineOptions`` view, so the same
flags work from the CLI, from a Flex Template and from Python;
:func:`validate` checks them before anything runs and raises
:class:`OptionsError` with a one-line reason.
"""

from __future__ import annotations

import glob
import os
import secrets
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from corpora.simulate import SIMULATED_DIR
from models.scorer import DEFAULT_DEDUPE_WINDOW
from models.wire import ParseLimits
from transforms.parse import KeySource
from transforms.scoring import DEFAULT_STATE_TTL_S
from transforms.sinks import DEFAULT_RETRY_BUDGET_S

DEFAULT_INPUT = f"file://{SIMULATED_DIR / 'test.jsonl.gz'}"
DEFAULT_OUTPUT = "duckdb://earlyrisk.duckdb"
KEY_ENV = "EARLYRISK_PSEUDONYM_KEY"
DEFAULT_SLICE_SIZE = 200_000


class OptionsError(ValueError):
    """Bad option values; the message is a one-line reason."""


def default_key_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "earlyrisk" / "pseudonym.key"


class ScreeningOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--input", default=DEFAULT_INPUT,
            help="source URI: file://PATH.jsonl[.gz], kafka://HOST:PORT/TOPIC, "
                 "pubsub://projects/P/subscriptions/S or pubsub://projects/P/topics/T "
                 "(default: the bundled simulated test stream); see docs/SOURCES.md")
        parser.add_argument(
            "--output", default=DEFAULT_OUTPUT,
            help="sink URI: duckdb://PATH or bigquery://PROJECT/DATASET "
                 "(default: duckdb://earlyrisk.duckdb)")
        parser.add_argument(
            "--bq_create_tables", "--bq-create-tables", action="store_true", default=False,
            help="with bigquery://: create the dataset and any missing tables (partitioned "
                 "by day, clustered by user) before writing")
        parser.add_argument(
            "--bq_method", "--bq-method", choices=("streaming", "file_loads"),
            default="streaming",
            help="with bigquery://: 'streaming' inserts with deterministic insert ids "
                 "(default), or 'file_loads' (load jobs via --temp_location gs://..., for "
                 "backfills on real GCP; not available offline)")
        parser.add_argument(
            "--model", default=None,
            help="portable model directory (default: the bundled model)")
        parser.add_argument(
            "--threshold", type=float, default=0.5,
            help="Incremental θ: alert when the user probability exceeds it (default 0.5)")
        parser.add_argument(
            "--policy", default="incremental",
            help="decision policy: 'incremental' (the paper's Incremental θ with --threshold) "
                 "or 'window[:T/FIRST/WINDOW/LATE]' (θ = T within the first WINDOW writings, "
                 "FIRST at the first writing, LATE after; default 0.45/0.5/8/0.7; see "
                 "docs/EVALUATION.md)")
        parser.add_argument(
            "--max_alerts_per_user", "--max-alerts-per-user", type=int, default=1,
            help="alerts per user; beyond the first, only on escalation to a more urgent "
                 "priority band (default 1)")
        parser.add_argument(
            "--state_ttl_days", "--state-ttl-days", type=float,
            default=DEFAULT_STATE_TTL_S / 86_400,
            help="forget users quiet this long in event time (default 365)")
        parser.add_argument(
            "--state_store", "--state-store", default="auto",
            help="where in-process runs keep per-user state between runs: 'auto' (the "
                 "--output store when it is duckdb://, else none), duckdb://PATH, or 'none' "
                 "(every run starts from empty state); see docs/RELIABILITY.md")
        parser.add_argument(
            "--slice_size", "--slice-size", type=int, default=DEFAULT_SLICE_SIZE,
            help="bounded inputs with a state store are run in consecutive slices of this "
                 "many messages, state carried in the store, so the records buffered are the "
                 f"slice's, not the input's (default {DEFAULT_SLICE_SIZE:,}; 0: one slice)")
        parser.add_argument(
            "--snapshot_seconds", "--snapshot-seconds", type=float, default=10.0,
            help="streaming runs with a state store: write changed per-user state to it at "
                 "most this often, and when stopped (default 10)")
        parser.add_argument(
            "--dedupe_window", "--dedupe-window", type=int, default=DEFAULT_DEDUPE_WINDOW,
            help="recent submission ids remembered per user to drop redeliveries "
                 f"(default {DEFAULT_DEDUPE_WINDOW})")
        parser.add_argument(
            "--max_message_bytes", "--max-message-bytes", type=int,
            default=ParseLimits.max_message_bytes,
            help="larger messages are dead-lettered as too_large (default 1,000,000)")
        parser.add_argument(
            "--max_future_skew_hours", "--max-future-skew-hours", type=float,
            default=ParseLimits.max_future_skew_s / 3600,
            help="writings dated further than this into the future are dead-lettered as "
                 "timestamp_out_of_range, as are those before Reddit existed (default 24)")
        parser.add_argument(
            "--sink_retry_seconds", "--sink-retry-seconds", type=float,
            default=DEFAULT_RETRY_BUDGET_S,
            help="how long a sink keeps retrying, with backoff, while its store is "
                 "unavailable (locked, write failing) before it fails the bundle "
                 f"(default {DEFAULT_RETRY_BUDGET_S:g})")
        parser.add_argument(
            "--no_store_text", "--no-store-text", action="store_true", default=False,
            help="do not keep the text of writings (table 'writings'); expert review then "
                 "sees probabilities only")
        parser.add_argument(
            "--raw_user_ids", "--raw-user-ids", action="store_true", default=False,
            help="store Reddit user names as they are instead of keyed-hash pseudonyms "
                 "(an explicit opt-out of pseudonymisation)")
        parser.add_argument(
            "--pseudonym_key_secret", "--pseudonym-key-secret", default=None,
            help="Secret Manager secret version holding the key, read by the workers "
                 "(projects/P/secrets/S/versions/V); for Dataflow")
        parser.add_argument(
            "--pseudonym_key_file", "--pseudonym-key-file", default=None,
            help=f"file holding the pseudonymisation key, used when ${KEY_ENV} is unset "
                 f"(default: {default_key_file()}, created on first use)")
        parser.add_argument(
            "--until_caught_up", "--until-caught-up", action="store_true", default=False,
            help="kafka:// only: read up to the offsets current at start, then finish and "
                 "commit them (a backfill; needed on the DirectRunner)")
        parser.add_argument(
            "--kafka_group", "--kafka-group", default="earlyrisk",
            help="kafka:// only: consumer group whose offsets are read and committed "
                 "(default earlyrisk)")
        parser.add_argument(
            "--kafka_start", "--kafka-start", default="committed",
            choices=("earliest", "latest", "committed"),
            help="kafka:// only: where to start: the group's committed offsets (falling back "
                 "to earliest), earliest or latest (default committed)")
        parser.add_argument(
            "--kafka_use_xlang", "--kafka-use-xlang", action="store_true", default=False,
            help="kafka:// only: use Beam's cross-language (Java) ReadFromKafka; needs a "
                 "Java expansion service, which cannot be downloaded offline")


def key_source(opts: ScreeningOptions, create: bool = True) -> KeySource:
    """Where the pseudonymisation key comes from; creates the default key file.

    The key is read from ``$EARLYRISK_PSEUDONYM_KEY`` if set, else from the key
    file; on a first local run the default key file is created (random, mode
    0600) so that pseudonyms stay stable across runs on this machine.
    """
    if opts.raw_user_ids:
        return KeySource()
    if opts.pseudonym_key_secret:
        return KeySource(secret=opts.pseudonym_key_secret)
    if os.environ.get(KEY_ENV):
        if len(os.environ[KEY_ENV].encode()) < 16:
            raise OptionsError(f"${KEY_ENV} must be at least 16 bytes")
        return KeySource(env_var=KEY_ENV)
    path = Path(opts.pseudonym_key_file) if opts.pseudonym_key_file else default_key_file()
    if not path.exists():
        if opts.pseudonym_key_file or not create:
            raise OptionsError(f"pseudonymisation key file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    if len(path.read_bytes().strip()) < 16:
        raise OptionsError(f"pseudonymisation key in {path} is shorter than 16 bytes")
    return KeySource(env_var=KEY_ENV, key_file=str(path))


def _validate_live_source(opts: ScreeningOptions, scheme: str) -> None:
    """Combinations of Kafka/Pub/Sub options and runner that cannot work."""
    kafka_flags = opts.until_caught_up or opts.kafka_use_xlang \
        or opts.kafka_group != "earlyrisk" or opts.kafka_start != "committed"
    if scheme != "kafka" and kafka_flags:
        raise OptionsError("--until-caught-up and --kafka-* options need a kafka:// input")
    if scheme == "pubsub":
        _check_pubsub_source(opts)
    if scheme != "kafka":
        return
    if not opts.kafka_group:
        raise OptionsError("--kafka-group must not be empty")
    from pipelines.runners import waits_for_completion

    if opts.kafka_use_xlang and opts.until_caught_up:
        raise OptionsError("--until-caught-up is not available with --kafka-use-xlang")
    # In-process runners (direct, portable embed) run an unbounded read's
    # stage forever without handing its output on.
    if not opts.until_caught_up and not opts.kafka_use_xlang and waits_for_completion(opts):
        raise OptionsError("an unbounded Kafka read needs a streaming runner (Flink, Dataflow); "
                           "on the DirectRunner add --until-caught-up")
    if opts.until_caught_up and not waits_for_completion(opts):
        raise OptionsError("--until-caught-up commits offsets when the run has finished, so it "
                           "needs an in-process runner (direct, portable embed)")
    from transforms.kafka_io import KafkaError, check_topic, parse_kafka_uri

    try:
        check_topic(*parse_kafka_uri(opts.input))
    except KafkaError as e:
        raise OptionsError(f"--input: {e}") from None


def _check_pubsub_source(opts: ScreeningOptions) -> None:
    """For an in-process run: the subscription (or topic) exists and can be reached, else a
    one-line reason. (Remote runners reach Pub/Sub with their workers' credentials.)"""
    from pipelines.runners import waits_for_completion

    if not waits_for_completion(opts):
        return
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import pubsub_v1

    from transforms.sources import parse_source_uri

    path = parse_source_uri(opts.input)[1]
    kind = "subscription" if "/subscriptions/" in path else "topic"
    try:
        if kind == "subscription":
            with pubsub_v1.SubscriberClient() as client:
                client.get_subscription(subscription=path, retry=None, timeout=15)
        else:
            pubsub_v1.PublisherClient().get_topic(topic=path, retry=None, timeout=15)
    except gexc.NotFound:
        raise OptionsError(
            f"--input: {opts.input}: {kind} does not exist (create a topic and subscription "
            "with 'earlyrisk publish --to pubsub://projects/P/topics/T --create "
            "--subscription S')") from None
    except DefaultCredentialsError:
        raise OptionsError("--input pubsub://: no Google Cloud credentials (run 'gcloud auth "
                           "application-default login', or export PUBSUB_EMULATOR_HOST for "
                           "the local emulator)") from None
    except gexc.GoogleAPICallError as e:
        raise OptionsError(f"--input: {opts.input}: {str(e).splitlines()[0]}") from None


def make_screening_policy(opts: ScreeningOptions):
    """The decision policy named by --policy (incremental takes --threshold)."""
    from models.policy import policy_from_options

    try:
        return policy_from_options(opts.policy, opts.threshold, opts.max_alerts_per_user)
    except ValueError as e:
        raise OptionsError(f"--policy: {e}") from None


def _validate_bigquery(opts: ScreeningOptions) -> None:
    from apache_beam.options.pipeline_options import GoogleCloudOptions, TestOptions

    from storage.bigquery_store import emulator_host

    if opts.bq_method == "file_loads":
        if emulator_host():
            raise OptionsError("--bq-method file_loads needs real BigQuery and Cloud Storage; "
                               "the emulator takes streaming inserts only")
        temp = opts.view_as(GoogleCloudOptions).temp_location or ""
        if not temp.startswith("gs://"):
            raise OptionsError("--bq-method file_loads needs --temp_location gs://BUCKET/PATH")

    if not emulator_host() and not opts.view_as(TestOptions).dry_run:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            google.auth.default()
        except DefaultCredentialsError:
            raise OptionsError(
                "--output bigquery://: no Google credentials (run 'gcloud auth "
                "application-default login', or set BIGQUERY_EMULATOR_HOST for the "
                "local emulator)") from None


def _check_input_file(location: str) -> None:
    """A file input must name a file, or be a glob that matches at least one."""
    if any(ch in location for ch in "*?["):
        if not glob.glob(location):
            raise OptionsError(f"--input: no file matches {location}")
    elif Path(location).is_dir():
        raise OptionsError(f"--input: {location} is a directory; give a file, or a glob "
                           f"such as file://{location.rstrip('/')}/*.jsonl")
    elif not Path(location).exists():
        raise OptionsError(f"--input: {location} does not exist")


def validate(opts: ScreeningOptions) -> None:
    """Raise OptionsError with a one-line reason for any bad value."""
    from models.portable import ModelFormatError, PortableModel
    from storage.duckdb_store import memory_limit_mb
    from transforms.sinks import SinkURIError, parse_sink_uri
    from transforms.sources import SourceURIError, parse_source_uri

    if not 0.0 <= opts.threshold < 1.0:
        raise OptionsError(f"--threshold must be in [0, 1), got {opts.threshold}")
    if opts.max_alerts_per_user < 1:
        raise OptionsError("--max-alerts-per-user must be at least 1")
    make_screening_policy(opts)
    if opts.state_ttl_days <= 0:
        raise OptionsError("--state-ttl-days must be positive")
    if opts.dedupe_window < 1:
        raise OptionsError("--dedupe-window must be at least 1")
    if opts.slice_size < 0:
        raise OptionsError("--slice-size must not be negative")
    if opts.snapshot_seconds <= 0:
        raise OptionsError("--snapshot-seconds must be positive")
    if opts.max_message_bytes < 1024:
        raise OptionsError("--max-message-bytes must be at least 1024")
    if opts.max_future_skew_hours < 0:
        raise OptionsError("--max-future-skew-hours must not be negative")
    if opts.sink_retry_seconds < 0:
        raise OptionsError("--sink-retry-seconds must not be negative")
    try:
        memory_limit_mb()
    except ValueError as e:
        raise OptionsError(str(e)) from None
    try:
        scheme, location = parse_source_uri(opts.input)
        if scheme == "file":
            _check_input_file(location)
        sink_scheme, sink_path = parse_sink_uri(opts.output)
        if sink_scheme == "duckdb" and Path(sink_path).is_dir():
            raise OptionsError(f"--output: {sink_path} is a directory; give the DuckDB file, "
                               f"e.g. duckdb://{sink_path.rstrip('/')}/earlyrisk.duckdb")
        if sink_scheme == "duckdb" and any(p.exists() and not p.is_dir()
                                           for p in Path(sink_path).parents):
            raise OptionsError(f"--output: {sink_path}: a parent of it is a file, not a "
                               "directory")
        _validate_live_source(opts, scheme)
    except (SourceURIError, SinkURIError) as e:
        raise OptionsError(str(e)) from None
    if sink_scheme != "bigquery" and (opts.bq_create_tables or opts.bq_method != "streaming"):
        raise OptionsError("--bq-create-tables and --bq-method need --output bigquery://...")
    if sink_scheme == "bigquery":
        _validate_bigquery(opts)
    try:
        PortableModel.load(opts.model)
    except (ModelFormatError, OSError) as e:
        raise OptionsError(f"--model: {e}") from None
    state_store_path(opts)  # checks --state-store


def state_store_path(opts: ScreeningOptions) -> str | None:
    """The DuckDB file holding per-user state between in-process runs, or None.

    Remote runners keep state in their own checkpoints; so does nothing here.
    """
    from pipelines.runners import waits_for_completion
    from transforms.sinks import SinkURIError, parse_sink_uri

    choice = (opts.state_store or "auto").strip()
    if choice == "none" or not waits_for_completion(opts):
        return None
    uri = opts.output if choice == "auto" else choice
    try:
        scheme, location = parse_sink_uri(uri)
    except SinkURIError as e:
        raise OptionsError(f"--state-store: {e}") from None
    if scheme != "duckdb":
        if choice == "auto":
            return None
        raise OptionsError("--state-store must be duckdb://PATH, 'auto' or 'none'")
    if Path(location).is_dir():
        raise OptionsError(f"--state-store: {location} is a directory; give the DuckDB file")
    return location
