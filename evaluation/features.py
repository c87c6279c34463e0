"""Which tokenizer features earn their place: leave-communities-out ablation.

    python -m evaluation.features [--out features.json]

Each candidate tokenizer (version 1 words; version 2 with negation scope
and/or lexicon pseudo-terms, see models/tokenize.py) is validated with the
same leave-communities-out folds, term filter and selection rule as the bundled
model's training (models.train), over L1 with sublinear tf and C in
{0.25, 0.5, 1} (the neighbourhood of the setting the full grid picks). A feature
group is kept only if adding it raises the held-out-community AUC: the mean
per-community difference (paired over the 25 held-out communities) must exceed
its standard error; the table says which did not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from corpora.rmhd import rmhd_documents
from models.tokenize import LEXICON_GROUPS, Tokenizer, join_writings
from models.train import (
    CountMatrix,
    TrainConfig,
    auc,
    grid_out_of_fold,
    lco_folds,
    per_community,
    select,
)

NEGATION_WINDOW = 3


def candidates() -> dict[str, Tokenizer]:
    all_groups = tuple(LEXICON_GROUPS)
    out = {
        "words (v1)": Tokenizer(),
        "words + negation": Tokenizer(version=2, negation_window=NEGATION_WINDOW),
        "words + lexicons": Tokenizer(version=2, lexicons=all_groups),
        "words + negation + lexicons": Tokenizer(version=2, negation_window=NEGATION_WINDOW,
                                                 lexicons=all_groups),
    }
    for g in all_groups:
        rest = tuple(x for x in all_groups if x != g)
        out[f"words + negation + lexicons - {g}"] = Tokenizer(
            version=2, negation_window=NEGATION_WINDOW, lexicons=rest)
        out[f"words + negation + {g}"] = Tokenizer(
            version=2, negation_window=NEGATION_WINDOW, lexicons=(g,))
    # Second round: the best set of the first (everything but the Suicide Risk
    # Lexicon), less each of its groups in turn, and without negation.
    best = tuple(g for g in all_groups if g != "srl")
    for g in best:
        rest = tuple(x for x in best if x != g)
        out[f"words + negation + lexicons - srl - {g}"] = Tokenizer(
            version=2, negation_window=NEGATION_WINDOW, lexicons=rest)
    out["words + lexicons - srl"] = Tokenizer(version=2, lexicons=best)
    return out


# The neighbourhood of the bundled model's setting (L1, sublinear tf, C = 0.5 was
# chosen for words alone and for words + negation over the full grid).
ABLATION_CONFIG = TrainConfig(penalty_grid=("l1",), sublinear_grid=(True,),
                              c_grid=(0.25, 0.5, 1.0))


def evaluate(tokenizer: Tokenizer, config: TrainConfig = ABLATION_CONFIG) -> dict:
    docs = rmhd_documents()
    labels = np.array([d.label for d in docs])
    control = [d.community if d.label == 0 else "" for d in docs]
    cm = CountMatrix([tokenizer.tokens(join_writings(list(d.writings))) for d in docs], control)
    folds, _ = lco_folds(docs, config.folds, config.seed)
    grid = [(p, s, c) for p in config.penalty_grid for s in config.sublinear_grid
            for c in config.c_grid]
    oofs = grid_out_of_fold(cm, labels, folds, grid, config)
    rows = []
    for (p, s, c), oof in oofs.items():
        comm = per_community(docs, folds, oof)
        aucs = [v["auc"] for v in comm.values()]
        rows.append({"penalty": p, "sublinear_tf": s, "C": c, "f1": 0.0,
                     "per_community": {k: v["auc"] for k, v in comm.items()},
                     "auc_mean_community": float(np.mean(aucs)),
                     "auc_se_community": float(np.std(aucs, ddof=1) / np.sqrt(len(aucs))),
                     "auc_min_community": float(np.min(aucs)),
                     "auc_pooled": auc(oof[labels == 1], oof[labels == 0])})
    best = select(rows, "lco")
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in best.items()
            if k != "f1"}


def paired(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """Mean and standard error of per-community AUC differences b - a."""
    d = np.array([b[c] - a[c] for c in sorted(a)])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="earlyrisk-features.json")
    ap.add_argument("--only", default=None, help="comma-separated candidate names")
    args = ap.parse_args(argv)
    cands = candidates()
    if args.only:
        cands = {k: v for k, v in cands.items() if k in args.only.split(",")}
    results = {}
    for name, tok in cands.items():
        print(f"validating {name}", file=sys.stderr, flush=True)
        results[name] = {"tokenizer": tok.to_json(), **evaluate(tok)}
        r = results[name]
        base = results[next(iter(results))]["per_community"]
        d, se = paired(base, r["per_community"])
        r["paired_vs_first"] = {"mean": round(d, 6), "se": round(se, 6)}
        print(f"| {name} | {r['penalty']} C={r['C']:g} {'sub' if r['sublinear_tf'] else 'raw'}"
              f" | {r['auc_mean_community']:.4f} | {r['auc_min_community']:.4f} | "
              f"{r['auc_pooled']:.4f} | {d:+.4f} ± {se:.4f} |", flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
