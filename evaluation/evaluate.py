"""The evaluation driver: collection in, decisions and figures out.

    load_collection(input, truth, format)  ->  Collection (chronological streams + truth)
    evaluate(collection, methods, scorer)  ->  Evaluation (decisions, metrics, ranking)
    write_outputs(evaluation, DIR)         ->  metrics.json, decisions.csv, rankings.csv,
                                               f1_erde.png, probability_curves.png

Every user is scored once, writing by writing, with the pipeline's
IncrementalScorer; each method then decides from that trajectory (the policy
methods through the pipeline's policy objects). ``decisions.csv`` holds every
decision and ``rankings.csv`` every score used for ranking, so each figure in
``metrics.json`` can be recomputed from them with the published formulas
(:mod:`models.metrics`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from corpora.erisk import CsvColumns, read_csv, read_erisk
from corpora.readers import UserStreams, read_truth, read_wire_streams
from models import metrics as em
from models.decisions import DecisionMethod, trajectory
from models.records import Submission
from models.scorer import IncrementalScorer

FORMATS = ("jsonl", "erisk", "csv")


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated; the message says why in one line."""


@dataclass
class Collection:
    users: dict[str, list[Submission]]
    truth: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)
    unlabelled_users: int = 0
    source: str = ""


def load_collection(input_path: str | Path, truth_path: str | Path | None = None,
                    fmt: str = "jsonl", csv_columns: CsvColumns | None = None) -> Collection:
    """Read writings and golden truth; only users with both are evaluated.

    A user in the truth file with no usable writing is an error (they cannot be
    decided); users with writings but no label are left out and counted.
    """
    if fmt not in FORMATS:
        raise EvaluationError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    labels: dict[str, int] = {}
    if fmt == "jsonl":
        streams: UserStreams = read_wire_streams(input_path)
    elif fmt == "erisk":
        streams = read_erisk(input_path)
    else:
        streams, labels = read_csv(input_path, csv_columns or CsvColumns())
    if truth_path is not None:
        try:
            labels = read_truth(truth_path)
        except ValueError as e:
            raise EvaluationError(str(e)) from None
    if not labels:
        raise EvaluationError("no golden truth: give --truth (or a label column for CSV)")
    missing = sorted(set(labels) - set(streams.users))
    if missing:
        raise EvaluationError(f"{len(missing)} labelled users have no usable writings in "
                              f"{input_path}, e.g. {missing[0]!r}")
    if set(labels.values()) != {0, 1}:
        raise EvaluationError("golden truth needs both positive (1) and negative (0) users")
    users = {u: streams.users[u] for u in sorted(labels)}
    return Collection(users=users, truth=dict(labels), skipped=streams.skipped,
                      unlabelled_users=len(set(streams.users) - set(labels)),
                      source=str(input_path))


@dataclass
class Evaluation:
    methods: list[str]
    decisions: dict[str, list[em.UserDecision]]
    metrics: dict[str, dict[str, float]]
    ranking: dict[int, dict[str, float]]
    trajectories: dict[str, tuple[float, ...]]
    truth: dict[str, int]
    info: dict = field(default_factory=dict)


def evaluate(collection: Collection, methods: Sequence[DecisionMethod],
             scorer: IncrementalScorer, erde_os: Sequence[float] = em.DEFAULT_ERDE_OS,
             rounds: Sequence[int] = em.RANKING_ROUNDS,
             tick: Callable[[str, int], None] | None = None) -> Evaluation:
    """Score every user once, decide with every method, compute every figure."""
    tick = tick or (lambda _name, _n: None)
    trajectories: dict[str, tuple[float, ...]] = {}
    for user, subs in collection.users.items():
        trajectories[user] = trajectory(scorer, (s.text for s in subs))
        tick("writings", len(subs))
        tick("users", 1)
    truth = collection.truth
    decisions: dict[str, list[em.UserDecision]] = {}
    table: dict[str, dict[str, float]] = {}
    for method in methods:
        rows = []
        for user, traj in trajectories.items():
            out = method.decide(user, traj)
            rows.append(em.UserDecision(user, out.decision, out.writings_seen, truth[user]))
        decisions[method.name] = rows
        table[method.name] = em.decision_metrics(rows, erde_os)
    ranking = {
        r: em.ranking_metrics({u: em.score_at_round(t, r) for u, t in trajectories.items()}, truth)
        for r in rounds
    }
    info = {
        "source": collection.source,
        "users": len(truth),
        "positive_users": sum(truth.values()),
        "writings": sum(len(t) for t in trajectories.values()),
        "skipped_writings": collection.skipped,
        "unlabelled_users_left_out": collection.unlabelled_users,
        "model_version": scorer.version,
        "erde_os": list(erde_os),
        "latency_p": em.LATENCY_P,
        "ranking_rounds": list(rounds),
    }
    return Evaluation([m.name for m in methods], decisions, table, ranking, trajectories,
                      dict(truth), info)


# -- outputs ---------------------------------------------------------------------
def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def table_columns(ev: Evaluation) -> tuple[str, ...]:
    """The paper's Table 2 columns, with one ERDE column per o evaluated."""
    erde = tuple(f"ERDE{o:g}" for o in ev.info["erde_os"])
    return ("Method", "F1", "P", "R", *erde, "F_latency")


def table_rows(ev: Evaluation) -> list[list[str]]:
    rows = []
    for name in ev.methods:
        m = ev.metrics[name]
        rows.append([name, _fmt(m["f1"]), _fmt(m["precision"]), _fmt(m["recall"]),
                     *(_fmt(m[f"erde{o:g}"]) for o in ev.info["erde_os"]),
                     _fmt(m["f_latency"])])
    return rows


def format_table(ev: Evaluation, markdown: bool = False) -> str:
    columns = table_columns(ev)
    rows = table_rows(ev)
    if markdown:
        out = ["| " + " | ".join(columns) + " |",
               "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(columns), "  ".join("-" * w for w in widths)]
                     + [line(r) for r in rows])


def format_ranking(ev: Evaluation) -> str:
    out = ["round   P@10  NDCG@10  NDCG@100"]
    for r, m in ev.ranking.items():
        out.append(f"{r:>5}  {m['p@10']:.3f}    {m['ndcg@10']:.3f}     {m['ndcg@100']:.3f}")
    return "\n".join(out)


def _json_safe(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def write_outputs(ev: Evaluation, out_dir: str | Path, with_plots: bool = True,
                  sample_per_class: int = 5, seed: int = 0) -> list[Path]:
    """Write metrics.json, decisions.csv, rankings.csv and the plots; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    doc = {"info": ev.info, "methods": {n: ev.metrics[n] for n in ev.methods},
           "ranking": {str(r): m for r, m in ev.ranking.items()}}
    path = out / "metrics.json"
    path.write_text(json.dumps(_json_safe(doc), indent=2, sort_keys=False) + "\n")
    written.append(path)
    path = out / "decisions.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["method", "user", "decision", "writings_seen", "truth"])
        for name in ev.methods:
            for d in ev.decisions[name]:
                w.writerow([name, d.user, d.decision, d.writings_seen, d.truth])
    written.append(path)
    path = out / "rankings.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["round", "user", "score", "truth"])
        for r in ev.ranking:
            for u, t in ev.trajectories.items():
                w.writerow([r, u, repr(em.score_at_round(t, r)), ev.truth[u]])
    written.append(path)
    if with_plots:
        from evaluation import plots

        written.append(plots.bars(ev, out / "f1_erde.png"))
        written.append(plots.curves(ev, out / "probability_curves.png", sample_per_class, seed))
    return written
