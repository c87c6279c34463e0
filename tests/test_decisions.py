"""Decision methods (models/decisions.py) and policies (models/policy.py)."""

from __future__ import annotations

import pytest

from models.decisions import (
    AllMethod,
    DepressedMethod,
    FirstNMethod,
    MethodSpecError,
    PolicyMethod,
    RandomMethod,
    incremental,
    parse_method,
    parse_methods,
    trajectory,
)
from models.policy import EarlyWindowPolicy, IncrementalPolicy, make_policy
from models.portable import PortableModel
from models.scorer import IncrementalScorer, UserState

TRAJ = (0.2, 0.55, 0.7, 0.4, 0.95, 0.3)


def test_incremental_first_crossing():
    o = incremental(0.5).decide("u", TRAJ)
    assert (o.decision, o.writings_seen) == (1, 2)
    o = incremental(0.75).decide("u", TRAJ)
    assert (o.decision, o.writings_seen) == (1, 5)
    o = incremental(0.95).decide("u", TRAJ)  # strictly greater: 0.95 does not fire
    assert (o.decision, o.writings_seen) == (0, 6)


def test_first_n_and_all():
    o = FirstNMethod(2).decide("u", TRAJ)
    assert (o.decision, o.writings_seen) == (1, 2)
    o = FirstNMethod(1).decide("u", TRAJ)
    assert (o.decision, o.writings_seen) == (0, 1)
    o = FirstNMethod(100).decide("u", TRAJ)  # fewer writings than n: all of them
    assert (o.decision, o.writings_seen) == (0, 6)
    o = AllMethod().decide("u", (0.1, 0.6))
    assert (o.decision, o.writings_seen) == (1, 2)


def test_random_is_seeded_and_order_free():
    users = [f"u{i}" for i in range(200)]
    a = [RandomMethod(3).decide(u, (0.5,)).decision for u in users]
    b = [RandomMethod(3).decide(u, (0.5,)).decision for u in reversed(users)][::-1]
    c = [RandomMethod(4).decide(u, (0.5,)).decision for u in users]
    assert a == b and a != c
    assert 60 < sum(a) < 140  # a fair coin, roughly
    assert DepressedMethod().decide("u", TRAJ).decision == 1


def test_early_window_policy():
    p = EarlyWindowPolicy(threshold=0.5, first=0.6, window=3, late=0.9)
    assert [p.threshold_at(k) for k in (1, 2, 3, 4, 50)] == [0.6, 0.5, 0.5, 0.9, 0.9]
    # k=1: 0.55 <= 0.6; k=2: 0.52 > 0.5
    o = PolicyMethod(p).decide("u", (0.55, 0.52))
    assert (o.decision, o.writings_seen) == (1, 2)
    # crossings only after the window need the late threshold (strictly)
    o = PolicyMethod(p).decide("u", (0.1, 0.2, 0.3, 0.85, 0.9, 0.91))
    assert (o.decision, o.writings_seen) == (1, 6)
    assert PolicyMethod(p).decide("u", (0.1, 0.2, 0.3, 0.85)).decision == 0
    # a one-writing user is judged with the first-writing threshold
    assert PolicyMethod(p).decide("u", (0.59,)).decision == 0
    with pytest.raises(ValueError):
        EarlyWindowPolicy(late=1.2)
    with pytest.raises(ValueError):
        EarlyWindowPolicy(window=0)


def test_policies_keep_pipeline_semantics_for_realerts():
    # max_alerts > 1: a further alert only on escalation to a more urgent band
    for p in (IncrementalPolicy(0.5, max_alerts=3), EarlyWindowPolicy(max_alerts=3)):
        assert p.decide(0.75, 5, 0, -1)
        assert not p.decide(0.78, 6, 1, 2)  # still P2
        assert p.decide(0.85, 7, 1, 2)  # P1 < P2
        assert not p.decide(0.99, 8, 3, 1)  # cap reached


def test_method_specs():
    names = [m.name for m in parse_methods(
        "random,depressed,first:10,all,incremental:0.75,window:0.5/0.7/5/0.8")]
    assert names == ["Random", "Depressed", "First 10", "All", "Incremental 0.75",
                     "Window 0.5 [0.7|<=5|0.8]"]
    for bad in ("first", "first:x", "incremental:1.5", "nope", "window:1/2", ""):
        with pytest.raises(MethodSpecError):
            parse_methods(bad)
    with pytest.raises(MethodSpecError):
        parse_methods("all,all")
    assert isinstance(make_policy("incremental", "0.6"), IncrementalPolicy)
    assert parse_method("random:7").name == "Random (seed 7)"


def test_run_equals_decide_and_scorer():
    """The lazy path (texts) and the trajectory path agree, on the bundled model."""
    scorer = IncrementalScorer(PortableModel.load())
    texts = ["I feel hopeless and alone, I cry every night",
             "what is a good rifle for deer season",
             "depressed again, nothing helps, I want to disappear",
             "my therapist says I should try new medication"] * 3
    traj = trajectory(scorer, texts)
    state = UserState()
    assert traj == tuple(scorer.update(state, t).p_user for t in texts)
    for method in parse_methods("first:3,all,incremental:0.5,incremental:0.9,window"):
        assert method.run("u", texts, scorer) == method.decide("u", traj)
