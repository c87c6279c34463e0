"""Beam transforms on the batch runner: parsing, dead letters, scoring, sinks."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to, is_not_empty

from models.policy import IncrementalPolicy
from models.portable import PortableModel
from models.scorer import IncrementalScorer, UserState
from transforms.parse import DEAD_LETTERS, SUBMISSIONS, KeySource, ParseSubmissions
from transforms.scoring import ALERTS, SCORES, WRITINGS, ScoreUsers
from transforms.sources import RawMessage

OPTS = PipelineOptions(["--runner=DirectRunner"])


def wire(i: int, author: str = "alice", text: str = "i feel empty and alone", t: int = 0):
    return json.dumps({"id": f"t3_{i}", "author": author, "created_utc": 1546300800 + t + i,
                       "kind": "post", "subreddit": "depression", "title": "", "body": text})


def raw(lines):
    return [RawMessage(f"test:{n}", (ln if isinstance(ln, bytes) else ln.encode()))
            for n, ln in enumerate(lines)]


def test_parse_splits_valid_and_dead_letters():
    lines = [wire(1), "{bad", wire(2, author="[deleted]"), b"\xff", wire(3)]
    with TestPipeline(options=OPTS) as p:
        out = p | beam.Create(raw(lines)) | ParseSubmissions(KeySource())
        assert_that(out[SUBMISSIONS] | "Ids" >> beam.Map(lambda s: (s.id, s.user_id)),
                    equal_to([("t3_1", "alice"), ("t3_3", "alice")]), label="Valid")
        assert_that(out[DEAD_LETTERS] | "Reasons" >> beam.Map(lambda d: (d.source, d.reason,
                                                                          d.stage)),
                    equal_to([("test:1", "invalid_json", "parse"),
                              ("test:2", "deleted_author", "parse"),
                              ("test:3", "invalid_utf8", "parse")]), label="Dead")


def test_dead_letter_keeps_payload_and_size():
    big = b"\xff" + b"x" * 10
    with TestPipeline(options=OPTS) as p:
        out = p | beam.Create(raw([big])) | ParseSubmissions(KeySource())
        assert_that(out[DEAD_LETTERS] | beam.Map(lambda d: (d.raw, d.raw_bytes)),
                    equal_to([("\\xff" + "x" * 10, 11)]))


def test_pseudonymised_keys_from_env(monkeypatch):
    monkeypatch.setenv("TEST_KEY_VAR", "k" * 32)
    with TestPipeline(options=OPTS) as p:
        out = p | beam.Create(raw([wire(1)])) | ParseSubmissions(KeySource(env_var="TEST_KEY_VAR"))
        assert_that(out[SUBMISSIONS] | beam.Map(lambda s: s.user_id.startswith("u_")
                                                and "alice" not in s.user_id),
                    equal_to([True]))


def test_score_users_matches_core_scorer_and_alerts_once():
    model = PortableModel.load()
    texts = ["i want to die i hate myself", "nobody cares i feel worthless",
             "i can't sleep and i cry every night", "budget for the car insurance"]
    lines = [wire(i, text=t) for i, t in enumerate(texts)] + [wire(9, author="bob",
                                                                   text="mortgage rates")]
    scorer = IncrementalScorer(model)
    st = UserState()
    expected = [(f"t3_{i}", round(scorer.update(st, t).p_user, 12), i + 1)
                for i, t in enumerate(texts)]
    policy = IncrementalPolicy(threshold=0.01, max_alerts=1)
    with TestPipeline(options=OPTS) as p:
        subs = (p | beam.Create(raw(lines)) | ParseSubmissions(KeySource()))[SUBMISSIONS]
        out = subs | ScoreUsers(policy=policy)
        alice = out[SCORES] | beam.Filter(lambda r: r.user_id == "alice") | beam.Map(
            lambda r: (r.submission_id, round(r.p_user, 12), r.writings_seen))
        assert_that(alice, equal_to(expected), label="Scores")
        assert_that(out[ALERTS] | beam.Map(lambda a: (a.user_id, a.alert_seq, a.writings_seen)),
                    equal_to([("alice", 1, 1), ("bob", 1, 1)]), label="Alerts")
        assert_that(out[WRITINGS], is_not_empty(), label="Writings")


def test_batch_by_user_keeps_every_submission_in_order_when_it_flushes_early():
    from models.records import Submission
    from transforms.scoring import BatchByUser

    subs = [Submission(id=f"s{i}", user_id=f"u{i % 3}", created_utc=1_600_000_000.0 + i,
                       kind="comment", subreddit="r", title="", body="x") for i in range(20)]
    with TestPipeline(options=PipelineOptions(["--runner", "DirectRunner"])) as p:
        batches = (p | beam.Create(subs, reshuffle=False)
                   | beam.ParDo(BatchByUser(max_held=4)))
        # Flushing every 4 submissions still hands each one over exactly once.
        per_user = (batches
                    | beam.Map(lambda kv: (kv[0], [s.id for s in kv[1]]))
                    | beam.CombinePerKey(lambda lists: [i for ids in lists for i in ids])
                    | beam.Map(lambda kv: (kv[0], sorted(kv[1], key=lambda i: int(i[1:])))))
        assert_that(per_user, equal_to([
            (f"u{u}", [f"s{i}" for i in range(20) if i % 3 == u]) for u in range(3)]),
            label="AllOnce")
        sizes = batches | beam.Map(lambda kv: len(kv[1]))
        assert_that(sizes | beam.CombineGlobally(sum), equal_to([20]), label="Total")
        assert_that(sizes | beam.CombineGlobally(max), equal_to([2]), label="EarlyFlush")
        # Within a batch, submissions keep their arrival order.
        ordered = batches | beam.Map(lambda kv: [int(s.id[1:]) for s in kv[1]])
        assert_that(ordered | beam.Map(lambda ids: ids == sorted(ids))
                    | beam.CombineGlobally(all), equal_to([True]), label="InOrder")
