"""The Beam-free per-user core every engine wires around (models.engine)."""

from __future__ import annotations

import pytest

from models.engine import ALERTS, DEAD_LETTERS, SCORES, WRITINGS, BatchResult, UserProcessor
from models.policy import IncrementalPolicy
from models.portable import PortableModel
from models.records import Submission
from models.scorer import IncrementalScorer, UserState


def _sub(i: str, t: float, body: str) -> Submission:
    return Submission(id=i, user_id="u_1", created_utc=t, kind="post", subreddit="x",
                      title="", body=body, source="test")


def test_batch_outputs_in_order_and_duplicates_change_nothing():
    scorer = IncrementalScorer(PortableModel.load(None))
    proc = UserProcessor(scorer, IncrementalPolicy(threshold=0.0), clock=lambda: 7.0)
    state = UserState()
    res = BatchResult()
    out = list(proc.process("u_1", state, [_sub("a", 100.0, "i feel so tired"),
                                           _sub("a", 100.0, "i feel so tired"),
                                           _sub("b", 50.0, "hello there")], res))
    kinds = [k for k, _ in out]
    # threshold 0 alerts at the first writing, once (max_alerts=1)
    assert kinds == [SCORES, WRITINGS, ALERTS, DEAD_LETTERS, SCORES, WRITINGS]
    assert (res.scored, res.duplicates, res.alerts) == (2, 1, 1)
    assert res.changed and res.timer_moves(state, 86_400.0)
    assert state.n == 2 and state.last_event == 100.0 and state.alerts == 1
    scores = [r for k, r in out if k == SCORES]
    assert [s.writings_seen for s in scores] == [1, 2]
    assert all(s.processed_at == 7.0 for s in scores)
    assert out[3][1].reason == "duplicate"
    # the same stream from scratch gives the same final probability
    again = UserState()
    for text in ("i feel so tired", "hello there"):
        last = scorer.update(again, text)
    assert abs(last.p_user - scores[-1].p_user) < 1e-12


def test_only_redeliveries_leave_state_and_timer_alone():
    scorer = IncrementalScorer(PortableModel.load(None))
    proc = UserProcessor(scorer)
    state = UserState()
    list(proc.process("u_1", state, [_sub("a", 100.0, "text")]))
    res = BatchResult()
    out = list(proc.process("u_1", state, [_sub("a", 100.0, "text")], res))
    assert [k for k, _ in out] == [DEAD_LETTERS]
    assert not res.changed and not res.timer_moves(state, 86_400.0)


def _model(tokenizer) -> PortableModel:
    import numpy as np

    vocab = ("but", "fine", "i'm", "neg:suicidal", "not", "suicidal")
    return PortableModel(name="neg", vocabulary=vocab, idf=np.ones(len(vocab)),
                         coef=np.array([0.0, -0.5, 0.0, -1.0, 0.0, 12.0]), intercept=-1.0,
                         tokenizer=tokenizer)


def test_not_suicidal_raises_no_alert_and_the_explanation_says_why():
    import json

    from models.tokenize import Tokenizer

    text = "Not suicidal. But I'm fine"
    words_only = IncrementalScorer(_model(Tokenizer()))
    assert words_only.update(UserState(), text).p_user > 0.9  # the P0 of the bug report
    scorer = IncrementalScorer(_model(Tokenizer(version=2, negation_window=3)))
    assert scorer.update(UserState(), text).p_user < 0.5
    # force an alert to see the stored explanation
    proc = UserProcessor(scorer, IncrementalPolicy(threshold=0.0))
    out = dict(proc.process("u_1", UserState(), [_sub("a", 1.0, text)]))
    alert = out[ALERTS]
    ex = json.loads(alert.explanation)
    assert ex["unit"] == "logit" and ex["intercept"] == -1.0
    w = ex["writing"]
    assert w["submission_id"] == "a"
    assert w["user_move"] == pytest.approx(w["logit"] - ex["intercept"], abs=1e-5)
    down = {d["feature"]: d for d in w["down"]}
    assert down["neg:suicidal"]["negated"] and down["neg:suicidal"]["term"] == "suicidal"
    assert down["neg:suicidal"]["logit"] < 0 and "suicidal" not in {u["feature"] for u in w["up"]}
    assert json.loads(alert.top_terms) == []  # nothing pushes this user up


def test_explanation_is_stored_in_duckdb(tmp_path):
    import duckdb

    from models.records import to_row
    from storage.duckdb_store import ensure_schema, insert_rows

    scorer = IncrementalScorer(PortableModel.load(None))
    proc = UserProcessor(scorer, IncrementalPolicy(threshold=0.0))
    alert = dict(proc.process("u_1", UserState(), [_sub("a", 1.0, "i feel so tired")]))[ALERTS]
    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    # a store made before the column existed gains it
    con.execute("CREATE TABLE alerts (alert_id VARCHAR PRIMARY KEY, user_id VARCHAR, "
                "submission_id VARCHAR, created_utc TIMESTAMP, p_user DOUBLE, "
                "writings_seen BIGINT, threshold DOUBLE, priority VARCHAR, policy VARCHAR, "
                "top_terms VARCHAR, model_version VARCHAR, alert_seq BIGINT)")
    ensure_schema(con)
    insert_rows(con, "alerts", [to_row(alert)])
    (stored,) = con.execute("select explanation from alerts").fetchone()
    assert stored == alert.explanation and '"unit": "logit"' in stored
