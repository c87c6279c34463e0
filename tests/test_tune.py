"""Choosing the policy on the train split (evaluation/tune.py)."""

from __future__ import annotations

import pytest

from evaluation.tune import choose, out_of_fold_trajectories
from models.policy import EarlyWindowPolicy, IncrementalPolicy


def test_choose_prefers_early_window_when_late_crossings_are_controls():
    # Positives cross 0.5 (to 0.55) at writing 2; controls cross only after writing 10,
    # higher (0.62): no single threshold separates them, an early window does.
    traj = {f"p{i}": (0.3,) + (0.55,) * 23 for i in range(10)}
    traj |= {f"c{i}": (0.3,) * 11 + (0.62,) * 13 for i in range(40)}
    traj |= {f"x{i}": (0.3,) * 24 for i in range(10)}
    truth = {u: int(u.startswith("p")) for u in traj}
    c = choose(traj, truth)
    assert c.baseline["fp"] == 40
    assert isinstance(c.policy, EarlyWindowPolicy) and c.policy.window <= 10
    assert c.metrics["fp"] == 0 and c.metrics["tp"] == 10
    assert c.metrics["erde5"] < c.baseline["erde5"]


def test_choose_keeps_incremental_when_nothing_is_better():
    traj = {"p": (0.9, 0.9), "c": (0.1, 0.1)}
    c = choose(traj, {"p": 1, "c": 0})
    assert c.policy == IncrementalPolicy(0.45)  # ties: the grid's first, Incremental
    assert c.metrics["f1"] == 1.0


@pytest.mark.slow
def test_documented_choice_is_reproduced_from_train_split():
    """The defaults of EarlyWindowPolicy are what the documented procedure picks."""
    from corpora.readers import read_training_users
    from corpora.simulate import SIMULATED_DIR

    users = read_training_users(SIMULATED_DIR / "train.jsonl.gz",
                                SIMULATED_DIR / "train-truth.txt")
    traj = out_of_fold_trajectories(users)
    c = choose(traj, {u.user: u.label for u in users})
    assert c.policy == EarlyWindowPolicy()
    assert c.metrics["erde5"] < c.baseline["erde5"] and c.metrics["erde50"] < c.baseline["erde50"]
