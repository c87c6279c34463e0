"""Source URIs and the Kafka/Pub/Sub option rules (no services needed)."""

from __future__ import annotations

import pytest

from pipelines.options import OptionsError, ScreeningOptions, validate
from transforms.kafka_io import parse_kafka_uri
from transforms.sources import SourceURIError, parse_pubsub_path, parse_source_uri


def test_kafka_uri() -> None:
    assert parse_kafka_uri("kafka://127.0.0.1:9092/submissions") == ("127.0.0.1:9092",
                                                                       "submissions")
    assert parse_kafka_uri("kafka://a:1,b:2/t") == ("a:1,b:2", "t")
    assert parse_source_uri("kafka://h:9092/t") == ("kafka", "h:9092/t")


@pytest.mark.parametrize("uri", ["kafka://h:9092", "kafka://h:9092/", "kafka://h/t",
                                 "kafka://h:9092/a/b", "kafka:///t"])
def test_bad_kafka_uri(uri: str) -> None:
    with pytest.raises(SourceURIError):
        parse_source_uri(uri)


def test_pubsub_uri() -> None:
    assert parse_pubsub_path("pubsub://projects/demo-project/subscriptions/s1") == (
        "subscription", "projects/demo-project/subscriptions/s1")
    assert parse_pubsub_path("pubsub://projects/demo-project/topics/t1") == (
        "topic", "projects/demo-project/topics/t1")


@pytest.mark.parametrize("uri", ["pubsub://projects/demo-project/t1",
                                 "pubsub://projects/demo-project/queues/q",
                                 "pubsub://projects/x/topics/t",  # project id too short
                                 "pubsub://topics/t"])
def test_bad_pubsub_uri(uri: str) -> None:
    with pytest.raises(SourceURIError):
        parse_source_uri(uri)


def _opts(*argv: str) -> ScreeningOptions:
    return ScreeningOptions(list(argv))


def test_unbounded_kafka_needs_streaming_runner() -> None:
    with pytest.raises(OptionsError, match="--until-caught-up"):
        validate(_opts("--input", "kafka://127.0.0.1:9092/t"))


def test_kafka_flags_need_kafka_input() -> None:
    with pytest.raises(OptionsError, match="kafka:// input"):
        validate(_opts("--until-caught-up"))
    with pytest.raises(OptionsError, match="kafka:// input"):
        validate(_opts("--kafka-start", "earliest"))


def test_xlang_has_no_until_caught_up() -> None:
    with pytest.raises(OptionsError, match="not available"):
        validate(_opts("--input", "kafka://127.0.0.1:9092/t", "--until-caught-up",
                       "--kafka-use-xlang"))


def test_kafka_start_choices() -> None:
    with pytest.raises(SystemExit):
        _opts("--kafka-start", "middle").view_as(ScreeningOptions).kafka_start  # noqa: B018


def test_cli_rejects_unbounded_kafka_on_direct_runner(capsys) -> None:
    from pipelines.cli import main

    code = main(["run", "--input", "kafka://127.0.0.1:9/t"])
    assert code == 2
    assert "--until-caught-up" in capsys.readouterr().err


@pytest.mark.integration
def test_missing_topic_is_a_usage_error(capsys) -> None:
    from pipelines.cli import main
    from tests.services import tansu

    with tansu() as bootstrap:
        code = main(["run", "--input", f"kafka://{bootstrap}/nope", "--until-caught-up"])
    assert code == 2
    assert "topic does not exist" in capsys.readouterr().err


def test_until_caught_up_needs_in_process_runner() -> None:
    # A remote job is only submitted; nothing would commit after it finished.
    with pytest.raises(OptionsError, match="in-process runner"):
        validate(_opts("--input", "kafka://127.0.0.1:9/t", "--until-caught-up",
                       "--runner", "dataflow"))
