"""Choosing a decision policy's parameters on the TRAIN split only.

The bundled model was fitted on every real post, the train users' too, so its
probabilities on them are optimistic. Here each train user is scored, writing
by writing, by a model fitted without them: stratified k-fold over the train
users, each fold refitting the bundled model's recipe on the real posts less
the held-out users' posts. Candidate policies are run over these out-of-fold trajectories and
compared with Incremental 0.5, the paper's best method. The test split is
never read.

    python -m evaluation.tune            # prints the grid and the choice

Selection rule (fixed before looking at results): among candidates whose
out-of-fold F1 is at least Incremental 0.5's minus ``f1_tolerance`` and whose
ERDE5 and ERDE50 are both no worse, take the lowest ERDE5 + ERDE50; ties go
to the simpler candidate (earlier in the grid).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from corpora.readers import read_training_users
from corpora.simulate import SIMULATED_DIR
from models import metrics as em
from models.decisions import PolicyMethod, trajectory
from models.policy import EarlyWindowPolicy, IncrementalPolicy, Policy
from models.portable import PortableModel
from models.scorer import IncrementalScorer
from models.train import TrainConfig, TrainingUser


def out_of_fold_trajectories(users: Sequence[TrainingUser], folds: int = 4, seed: int = 7,
                             say: Callable[[str], None] = lambda _m: None
                             ) -> dict[str, tuple[float, ...]]:
    """p_user after each writing, for each user, from a model that never saw them.

    The bundled model's recipe (post level, its penalty, C, tf variant,
    tokenizer, term filter and calibration) is refitted on the real posts less
    every post of the fold's held-out users (the simulated users are made of
    those posts).
    """
    from sklearn.model_selection import StratifiedKFold

    from corpora.rmhd import rmhd_documents
    from evaluation.lco import fold_model
    from models.tokenize import join_writings
    from models.train import CountMatrix, fit

    bundled = PortableModel.load()
    r = bundled.report
    config = TrainConfig(c_grid=(r["C"],), sublinear_grid=(r["sublinear_tf"],),
                         penalty_grid=(r["penalty"],), min_df=r["min_df"], seed=r["seed"],
                         max_control_share=r.get("max_control_share"))
    cal = r.get("calibration", {})
    docs = rmhd_documents()
    labels_docs = np.array([d.label for d in docs])
    tok = bundled.tokenizer
    cm = CountMatrix([tok.tokens(join_writings(list(d.writings))) for d in docs],
                     [d.community if d.label == 0 else "" for d in docs])
    labels = np.array([u.label for u in users])
    out: dict[str, tuple[float, ...]] = {}
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for n, (_tr, te) in enumerate(split.split(np.zeros(len(users)), labels), start=1):
        held = {w for i in te for w in users[i].writings}
        rows = np.array([i for i, d in enumerate(docs) if d.writings[0] not in held],
                        dtype=np.intp)
        say(f"fold {n}/{folds}: fitting on {len(rows)} posts, scoring {len(te)} users")
        f = fit(cm, rows, labels_docs, r["C"], r["penalty"], r["sublinear_tf"], config)
        scorer = IncrementalScorer(fold_model(cm, f, tok, cal.get("scale", 1.0),
                                              cal.get("shift", 0.0)))
        for i in te:
            out[users[i].user] = trajectory(scorer, users[i].writings)
    return out


def run_policy(policy: Policy, trajectories: dict[str, tuple[float, ...]],
               truth: dict[str, int]) -> dict[str, float]:
    method = PolicyMethod(policy)
    rows = []
    for u, t in trajectories.items():
        o = method.decide(u, t)
        rows.append(em.UserDecision(u, o.decision, o.writings_seen, truth[u]))
    return em.decision_metrics(rows)


@dataclass(frozen=True)
class Choice:
    policy: Policy
    metrics: dict[str, float]
    baseline: dict[str, float]
    grid: list[tuple[Policy, dict[str, float]]]


def candidate_grid() -> list[Policy]:
    """Incremental θ alone, then early-window policies; simpler ones first, so
    that among equals the lower (less restrictive) late and first thresholds win."""
    grid: list[Policy] = [IncrementalPolicy(t) for t in (0.45, 0.5, 0.55, 0.6, 0.65, 0.7)]
    for late, first, threshold, window in itertools.product(
            (0.6, 0.7, 0.8, 0.9, 0.99), (0.5, 0.6, 0.7, 0.8, 0.9), (0.45, 0.5, 0.55, 0.6),
            (3, 4, 5, 6, 8, 10, 12, 15, 20, 30)):
        if late > threshold and first >= threshold:
            grid.append(EarlyWindowPolicy(threshold, first, window, late))
    return grid


def choose(trajectories: dict[str, tuple[float, ...]], truth: dict[str, int],
           f1_tolerance: float = 0.02) -> Choice:
    baseline = run_policy(IncrementalPolicy(0.5), trajectories, truth)
    scored = [(p, run_policy(p, trajectories, truth)) for p in candidate_grid()]
    ok = [(p, m) for p, m in scored
          if m["f1"] >= baseline["f1"] - f1_tolerance
          and m["erde5"] <= baseline["erde5"] and m["erde50"] <= baseline["erde50"]]
    best = min(ok, key=lambda pm: pm[1]["erde5"] + pm[1]["erde50"])  # min is stable
    return Choice(best[0], best[1], baseline, scored)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tolerance", type=float, default=0.02)
    args = ap.parse_args(argv)
    users = read_training_users(SIMULATED_DIR / "train.jsonl.gz",
                                SIMULATED_DIR / "train-truth.txt")
    truth = {u.user: u.label for u in users}
    traj = out_of_fold_trajectories(users, args.folds, args.seed, say=print)
    c = choose(traj, truth, args.tolerance)
    print(f"{'policy':34} {'F1':>6} {'P':>6} {'R':>6} {'ERDE5':>7} {'ERDE50':>7}")
    for p, m in sorted(c.grid, key=lambda pm: pm[1]["erde5"] + pm[1]["erde50"])[:25]:
        print(f"{p.label:34} {m['f1']:6.3f} {m['precision']:6.3f} {m['recall']:6.3f} "
              f"{m['erde5']:7.4f} {m['erde50']:7.4f}")
    b, m = c.baseline, c.metrics
    print(f"\nbaseline Incremental 0.5: F1 {b['f1']:.3f} ERDE5 {b['erde5']:.4f} "
          f"ERDE50 {b['erde50']:.4f}")
    print(f"chosen {c.policy.label}: F1 {m['f1']:.3f} ERDE5 {m['erde5']:.4f} "
          f"ERDE50 {m['erde50']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
