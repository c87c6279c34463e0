"""Leave-communities-out validation report: new recipe against old, per community.

    python -m evaluation.lco [--out lco.json] [--quick]

On the bundled real posts (``corpora.rmhd``), with the folds the bundled
model's training used (``models.train.lco_folds``: control communities held
out whole, positives dealt by author, no author on both sides of a fold):

* **new**: the bundled model's recipe (its penalty, C, tf variant, tokenizer
  and term filter) refitted on each fold's training part, calibrated with the
  bundled model's Platt scale and shift;
* **old recipe**: the previous default, one document per *simulated* user
  (``data/simulated`` train split), sublinear tf, L1, C = 8, refitted per fold
  on the simulated users with every held-out post removed from their
  histories (users left with no writing are dropped), so it never sees the
  held-out communities either;
* **old model as shipped** (``tfidf-l1-logreg-b71be9b1a0c2``, read from git
  history if present): not refitted; it was trained on about half of these
  posts, so its figures are optimistic.

Per held-out control community: ranking AUC (the fold's held-out positive
posts against that community's posts), F1, precision and recall at p > θ,
and ERDE5/ERDE50/F1 of Incremental θ over user-like *streams* of held-out
posts (``models.train.user_streams``: 10 posts of the community, or 3 held-out
positive posts among 7 of the community). The data have nearly one post per
author, so a stream is a simulation (different people's posts), not a person;
these figures say how fast such a stream crosses θ, not how real users behave.
Random stratified folds (grouped by author) are reported beside for contrast:
they share communities between training and test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from corpora.readers import read_truth, read_wire_streams
from corpora.rmhd import rmhd_documents
from corpora.simulate import SIMULATED_DIR
from models import metrics as em
from models.decisions import trajectory
from models.portable import PortableModel
from models.scorer import IncrementalScorer
from models.tokenize import Tokenizer, join_writings
from models.train import (
    CountMatrix,
    Fitted,
    Stream,
    TrainConfig,
    TrainingUser,
    auc,
    fit,
    kfold_folds,
    lco_folds,
    prf,
    user_streams,
)

OLD_VERSION = "tfidf-l1-logreg-b71be9b1a0c2"
OLD_COMMIT_FILES = "b71be9b1a0c2"


def fold_model(cm: CountMatrix, f: Fitted, tokenizer: Tokenizer, scale: float = 1.0,
               shift: float = 0.0) -> PortableModel:
    return PortableModel(name="fold", vocabulary=tuple(str(t) for t in cm.vocabulary[f.columns]),
                         idf=f.idf, coef=f.coef * scale, intercept=f.intercept * scale + shift,
                         sublinear_tf=f.sublinear, tokenizer=tokenizer)


def stream_metrics(scorer: IncrementalScorer, docs: Sequence[TrainingUser],
                   streams: Sequence[Stream], threshold: float) -> dict[str, float]:
    """Incremental θ over the streams, scored writing by writing by ``scorer``."""
    rows = []
    for st in streams:
        traj = trajectory(scorer, (docs[i].writings[0] for i in st.rows))
        k = next((i + 1 for i, p in enumerate(traj) if p > threshold), 0)
        rows.append(em.UserDecision(st.name, int(k > 0), k or len(traj), st.label))
    m = em.decision_metrics(rows)
    return {k: round(float(m[k]), 6) for k in ("f1", "precision", "recall", "erde5", "erde50")}


def old_model() -> PortableModel | None:
    """The previous bundled model from git history, if this is a git checkout."""
    import tempfile

    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "log", "--format=%H", "-S", OLD_COMMIT_FILES, "--",
             "models/default/model.json"],
            cwd=root, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    for commit in rev:
        with tempfile.TemporaryDirectory() as d:
            try:
                for name in ("model.json", "idf.npy", "coef.npy"):
                    blob = subprocess.run(["git", "show", f"{commit}:models/default/{name}"],
                                          cwd=root, capture_output=True, check=True).stdout
                    (Path(d) / name).write_bytes(blob)
                m = PortableModel.load(d)
            except (subprocess.CalledProcessError, ValueError):
                continue
            if m.version == OLD_VERSION:
                return m
    return None


def old_recipe_users() -> list[tuple[str, int, list[tuple[int, str]]]]:
    """Simulated train users: (name, label, [(RMHD row, text), ...])."""
    truth = read_truth(SIMULATED_DIR / "train-truth.txt")
    streams = read_wire_streams(SIMULATED_DIR / "train.jsonl.gz").users
    return [(u, truth[u], [(int(s.id[4:]), s.text) for s in streams[u]]) for u in sorted(truth)]


def run(model: PortableModel | None = None,
        say: Callable[[str], None] = lambda _m: None, with_old: bool = True) -> dict:
    model = model or PortableModel.load()
    r = model.report
    tok = model.tokenizer
    config = TrainConfig(c_grid=(r["C"],), sublinear_grid=(r["sublinear_tf"],),
                         penalty_grid=(r["penalty"],), folds=r["cv_folds"], seed=r["seed"],
                         min_df=r["min_df"], max_control_share=r.get("max_control_share"))
    cal = r.get("calibration", {})
    scale, shift = cal.get("scale", 1.0), cal.get("shift", 0.0)
    theta = 0.5
    docs = rmhd_documents()
    labels = np.array([d.label for d in docs])
    comm = np.array([d.community for d in docs], dtype=object)
    say("tokenising")
    control = [d.community if d.label == 0 else "" for d in docs]
    cm = CountMatrix([tok.tokens(join_writings(list(d.writings))) for d in docs], control)
    folds, _held = lco_folds(docs, config.folds, config.seed)
    streams = user_streams(docs, folds, config.seed)

    old_cfg = TrainConfig(validation="kfold", c_grid=(8.0,), sublinear_grid=(True,),
                          penalty_grid=("l1",), folds=4, max_control_share=None, calibrate=False)
    sim = old_recipe_users() if with_old else []
    shipped = old_model() if with_old else None
    shipped_scorer = IncrementalScorer(shipped) if shipped is not None else None
    old_tok = Tokenizer()

    systems = ["new"] + (["old_recipe"] if with_old else []) + (
        ["old_shipped"] if shipped is not None else [])
    oof = {s: np.full(len(docs), np.nan) for s in systems}
    per: dict[str, dict] = {}
    for n, (tr, te) in enumerate(folds, start=1):
        say(f"fold {n}/{len(folds)}")
        f_new = fit(cm, tr, labels, r["C"], r["penalty"], r["sublinear_tf"], config)
        scorers = {"new": IncrementalScorer(fold_model(cm, f_new, tok, scale, shift))}
        oof["new"][te] = 1 / (1 + np.exp(-(scale * f_new.decision(cm.X[te]) + shift)))
        if with_old:
            held_rows = {int(docs[i].user[4:]) for i in te}
            users = []
            for name, label, ws in sim:
                kept = tuple(t for row, t in ws if row not in held_rows)
                if kept:
                    users.append(TrainingUser(name, label, kept))
            ocm = CountMatrix([old_tok.tokens(join_writings(list(u.writings))) for u in users])
            olab = np.array([u.label for u in users])
            f_old = fit(ocm, np.arange(len(users)), olab, 8.0, "l1", True, old_cfg)
            old_m = fold_model(ocm, f_old, old_tok)
            scorers["old_recipe"] = IncrementalScorer(old_m)
            oof["old_recipe"][te] = old_m.predict_documents(docs[i].writings[0] for i in te)
        if shipped is not None:
            scorers["old_shipped"] = shipped_scorer
            oof["old_shipped"][te] = shipped.predict_documents(docs[i].writings[0] for i in te)
        pos = te[labels[te] == 1]
        mine = [st for st in streams if st.fold == n - 1]
        for c in sorted(set(comm[te[labels[te] == 0]].tolist())):
            neg = te[(labels[te] == 0) & (comm[te] == c)]
            group = [st for st in mine if st.community == c]
            row: dict = {"fold": n, "n_positive": len(pos), "n_control": len(neg),
                         "streams": {"users": len(group),
                                     "positive": sum(st.label for st in group)}}
            idx = np.r_[pos, neg]
            for s in systems:
                p = oof[s]
                f = prf(labels[idx], p[idx] > theta)
                row[s] = {"auc": round(auc(p[pos], p[neg]), 6),
                          "f1": round(f["f1"], 6), "precision": round(f["precision"], 6),
                          "recall": round(f["recall"], 6),
                          "streams": stream_metrics(scorers[s], docs, group, theta)}
            per[c] = row

    def summary(s: str) -> dict:
        aucs = [per[c][s]["auc"] for c in per]
        p = oof[s]
        f = prf(labels, p > theta)
        return {"auc_mean_community": round(float(np.mean(aucs)), 6),
                "auc_min_community": round(float(np.min(aucs)), 6),
                "auc_pooled": round(auc(p[labels == 1], p[labels == 0]), 6),
                **{k: round(v, 6) for k, v in f.items()},
                "streams_erde5_mean": round(float(np.mean(
                    [per[c][s]["streams"]["erde5"] for c in per])), 6),
                "streams_erde50_mean": round(float(np.mean(
                    [per[c][s]["streams"]["erde50"] for c in per])), 6),
                "streams_f1_mean": round(float(np.mean(
                    [per[c][s]["streams"]["f1"] for c in per])), 6)}

    # Random folds (grouped by author, stratified): communities shared by both sides.
    say("random folds")
    rnd = np.full(len(docs), np.nan)
    for tr, te in kfold_folds(docs, config.folds, config.seed):
        f_new = fit(cm, tr, labels, r["C"], r["penalty"], r["sublinear_tf"], config)
        rnd[te] = 1 / (1 + np.exp(-(scale * f_new.decision(cm.X[te]) + shift)))
    random_per = {c: round(auc(rnd[labels == 1], rnd[(labels == 0) & (comm == c)]), 6)
                  for c in sorted(per)}
    f = prf(labels, rnd > theta)
    return {
        "model_version": model.version,
        "old_model_version": shipped.version if shipped is not None else None,
        "threshold": theta,
        "streams": {"users": len(streams), "positive": sum(st.label for st in streams)},
        "folds": {str(i + 1): sorted(set(comm[te[labels[te] == 0]].tolist()))
                  for i, (_tr, te) in enumerate(folds)},
        "summary": {s: summary(s) for s in systems},
        "random_folds": {"auc_pooled": round(auc(rnd[labels == 1], rnd[labels == 0]), 6),
                         "auc_mean_community": round(float(np.mean(list(random_per.values()))), 6),
                         **{k: round(v, 6) for k, v in f.items()},
                         "per_community_auc": random_per},
        "per_community": per,
    }


def simulation_model(out: str | Path, model: PortableModel | None = None,
                     say: Callable[[str], None] = lambda _m: None) -> PortableModel:
    """The bundled recipe (same hyper-parameters, tokenizer, filter and threshold
    procedure) trained on the real posts less every post of the simulated TEST
    users, for an uncontaminated ``earlyrisk evaluate`` on the simulation."""
    from models.train import train

    model = model or PortableModel.load()
    r = model.report
    test_ids = {s.id for subs in read_wire_streams(SIMULATED_DIR / "test.jsonl.gz").users.values()
                for s in subs}
    docs = [d for d in rmhd_documents() if d.user not in test_ids]
    config = TrainConfig(name=f"{model.name}-without-simulated-test",
                         c_grid=(r["C"],), sublinear_grid=(r["sublinear_tf"],),
                         penalty_grid=(r["penalty"],), folds=r["cv_folds"], seed=r["seed"],
                         min_df=r["min_df"], max_control_share=r.get("max_control_share"))
    m = train(docs, config, tokenizer=model.tokenizer, progress=say,
              describe={"data": f"real posts less the simulated test users' ({len(docs)})"})
    m.save(out)
    return m


def markdown(rep: dict) -> str:
    systems = list(rep["summary"])
    names = {"new": "new", "old_recipe": "old recipe", "old_shipped": "old model"}
    out = ["| held-out community | " + " | ".join(
        f"AUC {names[s]}" for s in systems) + " | AUC new, random folds | F1 new | P new | R new "
        "| streams F1 new | ERDE5 new | ERDE50 new | ERDE5 old recipe | ERDE50 old recipe |",
        "|---|" + "---:|" * (len(systems) + 9)]
    for c, row in rep["per_community"].items():
        n = row["new"]
        o = row.get("old_recipe", {}).get("streams", {})
        out.append(f"| {c} | " + " | ".join(f"{row[s]['auc']:.3f}" for s in systems)
                   + f" | {rep['random_folds']['per_community_auc'][c]:.3f}"
                   + f" | {n['f1']:.3f} | {n['precision']:.3f} | {n['recall']:.3f}"
                   + f" | {n['streams']['f1']:.3f} | {n['streams']['erde5']:.3f}"
                   + f" | {n['streams']['erde50']:.3f}"
                   + (f" | {o['erde5']:.3f} | {o['erde50']:.3f} |" if o else " | - | - |"))
    s = rep["summary"]
    out.append("")
    out.append("| system | mean community AUC | worst community AUC | pooled AUC | F1 | P | R "
               "| streams F1 | streams ERDE5 | streams ERDE50 |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, v in s.items():
        out.append(f"| {names[k]} | {v['auc_mean_community']:.3f} | {v['auc_min_community']:.3f}"
                   f" | {v['auc_pooled']:.3f} | {v['f1']:.3f} | {v['precision']:.3f}"
                   f" | {v['recall']:.3f} | {v['streams_f1_mean']:.3f}"
                   f" | {v['streams_erde5_mean']:.3f} | {v['streams_erde50_mean']:.3f} |")
    rf = rep["random_folds"]
    out.append(f"| new, random folds | {rf['auc_mean_community']:.3f} | "
               f"{min(rf['per_community_auc'].values()):.3f} | {rf['auc_pooled']:.3f} | "
               f"{rf['f1']:.3f} | {rf['precision']:.3f} | {rf['recall']:.3f} | - | - | - |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: bundled)")
    ap.add_argument("--out", default="earlyrisk-lco.json", help="JSON report")
    ap.add_argument("--no-old", action="store_true", help="skip the old recipe and model")
    ap.add_argument("--simulation-model", default=None, metavar="DIR",
                    help="instead: train the bundled recipe without the simulated test "
                         "users' posts into DIR (for 'earlyrisk evaluate --model DIR')")
    args = ap.parse_args(argv)
    if args.simulation_model:
        m = simulation_model(args.simulation_model, PortableModel.load(args.model),
                             say=lambda m: print(m, file=sys.stderr))
        print(f"{m.version} -> {args.simulation_model}")
        return 0
    model = PortableModel.load(args.model)
    rep = run(model, say=lambda m: print(m, file=sys.stderr),
              with_old=not args.no_old)
    Path(args.out).write_text(json.dumps(rep, indent=1) + "\n")
    print(markdown(rep))
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
