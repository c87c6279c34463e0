"""The Beam-free per-user core every engine wires around (models.engine)."""

from __future__ import annotations

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
