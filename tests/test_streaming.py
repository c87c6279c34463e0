"""State and timers on the streaming runner, driven by TestStream.

Covers out-of-order arrivals, redelivered duplicates and the expiry timer
that forgets users who went quiet.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from models.portable import PortableModel
from models.records import Submission
from models.scorer import IncrementalScorer, UserState
from models.tokenize import join_writings
from transforms.parse import DEAD_LETTERS
from transforms.scoring import ALERTS, SCORES, ScoreUsers

T0 = 1_546_300_800
DAY = 86_400
TEXTS = ["i feel empty", "i hate my job and myself", "nobody would notice if i was gone",
         "the weather is nice", "i cried again tonight"]


def options() -> PipelineOptions:
    o = PipelineOptions(["--runner=DirectRunner"])
    o.view_as(StandardOptions).streaming = True
    return o


def sub(i: int, user: str = "u1", t: float | None = None) -> Submission:
    ts = T0 + i * 60 if t is None else t
    return Submission(id=f"s{i}", user_id=user, created_utc=ts, kind="post",
                      subreddit="depression", title="", body=TEXTS[i % len(TEXTS)],
                      source=f"test:{i}")


def events(subs: list[Submission]) -> list[TimestampedValue]:
    return [TimestampedValue(s, s.created_utc) for s in subs]




def final_p(subs: list[Submission]) -> float:
    model = PortableModel.load()
    return float(model.to_sklearn().predict_proba([join_writings([s.text for s in subs])])[0, 1])


def test_out_of_order_arrivals_reach_the_same_final_state():
    subs = [sub(i) for i in range(5)]
    shuffled = [subs[3], subs[0], subs[4], subs[1], subs[2]]
    want = round(final_p(subs), 9)
    stream = (TestStream().add_elements(events(shuffled[:2]))
              .advance_watermark_to(T0 + 10).add_elements(events(shuffled[2:]))
              .advance_watermark_to(T0 + DAY).advance_watermark_to_infinity())
    with TestPipeline(options=options()) as p:
        out = p | stream | ScoreUsers()
        last = (out[SCORES] | beam.Filter(lambda r: r.writings_seen == 5)
                | beam.Map(lambda r: round(r.p_user, 9)))
        assert_that(last, equal_to([want]), label="Final")
        ks = out[SCORES] | "K" >> beam.Map(lambda r: r.writings_seen)
        assert_that(ks, equal_to([1, 2, 3, 4, 5]), label="K")


def test_redelivered_duplicates_change_nothing():
    subs = [sub(i) for i in range(3)]
    stream = (TestStream().add_elements(events([subs[0], subs[1], subs[0]]))
              .add_elements(events([subs[1], subs[2]]))
              .advance_watermark_to(T0 + DAY).advance_watermark_to_infinity())
    scorer = IncrementalScorer(PortableModel.load())
    st = UserState()
    want = [(s.id, round(scorer.update(st, s.text).p_user, 12)) for s in subs]
    with TestPipeline(options=options()) as p:
        out = p | stream | ScoreUsers()
        assert_that(out[SCORES] | beam.Map(lambda r: (r.submission_id, round(r.p_user, 12))),
                    equal_to(want), label="Scores")
        assert_that(out[DEAD_LETTERS] | beam.Map(lambda d: (d.stage, d.reason, d.source)),
                    equal_to([("dedupe", "duplicate", "test:0"),
                              ("dedupe", "duplicate", "test:1")]), label="Dupes")


def test_quiet_users_are_forgotten_after_the_ttl():
    ttl = 7 * DAY
    early = [sub(0), sub(1)]
    late = sub(2, t=T0 + 30 * DAY)
    other = sub(3, user="u2", t=T0 + 2 * DAY)
    stream = (TestStream().add_elements(events(early))
              .advance_watermark_to(T0 + 2 * DAY).add_elements(events([other]))
              # u1 quiet for > 7 days: its timer fires, state is cleared.
              .advance_watermark_to(T0 + 20 * DAY)
              .add_elements(events([late]))
              .advance_watermark_to(T0 + 40 * DAY).advance_watermark_to_infinity())
    with TestPipeline(options=options()) as p:
        out = p | stream | ScoreUsers(state_ttl_s=ttl)
        assert_that(out[SCORES] | beam.Map(lambda r: (r.user_id, r.submission_id,
                                                      r.writings_seen)),
                    equal_to([("u1", "s0", 1), ("u1", "s1", 2), ("u2", "s3", 1),
                              ("u1", "s2", 1)]))


def test_one_alert_per_user_then_escalation_only():
    from models.policy import IncrementalPolicy

    subs = [sub(i) for i in range(5)]
    stream = (TestStream().add_elements(events(subs))
              .advance_watermark_to(T0 + DAY).advance_watermark_to_infinity())
    with TestPipeline(options=options()) as p:
        out = p | stream | ScoreUsers(policy=IncrementalPolicy(threshold=0.0, max_alerts=1))
        assert_that(out[ALERTS] | beam.Map(lambda a: (a.alert_seq, a.writings_seen)),
                    equal_to([(1, 1)]))
