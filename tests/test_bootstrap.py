"""Paired bootstrap of two methods' decisions (evaluation/bootstrap.py)."""

from __future__ import annotations

import pytest

from evaluation.bootstrap import main, paired_bootstrap, read_decisions
from models.metrics import UserDecision


def _users(decide_pos: int, decide_neg: int, k: int = 1) -> dict[str, UserDecision]:
    out = {f"p{i}": UserDecision(f"p{i}", decide_pos, k, 1) for i in range(5)}
    out |= {f"c{i}": UserDecision(f"c{i}", decide_neg, k, 0) for i in range(15)}
    return out


def test_identical_methods_never_beat_each_other():
    a = _users(1, 0)
    assert paired_bootstrap(a, a, resamples=200) == {"f1": 0.0, "erde5": 0.0, "erde50": 0.0}


def test_a_method_without_false_positives_wins_every_resample():
    flag_all, perfect = _users(1, 1), _users(1, 0)
    shares = paired_bootstrap(flag_all, perfect, resamples=200)
    assert shares == {"f1": 1.0, "erde5": 1.0, "erde50": 1.0}
    assert paired_bootstrap(perfect, flag_all, resamples=200)["erde5"] == 0.0


def test_reads_evaluator_csv_and_rejects_unknown_method(tmp_path, capsys):
    path = tmp_path / "decisions.csv"
    rows = ["method,user,decision,writings_seen,truth"]
    rows += [f"A,{u},{d.decision},{d.writings_seen},{d.truth}" for u, d in _users(1, 1).items()]
    rows += [f"B,{u},{d.decision},{d.writings_seen},{d.truth}" for u, d in _users(1, 0).items()]
    path.write_text("\n".join(rows) + "\n")
    assert set(read_decisions(path)) == {"A", "B"}
    assert main([str(path), "A", "B", "--resamples", "50"]) == 0
    assert "lower ERDE50 in 100.0%" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main([str(path), "A", "C"])
    assert e.value.code == 2
