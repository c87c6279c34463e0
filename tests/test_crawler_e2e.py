"""End-to-end: the crawler against a local fake Reddit API (reddit.com cannot
be reached here) -> JSONL -> the screening pipeline -> alerts in DuckDB; and
the crawler publishing into a real Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import json
import time

import duckdb
import pytest

from crawler.crawl import CrawlConfig, Crawler
from crawler.publishers import FilePublisher
from crawler.reddit import make_reddit
from crawler.seen import CrawlState
from models.portable import PortableModel
from models.scorer import IncrementalScorer
from pipelines.cli import main
from tests.fake_reddit.fixtures import FixtureData, build
from tests.fake_reddit.server import LISTING_CAP, FakeReddit

UA = "python:earlyrisk-crawler-tests:v0.1.0 (by /u/earlyrisk-ci)"


@pytest.fixture(scope="module")
def fixtures() -> FixtureData:
    return build()


@pytest.fixture
def reddit_env(monkeypatch):
    monkeypatch.setenv("REDDIT_CLIENT_ID", "fake-client")
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", "fake-secret")
    monkeypatch.setenv("REDDIT_USER_AGENT", UA)


def _expected_ids(fake: FakeReddit) -> set[str]:
    """Every thing the server handed out whose author still exists."""
    by_name = {t["data"]["name"]: t for t in fake.data.things}
    return {n for n in fake.served if by_name[n]["data"]["author"] != "[deleted]"}


def _crawl_cli(fake: FakeReddit, output: str, tmp_path) -> dict:
    metrics_path = tmp_path / "metrics.json"
    status = main(["crawl", "--api-url", fake.url, "--output", output,
                   "--state", str(tmp_path / "state.sqlite"), "--exit-when-idle", "2",
                   "--duration", "120", "--metrics-json", str(metrics_path), "--no-progress"])
    assert status == 0
    return json.loads(metrics_path.read_text())


def _check_crawl(fake: FakeReddit, fixtures: FixtureData, published: list[dict],
                 metrics: dict) -> None:
    ids = [m["id"] for m in published]
    assert len(ids) == len(set(ids)), "a writing was published twice"
    assert set(ids) == _expected_ids(fake)
    # The live listings were followed to their end and every live author crawled.
    assert fake.present == len(fixtures.things)
    crawled_authors = {m["author"] for m in published}
    assert set(fixtures.users) - {fixtures.suspended} <= crawled_authors
    assert set(fixtures.oneoff) <= crawled_authors
    assert "[deleted]" not in crawled_authors
    # The power user's comment history stops at Reddit's listing cap (newest first):
    # their oldest comments are out of reach; live ones may come from the stream.
    power = {m["id"] for m in published if m["author"] == fixtures.power_user
             and m["kind"] == "comment"}
    all_power = [t["data"]["name"] for t in fixtures.by_author(fixtures.power_user)
                 if t["kind"] == "t1"]
    assert LISTING_CAP <= len(power) < len(all_power)
    assert all_power[0] not in power and all_power[-1] in power
    # praw obeyed the X-Ratelimit headers and sent our user agent.
    assert fake.violations == 0
    assert {ua.split(" PRAW/")[0] for ua in fake.user_agents} == {UA}
    assert metrics["writings_published"] == len(ids)
    assert metrics["users_failed"] == 1  # the suspended account
    assert metrics["skipped"]["deleted_author"] == sum(
        1 for t in fixtures.things if t["data"]["author"] == "[deleted]"
        and t["data"]["name"] in fake.served)
    assert metrics["users_crawled"] == metrics["users_discovered"] - 1


@pytest.mark.integration
@pytest.mark.slow
def test_crawl_to_file_then_pipeline_alerts_in_duckdb(fixtures, reddit_env, tmp_path):
    out = tmp_path / "crawled.jsonl"
    with FakeReddit(fixtures, window_s=1.0) as fake:
        metrics = _crawl_cli(fake, f"file://{out}", tmp_path)
        published = [json.loads(line) for line in out.read_text().splitlines()]
        _check_crawl(fake, fixtures, published, metrics)

    db = tmp_path / "alerts.duckdb"
    assert main(["run", "--input", f"file://{out}", "--output", f"duckdb://{db}",
                 "--raw-user-ids", "--no-progress"]) == 0
    con = duckdb.connect(str(db), read_only=True)
    n_scores = con.execute("SELECT count(*) FROM scores").fetchone()[0]
    n_dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    alerted = {r[0] for r in con.execute("SELECT DISTINCT user_id FROM alerts").fetchall()}
    assert n_dead == 0 and n_scores == len(published)
    assert alerted, "no alert from the crawled users"
    assert alerted <= {m["author"] for m in published}
    print(f"\ncrawl: {metrics['writings_published']} writings, "
          f"{metrics['users_crawled']} users, {metrics['writings_per_s']} writings/s; "
          f"pipeline: {n_scores} scores, {len(alerted)} users alerted")


@pytest.mark.integration
@pytest.mark.slow
def test_crawl_into_tansu_then_pipeline_alerts_in_duckdb(fixtures, reddit_env, tmp_path):
    """Fake Reddit -> earlyrisk crawl -> Tansu -> earlyrisk run --until-caught-up -> alerts."""
    from confluent_kafka import Consumer

    from tests.services import tansu

    with tansu() as bootstrap, FakeReddit(fixtures, window_s=1.0) as fake:
        metrics = _crawl_cli(fake, f"kafka://{bootstrap}/reddit-writings", tmp_path)
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "crawler-test",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            # Tansu's group join is slow with the default timeouts (REFERENCE.md).
            "session.timeout.ms": 6000, "max.poll.interval.ms": 7000,
        })
        consumer.subscribe(["reddit-writings"])
        messages: list = []
        deadline = time.monotonic() + 60
        while len(messages) < metrics["writings_published"] and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                messages.append(m)
        # A little longer, so that a duplicate would show up.
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                messages.append(m)
        consumer.close()
        published = [json.loads(m.value()) for m in messages]
        assert all(m.key().decode() == p["author"] for m, p in zip(messages, published))
        # One user's writings share a partition.
        partitions: dict[str, set[int]] = {}
        for m, p in zip(messages, published):
            partitions.setdefault(p["author"], set()).add(m.partition())
        assert all(len(s) == 1 for s in partitions.values())
        assert len({m.partition() for m in messages}) > 1
        _check_crawl(fake, fixtures, published, metrics)

        # The pipeline backfills the topic the crawler filled, to alerts in DuckDB.
        db = tmp_path / "kafka.duckdb"
        assert main(["run", "--input", f"kafka://{bootstrap}/reddit-writings",
                     "--until-caught-up", "--kafka-start", "earliest",
                     "--output", f"duckdb://{db}", "--raw-user-ids", "--no-progress"]) == 0
        con = duckdb.connect(str(db), read_only=True)
        n_scores = con.execute("SELECT count(*) FROM scores").fetchone()[0]
        n_dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        alerted = {r[0] for r in con.execute("SELECT DISTINCT user_id FROM alerts").fetchall()}
        sources = {r[0] for r in con.execute("SELECT source FROM scores").fetchall()}
        con.close()
        assert n_dead == 0 and n_scores == len(published)
        assert all(src.startswith("kafka:reddit-writings:") for src in sources)
        assert alerted and alerted <= {p["author"] for p in published}


@pytest.mark.integration
def test_queue_crawls_higher_first_risk_estimates_first(fixtures, reddit_env, tmp_path):
    """With every live author discovered before any crawl, the crawl order is
    the first risk estimates' order."""
    with FakeReddit(fixtures, window_s=1.0) as fake:
        fake.present = len(fixtures.things)  # everything is already there at the first poll
        reddit = make_reddit(api_url=fake.url)
        publisher = FilePublisher(str(tmp_path / "w.jsonl"))
        scorer = IncrementalScorer(PortableModel.load())
        crawler = Crawler(reddit, publisher, CrawlState(":memory:"), scorer,
                          CrawlConfig(users_per_cycle=10_000, exit_when_idle=1.0,
                                      duration=60))
        crawler.run()
        publisher.close()
    priorities = [p for _, p in crawler.crawl_order]
    assert len(priorities) == crawler.metrics.users_crawled > 20
    assert priorities == sorted(priorities, reverse=True)
    assert len(set(priorities)) > 5  # the estimates do differ between users


@pytest.mark.integration
@pytest.mark.slow
def test_crawl_into_pubsub_emulator_every_writing_once(fixtures, reddit_env, tmp_path,
                                                       monkeypatch):
    from tests.services import PUBSUB_EMULATOR, pubsub_emulator

    if not PUBSUB_EMULATOR.is_file():
        pytest.skip(f"Pub/Sub emulator not installed at {PUBSUB_EMULATOR} (machine image only)")
    from google.cloud import pubsub_v1

    with pubsub_emulator() as host, FakeReddit(fixtures, window_s=1.0) as fake:
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        topic = "projects/demo-project/topics/reddit-writings"
        subscription = "projects/demo-project/subscriptions/reddit-writings-test"
        pubsub_v1.PublisherClient().create_topic(name=topic)
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(request={"name": subscription, "topic": topic,
                                                "enable_message_ordering": True})
        metrics = _crawl_cli(fake, f"pubsub://{topic}", tmp_path)
        received: list = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = len(received) >= metrics["writings_published"]
            # Once all arrived, one more pull: a duplicate would show up there.
            resp = subscriber.pull(subscription=subscription, max_messages=500,
                                   timeout=2 if done else 5)
            if not resp.received_messages:
                if done:
                    break
                continue
            received += [r.message for r in resp.received_messages]
            subscriber.acknowledge(subscription=subscription,
                                   ack_ids=[r.ack_id for r in resp.received_messages])
        subscriber.close()
        published = [json.loads(m.data) for m in received]
        assert all(m.ordering_key == p["author"] and m.attributes["id"] == p["id"]
                   for m, p in zip(received, published))
        _check_crawl(fake, fixtures, published, metrics)


@pytest.mark.integration
@pytest.mark.parametrize("extra_env,argv,message", [
    ({"REDDIT_CLIENT_SECRET": "wrong"}, [], "401"),
    ({}, ["--subreddits", "no_such_subreddit"], "Redirect"),
])
def test_fatal_api_errors_stop_the_crawl_with_one_line(fixtures, reddit_env, monkeypatch,
                                                       tmp_path, capsys, extra_env, argv,
                                                       message):
    for k, v in extra_env.items():
        monkeypatch.setenv(k, v)
    with FakeReddit(fixtures, window_s=1.0) as fake:
        status = main(["crawl", "--api-url", fake.url, "--state", ":memory:",
                       "--output", f"file://{tmp_path / 'w.jsonl'}", "--duration", "30",
                       "--no-progress", *argv])
    assert status == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("earlyrisk:")]
    assert len(errors) == 1 and message in errors[0]
