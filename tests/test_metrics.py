"""Early-risk metrics against hand-computed values (models/metrics.py)."""

from __future__ import annotations

import math

import pytest

from models import metrics as em

D = em.UserDecision


def _four():
    # TP at k=1, FP at k=3, FN, TN: P = R = F1 = 1/2, c_fp = 2/4.
    return [D("a", 1, 1, 1), D("b", 1, 3, 0), D("c", 0, 5, 1), D("d", 0, 2, 0)]


def test_precision_recall_f1():
    c = em.confusion(_four())
    assert (c.tp, c.fp, c.fn, c.tn) == (1, 1, 1, 1)
    assert c.precision == 0.5 and c.recall == 0.5 and c.f1 == 0.5


def test_latency_cost_by_hand():
    # lc_5(1) = 1 - 1/(1 + e^-4) = 0.0179862...; lc_o(o) = 1/2; lc_5(8) = 1 - 1/(1+e^3).
    assert em.latency_cost(1, 5) == pytest.approx(0.01798620996, abs=1e-10)
    assert em.latency_cost(5, 5) == 0.5
    assert em.latency_cost(50, 50) == 0.5
    assert em.latency_cost(8, 5) == pytest.approx(0.95257412682, abs=1e-10)
    assert em.latency_cost(100_000, 5) == 1.0 and em.latency_cost(1, 5000) == 0.0


def test_erde_by_hand():
    # (lc_5(1)*1 + c_fp + c_fn + 0) / 4 = (0.0179862 + 0.5 + 1) / 4
    assert em.erde(_four(), 5) == pytest.approx(0.37949655249, abs=1e-10)
    # lc_50(1) ~ 5e-22: the TP costs nothing, ERDE50 = 1.5 / 4
    assert em.erde(_four(), 50) == pytest.approx(0.375, abs=1e-12)
    # an explicit c_fp replaces the share of positives
    assert em.erde(_four(), 50, c_fp=0.1) == pytest.approx(1.1 / 4, abs=1e-12)


def test_late_true_positive_costs_like_a_miss():
    late = [D("a", 1, 400, 1), D("b", 0, 9, 0)]
    assert em.erde(late, 5) == pytest.approx(0.5)
    assert em.erde(late, 50) == pytest.approx(0.5)


def test_latency_penalty_and_f_latency():
    assert em.latency_penalty(1) == 0.0  # k = 1: no penalty
    # k = 101: -1 + 2 / (1 + e^(-0.0078 * 100)) = 0.371360...
    assert em.latency_penalty(101) == pytest.approx(0.37136022788, abs=1e-10)
    ds = [D("a", 1, 1, 1), D("b", 1, 101, 1), D("c", 1, 101, 1), D("d", 0, 4, 0)]
    # median penalty over TPs = penalty(101); F1 = 1
    assert em.speed(ds) == pytest.approx(1 - 0.37136022788, abs=1e-10)
    assert em.f_latency(ds) == pytest.approx(0.62863977212, abs=1e-10)
    assert em.f_latency(_four()) == 0.5  # its only TP is at k = 1


def test_no_positive_decisions():
    ds = [D("a", 0, 7, 1), D("b", 0, 3, 0), D("c", 0, 1, 0), D("d", 0, 2, 1)]
    m = em.decision_metrics(ds)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert m["erde5"] == m["erde50"] == 0.5  # two misses of cost 1 over 4 users
    assert m["speed"] == 0.0 and m["f_latency"] == 0.0
    assert math.isnan(m["median_writings_to_tp"])


def test_all_positive_at_first_writing():
    ds = [D("a", 1, 1, 1), D("b", 1, 1, 0), D("c", 1, 1, 0), D("d", 1, 1, 0)]
    m = em.decision_metrics(ds)
    assert m["precision"] == 0.25 and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(0.4)
    # c_fp = 1/4: (lc_5(1) + 3 * 0.25) / 4
    assert m["erde5"] == pytest.approx((0.01798620996 + 0.75) / 4, abs=1e-10)
    assert m["f_latency"] == pytest.approx(0.4)


def test_decision_validation():
    with pytest.raises(ValueError):
        D("a", 2, 1, 0)
    with pytest.raises(ValueError):
        D("a", 1, 0, 0)
    with pytest.raises(ValueError):
        em.erde([], 5)


def test_ranking_by_hand():
    rel = [1, 0, 1, 0, 0]
    assert em.precision_at_k(rel, 10) == 0.2  # k divides, not the list length
    assert em.precision_at_k(rel, 1) == 1.0
    # DCG = 1 + 0/log2(2) + 1/log2(3) = 1.6309...; ideal [1, 1, ...] = 1 + 1 = 2
    assert em.dcg_at_k(rel, 10) == pytest.approx(1.63092975357, abs=1e-10)
    assert em.ndcg_at_k(rel, 10) == pytest.approx(0.81546487679, abs=1e-10)
    assert em.ndcg_at_k([0, 1], 1) == 0.0 and em.ndcg_at_k([1, 0], 1) == 1.0
    assert em.ndcg_at_k([0, 0, 0], 10) == 0.0
    with pytest.raises(ValueError):
        em.precision_at_k(rel, 0)


def test_ranking_metrics_and_rounds():
    truth = {"a": 1, "b": 0, "c": 1}
    # ties broken by user id, so b (0.5) precedes c (0.5)
    m = em.ranking_metrics({"a": 0.9, "b": 0.5, "c": 0.5}, truth)
    assert m["p@10"] == pytest.approx(0.2)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    traj = (0.1, 0.2, 0.3)
    assert em.score_at_round(traj, 1) == 0.1
    assert em.score_at_round(traj, 1000) == 0.3  # fewer writings: the last score
