"""Paired bootstrap of two methods' decisions over users (a check, not a tuner).

Reads the ``decisions.csv`` that ``earlyrisk evaluate`` writes, resamples the
evaluated users with replacement (the same users for both methods, so the
comparison is paired) and reports how often method B has the better F1 and
the lower ERDE_o than method A. It changes nothing and chooses nothing: it
says how stable a difference seen on one split is under resampling of users.

    python -m evaluation.bootstrap earlyrisk-eval/decisions.csv \\
        "Incremental 0.5" "Window 0.45 [0.5|<=8|0.7]"
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Sequence
from pathlib import Path

from models import metrics as em


def read_decisions(path: str | Path) -> dict[str, dict[str, em.UserDecision]]:
    """method -> user -> decision, from an evaluator decisions.csv."""
    out: dict[str, dict[str, em.UserDecision]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["method"], {})[row["user"]] = em.UserDecision(
                row["user"], int(row["decision"]), int(row["writings_seen"]), int(row["truth"]))
    return out


def paired_bootstrap(a: dict[str, em.UserDecision], b: dict[str, em.UserDecision],
                     resamples: int = 2000, seed: int = 2020,
                     erde_os: Sequence[float] = (5, 50)) -> dict[str, float]:
    """Share of resamples in which B beats A (higher F1, lower ERDE_o).

    ERDE's false-positive cost is the positive share of the whole collection
    (fixed, as in the evaluator), not of each resample. Ties count as not
    beating.
    """
    if set(a) != set(b):
        raise ValueError("the two methods were not evaluated on the same users")
    users = sorted(a)
    c_fp = em.positive_share([a[u] for u in users])
    rng = random.Random(seed)
    wins = {"f1": 0, **{f"erde{o:g}": 0 for o in erde_os}}
    for _ in range(resamples):
        sample = rng.choices(users, k=len(users))
        ma = em.decision_metrics([a[u] for u in sample], erde_os, c_fp)
        mb = em.decision_metrics([b[u] for u in sample], erde_os, c_fp)
        wins["f1"] += mb["f1"] > ma["f1"]
        for o in erde_os:
            wins[f"erde{o:g}"] += mb[f"erde{o:g}"] < ma[f"erde{o:g}"]
    return {k: v / resamples for k, v in wins.items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("decisions", help="decisions.csv written by earlyrisk evaluate")
    ap.add_argument("method_a", help="reference method, as named in decisions.csv")
    ap.add_argument("method_b", help="method compared with it")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=2020)
    args = ap.parse_args(argv)
    decisions = read_decisions(args.decisions)
    for name in (args.method_a, args.method_b):
        if name not in decisions:
            ap.error(f"no method {name!r} in {args.decisions} (has: {', '.join(decisions)})")
    shares = paired_bootstrap(decisions[args.method_a], decisions[args.method_b],
                              args.resamples, args.seed)
    print(f"{args.method_b} vs {args.method_a}, {args.resamples} paired resamples of users:")
    print(f"  higher F1 in {shares['f1']:.1%}; lower ERDE5 in {shares['erde5']:.1%}; "
          f"lower ERDE50 in {shares['erde50']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
