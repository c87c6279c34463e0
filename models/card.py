"""A model card: what a portable model was trained on, how it was validated, what it weighs.

Everything comes from the model directory itself (``model.json``'s training
report and the arrays), so ``earlyrisk model show`` describes exactly the model
the pipeline loads. docs/MODEL.md holds the bundled model's card
(``earlyrisk model show --markdown``).
"""

from __future__ import annotations

import numpy as np

from models.portable import PortableModel

ARTEFACT_SHARE = 0.5  # a positive term drawing more than this from one control community


def top_terms(model: PortableModel, n: int, positive: bool = True) -> list[tuple[str, float]]:
    """The ``n`` largest (or most negative) non-zero weights, strongest first."""
    coef = model.coef
    order = np.argsort(-coef if positive else coef, kind="stable")
    out = []
    for i in order[:n]:
        if (coef[i] > 0) if positive else (coef[i] < 0):
            out.append((model.vocabulary[i], float(coef[i])))
    return out


def artefacts(model: PortableModel, n: int = 50, share: float = ARTEFACT_SHARE
              ) -> list[tuple[str, str, float]]:
    """Top-``n`` positive terms drawing more than ``share`` of their training
    occurrences from one control community: (term, community, share)."""
    conc = model.report.get("term_concentration", {})
    out = []
    for term, _w in top_terms(model, n):
        c = conc.get(term)
        if c is not None and c["top_control_share"] > share:
            out.append((term, c["top_control_community"], c["top_control_share"]))
    return out


def _terms_table(model: PortableModel, terms: list[tuple[str, float]], md: bool) -> list[str]:
    conc = model.report.get("term_concentration", {})
    head = ("term", "weight", "occurrences", "most in (share)", "most in a control (share)")
    rows = []
    for t, w in terms:
        c = conc.get(t)
        if c:
            rows.append((t, f"{w:+.3f}", str(c["occurrences"]),
                         f"{c['top_community']} ({c['top_share']:.2f})",
                         f"{c['top_control_community']} ({c['top_control_share']:.2f})"))
        else:
            rows.append((t, f"{w:+.3f}", "-", "-", "-"))
    return _table(head, rows, md, right=(1, 2))


def _table(head, rows, md: bool, right=()) -> list[str]:
    if md:
        out = ["| " + " | ".join(head) + " |",
               "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


def model_card(model: PortableModel, top: int = 25, markdown: bool = False) -> str:
    r = model.report
    md = markdown
    h = (lambda s: f"\n## {s}\n") if md else (lambda s: f"\n{s}\n{'-' * len(s)}")
    out = [f"# Model card: {model.version}" if md else f"Model card: {model.version}"]
    out.append("")
    kv = [
        ("version", model.version),
        ("content hash", model.content_hash),
        ("family", "tf-idf + logistic regression (exact incremental scoring)"),
        ("vocabulary", f"{len(model.vocabulary):,} terms, {model.n_nonzero:,} non-zero weights"),
        ("intercept", f"{model.intercept:+.4f}"),
        ("tokenizer", ", ".join(f"{k}={v}" for k, v in model.tokenizer.to_json().items())),
    ]
    for k in ("data", "unit", "labels"):
        if k in r:
            kv.append((k, str(r[k])))
    if "n_users" in r:
        kv.append(("documents", f"{r['n_users']:,} ({r['n_positive']:,} positive), "
                                f"{r['n_writings']:,} writings"))
    if "penalty" in r:
        kv.append(("chosen", f"penalty {r['penalty'].upper()}, C = {r['C']:g}, "
                             f"{'sublinear' if r['sublinear_tf'] else 'raw'} tf, min_df = "
                             f"{r.get('min_df')}, class weights {r.get('class_weight')}"))
        kv.append(("validation", f"{r['cv_folds']}-fold {r['validation']}; selection: "
                                 f"{r.get('cv_selection', '')}"))
    if r.get("max_control_share") is not None:
        kv.append(("term filter", f"terms drawing more than {r['max_control_share']:.0%} of "
                                  "their training occurrences from one control community are "
                                  "left out"))
    cal = r.get("calibration")
    if cal:
        kv.append(("calibration", f"{cal['method']}: logit x {cal['scale']:.4f} "
                                  f"{cal['shift']:+.4f} (Platt alone: "
                                  f"{cal.get('platt_shift', cal['shift']):+.4f}, "
                                  f"{cal['positive_share']:.1%} positives)"))
    kv.append(("sklearn", str(r.get("sklearn_version", "-"))))
    if md:
        out += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in kv]
    else:
        w = max(len(k) for k, _ in kv)
        out += [f"{k.ljust(w)}  {v}" for k, v in kv]

    lco = r.get("lco")
    if lco:
        out.append(h("Leave-communities-out validation (held-out figures)"))
        out.append(f"mean AUC over held-out control communities {lco['auc_mean_community']:.3f} "
                   f"(standard error {lco.get('auc_se_community', float('nan')):.3f}), worst "
                   f"{lco['auc_min_community']:.3f}, pooled {lco['auc_pooled']:.3f}. Each "
                   "control community is scored by a model that never saw it, against the "
                   "held-out positive posts of the same fold.")
        out.append("")
        rows = [(c, f"{v['auc']:.3f}", f"{v['f1']:.3f}", f"{v['precision']:.3f}",
                 f"{v['recall']:.3f}", f"{v['false_positive_rate']:.3f}")
                for c, v in sorted(lco["per_community"].items(), key=lambda kv: kv[1]["auc"])]
        out += _table(("held-out community", "AUC", "F1", "P", "R", "false-positive rate"),
                      rows, md, right=(1, 2, 3, 4, 5))
        st = lco.get("streams")
        if st and cal:
            out.append(h("Threshold and priority bands (held-out user-like streams)"))
            out.append(
                f"Procedure: the held-out post logits are Platt-scaled, then θ is the value "
                f"(grid 0.05..0.95) that maximises the F1 of Incremental θ over "
                f"{cal['streams']['users']} user-like streams of held-out posts "
                f"({cal['streams']['positive']} positive: {cal['streams']['positive_writings']} "
                f"positive posts among {cal['streams']['writings']}; controls: "
                f"{cal['streams']['writings']} posts of one held-out community). It was "
                f"{cal['stream_threshold']:g}; the model's intercept is shifted so that it "
                "sits at p = 0.5, the default θ, and the priority bands keep the paper's "
                "cut-offs above it. p is a screening score, not a calibrated probability.")
            out.append("")
            rows = [(f"p > {b['threshold']:g}", str(b["flagged"]), f"{b['precision']:.3f}",
                     f"{b['recall']:.3f}", f"{b['f1']:.3f}", f"{b['erde5']:.3f}",
                     f"{b['erde50']:.3f}") for b in st["bands"]]
            out += _table(("alert at", "streams flagged", "precision", "recall", "F1",
                           "ERDE5", "ERDE50"), rows, md, right=(1, 2, 3, 4, 5, 6))
            out.append("")
            out.append("Per held-out community (streams whose control posts come from it; "
                       "Incremental 0.5):")
            out.append("")
            rows = [(c, f"{v['users']} ({v['positive']})", f"{v['precision']:.3f}",
                     f"{v['recall']:.3f}", f"{v['f1']:.3f}", f"{v['erde5']:.3f}",
                     f"{v['erde50']:.3f}")
                    for c, v in sorted(st["per_community"].items(), key=lambda kv: kv[1]["f1"])]
            out += _table(("held-out community", "streams (positive)", "P", "R", "F1",
                           "ERDE5", "ERDE50"), rows, md, right=(1, 2, 3, 4, 5, 6))
        ops = lco.get("operating_points")
        if ops:
            out.append(h("Single held-out posts at each cut-off"))
            out.append("All held-out posts (7.4 % positive), each scored alone by the model "
                       "of its fold:")
            out.append("")
            rows = [(f"p > {o['threshold']:g}", str(o["flagged"]), f"{o['precision']:.3f}",
                     f"{o['recall']:.3f}", f"{o['f1']:.3f}") for o in ops]
            out += _table(("cut-off", "flagged posts", "precision", "recall", "F1"), rows,
                          md, right=(1, 2, 3, 4))
    elif "cv_f1" in r:
        out.append(h("Validation"))
        out.append(f"{r.get('cv_folds')}-fold {r.get('validation', 'kfold')} CV F1 "
                   f"{r['cv_f1']:.3f}")

    out.append(h(f"Top {top} terms raising the score (logit weight per unit of "
                 "normalised tf-idf)"))
    out += _terms_table(model, top_terms(model, top, True), md)
    out.append(h(f"Top {top} terms lowering the score"))
    out += _terms_table(model, top_terms(model, top, False), md)
    if "term_concentration" in r:
        bad = artefacts(model)
        out.append("")
        out.append("artefact check: " + (
            "none of the top 50 positive terms draws most of its occurrences from one "
            "control community" if not bad else
            "top positive terms concentrated in one control community: "
            + ", ".join(f"{t} ({c} {s:.0%})" for t, c, s in bad)))
    return "\n".join(out)
