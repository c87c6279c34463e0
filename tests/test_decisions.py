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
from models.policy import IncrementalPolicy, RampPolicy, make_policy
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


def test_ramp_policy_thresholds():
    p = RampPolicy(0.9, 0.5, 4)
    assert [round(p.threshold_at(k), 6) for k in (1, 2, 3, 5, 50)] == [0.9, 0.8, 0.7, 0.5, 0.5]
    o = PolicyMethod(p).decide("u", TRAJ)
    # k=2: 0.55 <= 0.8; k=3: 0.7 <= 0.7 (strict); k=5: 0.95 > 0.5
    assert (o.decision, o.writings_seen) == (1, 5)
    with pytest.raises(ValueError):
        RampPolicy(0.9, 1.2, 4)


def test_method_specs():
    names = [m.name for m in parse_methods(
        "random,depressed,first:10,all,incremental:0.75,ramp:0.9/0.5/4")]
    assert names == ["Random", "Depressed", "First 10", "All", "Incremental 0.75",
                     "Ramp 0.9→0.5/4"]
    for bad in ("first", "first:x", "incremental:1.5", "nope", "ramp:1/2", ""):
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
    for method in parse_methods("first:3,all,incremental:0.5,incremental:0.9,ramp"):
        assert method.run("u", texts, scorer) == method.decide("u", traj)
