"""Early-risk evaluation metrics: how right and how early the decisions are.

Beam-free and dependency-free, so that anyone can recompute a published
figure from a ``decisions.csv`` with these few functions. The formulas are
the eRisk ones:

* precision, recall and F1 of the positive class (a user never flagged is a
  negative decision); with no positive decision precision is 0, and with
  precision + recall = 0 F1 is 0;
* ERDE_o (Losada & Crestani 2016): per user, a false positive costs ``c_fp``,
  a false negative ``c_fn`` = 1, a true negative 0, and a true positive decided
  after ``k`` writings ``lc_o(k) * c_tp`` with ``lc_o(k) = 1 - 1 / (1 + e^(k - o))``;
  ``c_fp`` defaults to the share of positive users; ERDE_o is the mean over
  users (a fraction here: multiply by 100 for the usual display);
* F_latency (Sadeque, Xu & Bethard 2018): ``penalty(k) = -1 + 2 / (1 + e^(-p (k - 1)))``,
  ``speed = 1 - median penalty over true positives``, ``F_latency = F1 * speed``,
  p = 0.0078;
* ranking after a round of writings (eRisk 2019 onwards): P@k and NDCG@k with
  binary relevance, ``DCG = rel_1 + sum_{i >= 2} rel_i / log2(i)`` over the ranks,
  normalised by the DCG of the relevances sorted in decreasing order.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_ERDE_OS = (5, 50)
LATENCY_P = 0.0078
RANKING_ROUNDS = (1, 50, 100, 500, 1000)


@dataclass(frozen=True)
class UserDecision:
    """One user's decision: ``decision`` 1 (at risk) or 0, taken after
    ``writings_seen`` writings (for a negative: all the writings seen), against
    the golden ``truth`` label."""

    user: str
    decision: int
    writings_seen: int
    truth: int

    def __post_init__(self) -> None:
        if self.decision not in (0, 1) or self.truth not in (0, 1):
            raise ValueError(f"{self.user}: decision and truth must be 0 or 1")
        if self.writings_seen < 1:
            raise ValueError(f"{self.user}: writings_seen must be >= 1, got "
                             f"{self.writings_seen}")


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def confusion(decisions: Iterable[UserDecision]) -> Confusion:
    tp = fp = fn = tn = 0
    for d in decisions:
        if d.decision and d.truth:
            tp += 1
        elif d.decision:
            fp += 1
        elif d.truth:
            fn += 1
        else:
            tn += 1
    return Confusion(tp, fp, fn, tn)


def positive_share(decisions: Sequence[UserDecision]) -> float:
    """The default c_fp: positive users / users."""
    if not decisions:
        raise ValueError("no users")
    return sum(d.truth for d in decisions) / len(decisions)


def latency_cost(k: int, o: float) -> float:
    """lc_o(k) = 1 - 1 / (1 + e^(k - o)); computed stably for large |k - o|."""
    z = k - o
    if z > 700:  # e^z would overflow; the cost is 1 to double precision
        return 1.0
    if z >= 0:
        return 1.0 - 1.0 / (1.0 + math.exp(z))
    e = math.exp(z)
    return 1.0 - 1.0 / (1.0 + e) if e > 1e-300 else 0.0


def erde(decisions: Sequence[UserDecision], o: float, c_fp: float | None = None,
         c_fn: float = 1.0, c_tp: float = 1.0) -> float:
    """ERDE_o, as a fraction (mean cost per user)."""
    if not decisions:
        raise ValueError("ERDE of no users")
    if c_fp is None:
        c_fp = positive_share(decisions)
    total = 0.0
    for d in decisions:
        if d.decision and d.truth:
            total += latency_cost(d.writings_seen, o) * c_tp
        elif d.decision:
            total += c_fp
        elif d.truth:
            total += c_fn
    return total / len(decisions)


def latency_penalty(k: int, p: float = LATENCY_P) -> float:
    """penalty(k) = -1 + 2 / (1 + e^(-p (k - 1))): 0 at k = 1, towards 1 later."""
    return -1.0 + 2.0 / (1.0 + math.exp(-p * (k - 1)))


def speed(decisions: Iterable[UserDecision], p: float = LATENCY_P) -> float:
    """1 - median penalty over true positives; 0 when there are none."""
    pens = [latency_penalty(d.writings_seen, p) for d in decisions if d.decision and d.truth]
    return 1.0 - statistics.median(pens) if pens else 0.0


def f_latency(decisions: Sequence[UserDecision], p: float = LATENCY_P) -> float:
    return confusion(decisions).f1 * speed(decisions, p)


def decision_metrics(decisions: Sequence[UserDecision],
                     erde_os: Sequence[float] = DEFAULT_ERDE_OS,
                     c_fp: float | None = None, p: float = LATENCY_P) -> dict[str, float]:
    """Every decision-based figure of one method, keyed by name."""
    c = confusion(decisions)
    cfp = positive_share(decisions) if c_fp is None else c_fp
    out: dict[str, float] = {
        "users": len(decisions), "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn,
        "precision": c.precision, "recall": c.recall, "f1": c.f1,
    }
    for o in erde_os:
        out[f"erde{o:g}"] = erde(decisions, o, cfp)
    out["speed"] = speed(decisions, p)
    out["f_latency"] = c.f1 * out["speed"]
    out["c_fp"] = cfp
    tps = [d.writings_seen for d in decisions if d.decision and d.truth]
    out["median_writings_to_tp"] = float(statistics.median(tps)) if tps else float("nan")
    return out


# -- ranking ---------------------------------------------------------------------
def rank_by_score(scores: Mapping[str, float]) -> list[str]:
    """Users by decreasing score; ties by user id so the ranking is reproducible."""
    return sorted(scores, key=lambda u: (-scores[u], u))


def precision_at_k(relevances: Sequence[int], k: int) -> float:
    """Share of relevant items in the first k ranks (k, not the list length, divides)."""
    if k < 1:
        raise ValueError("k must be >= 1")
    return sum(relevances[:k]) / k


def dcg_at_k(relevances: Sequence[int], k: int) -> float:
    if k < 1:
        raise ValueError("k must be >= 1")
    rel = relevances[:k]
    if not rel:
        return 0.0
    return rel[0] + sum(r / math.log2(i) for i, r in enumerate(rel[1:], start=2))


def ndcg_at_k(relevances: Sequence[int], k: int) -> float:
    """DCG@k of the ranking over DCG@k of the ideal one; 0 if nothing is relevant."""
    ideal = dcg_at_k(sorted(relevances, reverse=True), k)
    return dcg_at_k(relevances, k) / ideal if ideal > 0 else 0.0


def ranking_metrics(scores: Mapping[str, float], truth: Mapping[str, int]) -> dict[str, float]:
    """P@10, NDCG@10 and NDCG@100 of users ranked by score."""
    rel = [truth[u] for u in rank_by_score(scores)]
    return {"p@10": precision_at_k(rel, 10), "ndcg@10": ndcg_at_k(rel, 10),
            "ndcg@100": ndcg_at_k(rel, 100)}


def score_at_round(trajectory: Sequence[float], r: int) -> float:
    """A user's score after round r: their last score if they have fewer writings."""
    if not trajectory:
        raise ValueError("empty trajectory")
    return trajectory[min(r, len(trajectory)) - 1]
