"""Training: tf-idf + logistic regression, hyper-parameters by cross-validation.

Two ways of validating, one model family (the paper's, Martínez-Castaño et
al. 2020, section 3: a document is weighted with tf-idf and classified with a
regularised logistic regression, so the incremental scorer stays exact):

* **Leave communities out** (``validation="lco"``, the default for the bundled
  real posts). Every document carries the community it was written in. The
  control communities are dealt into ``folds`` groups and each group is held
  out *whole*: the model of a fold never saw a word of the communities it is
  tested on, as deployed it meets communities it never saw. Positive
  documents are dealt into the folds by author, and whenever any writing of
  an author is in a fold's test part, none of that author's writings is in
  its training part. C, the penalty (L1, the paper's, or L2) and the tf
  variant (raw, the paper's, or sublinear) are chosen by the mean over held-out
  control communities of the ranking AUC (held-out positives against that
  community's documents), then the model is refitted on everything.
* **Stratified k-fold over users** (``validation="kfold"``), the paper's
  recipe for user-level collections such as eRisk (one document per user,
  the user's writings joined), selecting on F1 at p > 0.5 as the paper did.

Classes are weighted inversely to their frequency. Deterministic: folds and
the solver are seeded and nothing depends on the clock, so the same data and
settings give a model with the same content hash.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.portable import PortableModel
from models.tokenize import Tokenizer, join_writings

DEFAULT_C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
#: The bundled model's features, chosen by ``python -m evaluation.features``
#: (leave-communities-out ablation; docs/MODEL.md).
#: Negation scope (3 words) and the VADER, Empath and first-person-singular pseudo-terms
#: each raised the held-out-community AUC; the Suicide Risk Lexicon lowered it.
DEFAULT_TOKENIZER = Tokenizer(version=2, negation_window=3,
                              lexicons=("vader", "empath", "pronouns"))
PENALTIES = ("l1", "l2")


@dataclass(frozen=True)
class TrainingUser:
    """A labelled training document: a user's writings (one writing for a post).

    ``community`` (where it was written) enables leave-communities-out
    validation; ``author`` (default: ``user``) keeps a person's writings on
    one side of every fold.
    """

    user: str
    label: int
    writings: tuple[str, ...]
    community: str = ""
    author: str = ""

    @property
    def person(self) -> str:
        return self.author or self.user


@dataclass(frozen=True)
class TrainConfig:
    name: str = "tfidf-logreg"
    c_grid: tuple[float, ...] = DEFAULT_C_GRID
    # Raw tf is the paper's setting; sublinear tf (1 + ln c) is searched too.
    sublinear_grid: tuple[bool, ...] = (False, True)
    # L1 is the paper's penalty; L2 is searched beside it.
    penalty_grid: tuple[str, ...] = PENALTIES
    validation: str = "lco"  # "lco" (needs communities) or "kfold"
    folds: int = 5
    min_df: int = 2
    seed: int = 20200630
    class_weight: str | None = "balanced"
    max_iter: int = 5000
    # Terms drawing more than this share of their training occurrences from one
    # control community are left out (community vocabulary, not signs); None: keep.
    max_control_share: float | None = 0.5
    # LCO only: Platt-scale the final model on the held-out-community predictions.
    calibrate: bool = True

    def __post_init__(self) -> None:
        if self.validation not in ("lco", "kfold"):
            raise ValueError(f"validation must be 'lco' or 'kfold', got {self.validation!r}")
        bad = sorted(set(self.penalty_grid) - set(PENALTIES))
        if bad or not self.penalty_grid:
            raise ValueError(f"penalties must be among {', '.join(PENALTIES)}, got {bad}")
        if self.folds < 2:
            raise ValueError("folds must be at least 2")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise ValueError("C values must be positive")


def training_data_hash(users: Sequence[TrainingUser]) -> str:
    """SHA-256 over documents, labels, communities and writings, in order."""
    h = hashlib.sha256()
    for u in users:
        extra = f"\t{u.community}\t{u.author}" if (u.community or u.author) else ""
        h.update(f"{u.user}\t{u.label}\t{len(u.writings)}{extra}\n".encode())
        for w in u.writings:
            h.update(hashlib.sha256(w.encode()).digest())
    return h.hexdigest()


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def logreg(c: float, penalty: str, config: TrainConfig):
    """The classifier: liblinear logistic regression, L1 (l1_ratio=1) or L2."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=c,
        l1_ratio=1.0 if penalty == "l1" else 0.0,
        solver="liblinear",
        class_weight=config.class_weight,
        random_state=config.seed,
        max_iter=config.max_iter,
    )


# -- folds ---------------------------------------------------------------------------
Fold = tuple[np.ndarray, np.ndarray]  # (train indices, test indices)


def lco_folds(docs: Sequence[TrainingUser], k: int, seed: int) -> tuple[list[Fold], dict]:
    """Leave-communities-out folds and the held-out control communities of each.

    Control communities are shuffled (seeded) and dealt round-robin into ``k``
    folds; positive documents are dealt by author. A fold trains on every
    document whose author has nothing in its test part.
    """
    if any(not d.community for d in docs):
        raise ValueError("leave-communities-out validation needs every document's community")
    controls = sorted({d.community for d in docs if d.label == 0})
    if len(controls) < k:
        raise ValueError(f"{len(controls)} control communities cannot fill {k} folds")
    rng = random.Random(seed)
    rng.shuffle(controls)
    fold_of_community = {c: i % k for i, c in enumerate(controls)}
    authors = sorted({d.person for d in docs if d.label == 1})
    rng.shuffle(authors)
    fold_of_author = {a: i % k for i, a in enumerate(authors)}
    test_fold = np.array([fold_of_community[d.community] if d.label == 0
                          else fold_of_author[d.person] for d in docs])
    persons = np.array([d.person for d in docs], dtype=object)
    folds: list[Fold] = []
    for f in range(k):
        test = np.flatnonzero(test_fold == f)
        tested = set(persons[test].tolist())
        train = np.array([i for i in range(len(docs))
                          if test_fold[i] != f and persons[i] not in tested], dtype=np.intp)
        folds.append((train, test))
    held_out = {f: sorted(c for c, g in fold_of_community.items() if g == f) for f in range(k)}
    return folds, held_out


def kfold_folds(docs: Sequence[TrainingUser], k: int, seed: int) -> list[Fold]:
    """Stratified k-fold by label with every person's documents in one fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([d.label for d in docs])
    groups = np.array([d.person for d in docs], dtype=object)
    split = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.asarray(tr, dtype=np.intp), np.asarray(te, dtype=np.intp))
            for tr, te in split.split(np.zeros(len(docs)), labels, groups)]


# -- fitting on a shared count matrix ------------------------------------------------
class CountMatrix:
    """Term counts of every document, tokenised once; folds select rows and columns.

    A fold's vocabulary is the terms used by at least ``min_df`` of its training
    documents, in the same (sorted) order CountVectorizer would give them, so
    a fold fitted here equals one fitted on its own documents from scratch.
    """

    def __init__(self, token_lists: Sequence[list[str]], control: Sequence[str] | None = None):
        from sklearn.feature_extraction.text import CountVectorizer

        vec = CountVectorizer(analyzer=_identity, lowercase=False)
        self.X = vec.fit_transform(token_lists).tocsr()
        self.X.sort_indices()
        vocab = [""] * len(vec.vocabulary_)
        for term, i in vec.vocabulary_.items():
            vocab[i] = term
        self.vocabulary = np.array(vocab, dtype=object)
        self.control = None if control is None else np.array(control, dtype=object)

    def columns(self, rows: np.ndarray, min_df: int,
                max_control_share: float | None = None) -> np.ndarray:
        """Terms used by ``min_df`` of ``rows``; with ``max_control_share``, less the
        terms that draw more than that share of their occurrences in ``rows`` from one
        control community (:attr:`control`: each document's control community or "")."""
        sub = self.X[rows]
        df = np.bincount(sub.indices, minlength=self.X.shape[1])
        keep = df >= min_df
        if max_control_share is not None and self.control is not None:
            total = np.asarray(sub.sum(axis=0)).ravel()
            ctl = self.control[rows]
            worst = np.zeros(self.X.shape[1])
            for c in sorted(set(ctl.tolist()) - {""}):
                worst = np.maximum(worst, np.asarray(sub[ctl == c].sum(axis=0)).ravel())
            keep &= worst <= max_control_share * np.maximum(total, 1)
        return np.flatnonzero(keep)


@dataclass
class Fitted:
    """A fitted fold or final model, in scoring terms."""

    columns: np.ndarray
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
    sublinear: bool

    def decision(self, counts) -> np.ndarray:
        """Logit for each row of a (documents x all terms) count matrix."""
        x = counts[:, self.columns].astype(np.float64)
        if self.sublinear:
            x.data = 1.0 + np.log(x.data)
        x = x.multiply(self.idf).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return (np.asarray(x @ self.coef).ravel() / norms) + self.intercept

    def predict_proba(self, counts) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision(counts)))


def fit(cm: CountMatrix, rows: np.ndarray, labels: np.ndarray, c: float, penalty: str,
        sublinear: bool, config: TrainConfig) -> Fitted:
    from sklearn.feature_extraction.text import TfidfTransformer

    cols = cm.columns(rows, config.min_df, config.max_control_share)
    counts = cm.X[rows][:, cols]
    tfidf = TfidfTransformer(norm="l2", use_idf=True, smooth_idf=True, sublinear_tf=sublinear)
    x = tfidf.fit_transform(counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = logreg(c, penalty, config).fit(x, labels[rows])
    return Fitted(cols, np.asarray(tfidf.idf_, dtype=np.float64),
                  np.asarray(lr.coef_[0], dtype=np.float64), float(lr.intercept_[0]), sublinear)


# -- figures -------------------------------------------------------------------------
def auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """Ranking AUC (Mann-Whitney), ties counted half."""
    from sklearn.metrics import roc_auc_score

    if len(scores_pos) == 0 or len(scores_neg) == 0:
        return float("nan")
    y = np.r_[np.ones(len(scores_pos)), np.zeros(len(scores_neg))]
    return float(roc_auc_score(y, np.r_[scores_pos, scores_neg]))


def prf(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    fn = int(np.sum(~predicted & (labels == 1)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def per_community(docs: Sequence[TrainingUser], folds: Sequence[Fold], oof: np.ndarray,
                  threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """For each held-out control community: its fold's held-out positives against it."""
    labels = np.array([d.label for d in docs])
    comm = np.array([d.community for d in docs], dtype=object)
    out: dict[str, dict[str, float]] = {}
    for _train, test in folds:
        pos = test[labels[test] == 1]
        for c in sorted(set(comm[test[labels[test] == 0]].tolist())):
            neg = test[(labels[test] == 0) & (comm[test] == c)]
            idx = np.r_[pos, neg]
            f = prf(labels[idx], oof[idx] > threshold)
            out[c] = {"auc": round(auc(oof[pos], oof[neg]), 6),
                      "f1": round(f["f1"], 6), "precision": round(f["precision"], 6),
                      "recall": round(f["recall"], 6),
                      "false_positive_rate": round(float(np.mean(oof[neg] > threshold)), 6),
                      "n_control": len(neg), "n_positive": len(pos)}
    return out


def grid_out_of_fold(cm: CountMatrix, labels: np.ndarray, folds: Sequence[Fold],
                     grid: Sequence[tuple[str, bool, float]], config: TrainConfig,
                     say: Callable[[str], None] = lambda _m: None
                     ) -> dict[tuple[str, bool, float], np.ndarray]:
    """Out-of-fold probabilities for every (penalty, sublinear, C) of ``grid``.

    Each fold's tf-idf is computed once per tf variant and shared by the grid.
    """
    from sklearn.feature_extraction.text import TfidfTransformer

    oofs = {g: np.full(len(labels), np.nan) for g in grid}
    for n, (train_idx, test_idx) in enumerate(folds, start=1):
        say(f"fold {n}/{len(folds)}: {len(train_idx)} training documents, "
            f"{len(test_idx)} held out, {len(grid)} settings")
        cols = cm.columns(train_idx, config.min_df, config.max_control_share)
        for sub in sorted({g[1] for g in grid}):
            tfidf = TfidfTransformer(norm="l2", use_idf=True, smooth_idf=True,
                                     sublinear_tf=sub)
            x_train = tfidf.fit_transform(cm.X[train_idx][:, cols])
            x_test = tfidf.transform(cm.X[test_idx][:, cols])
            for g in grid:
                if g[1] != sub:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lr = logreg(g[2], g[0], config).fit(x_train, labels[train_idx])
                z = np.asarray(x_test @ lr.coef_[0]).ravel() + lr.intercept_[0]
                oofs[g][test_idx] = 1.0 / (1.0 + np.exp(-z))
    return oofs


def out_of_fold(cm: CountMatrix, labels: np.ndarray, folds: Sequence[Fold], c: float,
                penalty: str, sublinear: bool, config: TrainConfig) -> np.ndarray:
    """Each document's probability from the fold model that did not train on it."""
    return grid_out_of_fold(cm, labels, folds, [(penalty, sublinear, c)], config)[
        (penalty, sublinear, c)]


@dataclass(frozen=True)
class Stream:
    """A validation pseudo-user: held-out posts of one fold, in order."""

    name: str
    fold: int
    community: str  # the held-out control community its control posts come from
    label: int
    rows: tuple[int, ...]


def user_streams(docs: Sequence[TrainingUser], folds: Sequence[Fold], seed: int,
                 writings: int = 10, positive_writings: int = 3) -> list[Stream]:
    """User-like streams made only of a fold's held-out posts (a simulation).

    The data have nearly one post per author, so validation users are
    assembled: within each fold, each held-out control community's posts are
    cut into streams of ``writings`` posts, in date order; a positive stream
    puts ``positive_writings`` of the fold's held-out positive posts at seeded
    random places among ``writings - positive_writings`` posts of one control
    community (people with depression write about other things too), a
    control stream is ``writings`` posts of one control community. Positive
    posts are dealt round-robin over the fold's communities, each used once.
    """
    rng = random.Random(seed)
    labels = np.array([d.label for d in docs])
    comm = np.array([d.community for d in docs], dtype=object)
    out: list[Stream] = []
    for f, (_tr, te) in enumerate(folds):
        pos = [int(i) for i in te[labels[te] == 1]]
        rng.shuffle(pos)
        communities = sorted(set(comm[te[labels[te] == 0]].tolist()))
        pools = {c: [int(i) for i in te[(labels[te] == 0) & (comm[te] == c)]]
                 for c in communities}
        n_pos_users = len(pos) // positive_writings
        per_comm = [n_pos_users // len(communities) + (j < n_pos_users % len(communities))
                    for j in range(len(communities))]
        for c, n_users in zip(communities, per_comm):
            pool = pools[c]
            for u in range(n_users):
                mine = [pos.pop() for _ in range(positive_writings)]
                other = [pool.pop(0) for _ in range(writings - positive_writings)]
                slots = sorted(rng.sample(range(writings), positive_writings))
                rows, it_p, it_o = [], iter(mine), iter(other)
                for k in range(writings):
                    rows.append(next(it_p) if k in slots else next(it_o))
                out.append(Stream(f"f{f}-{c}-pos{u:02d}", f, c, 1, tuple(rows)))
            for u in range(len(pool) // writings):
                out.append(Stream(f"f{f}-{c}-ctl{u:02d}", f, c, 0,
                                  tuple(pool[u * writings:(u + 1) * writings])))
    return out


def stream_logits(cm: CountMatrix, model: Fitted, stream: Stream) -> np.ndarray:
    """The model's logit after each writing of ``stream`` (prefix documents)."""
    from scipy.sparse import csr_matrix

    rows = cm.X[list(stream.rows)].toarray()
    prefix = csr_matrix(np.cumsum(rows, axis=0))
    return model.decision(prefix)


def erde_of(first: Sequence[int], truth: Sequence[int], o: float) -> float:
    """ERDE_o of decisions (first writing above θ, 0 = never), c_fp = positive share."""
    import math

    c_fp = float(np.mean(truth))
    total = 0.0
    for k, y in zip(first, truth):
        if k and y:
            total += 1.0 - 1.0 / (1.0 + math.exp(min(k - o, 700)))
        elif k:
            total += c_fp
        elif y:
            total += 1.0
    return total / len(truth)


def stream_decisions(logits: Sequence[np.ndarray], threshold_logit: float) -> list[int]:
    """Incremental θ: the 1-based writing where the logit first exceeds θ's, else 0."""
    out = []
    for z in logits:
        hit = np.flatnonzero(z > threshold_logit)
        out.append(int(hit[0]) + 1 if len(hit) else 0)
    return out


def choose_threshold(logits: Sequence[np.ndarray], truth: Sequence[int],
                     grid: Sequence[float] = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))
                     ) -> tuple[float, list[dict]]:
    """θ (on the calibrated post scale) maximising Incremental θ's F1 over the
    streams; ties go to the higher θ (fewer alerts)."""
    y = np.asarray(truth)
    rows = []
    for t in grid:
        k = np.array(stream_decisions(logits, float(np.log(t / (1 - t)))))
        f = prf(y, k > 0)
        rows.append({"threshold": float(t), **{a: round(b, 6) for a, b in f.items()},
                     "erde5": round(erde_of(k, y, 5), 6), "erde50": round(erde_of(k, y, 50), 6)})
    best = max(rows, key=lambda r: (r["f1"], r["threshold"]))
    return best["threshold"], rows


def platt(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) with sigmoid(a * logit(p) + b) calibrated on (held-out) ``probabilities``."""
    from sklearn.linear_model import LogisticRegression

    p = np.clip(probabilities, 1e-12, 1 - 1e-12)
    z = np.log(p / (1 - p)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000).fit(z, labels)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def apply_platt(probabilities: np.ndarray, a: float, b: float) -> np.ndarray:
    p = np.clip(probabilities, 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-(a * np.log(p / (1 - p)) + b)))


# -- training ------------------------------------------------------------------------
def train(
    users: Sequence[TrainingUser],
    config: TrainConfig = TrainConfig(),
    tokenizer: Tokenizer = Tokenizer(),
    progress: Callable[[str], None] | None = None,
    describe: dict | None = None,
) -> PortableModel:
    """Fit the model; the validation report travels inside it.

    ``describe`` (data source, label definition) is copied into the report.
    """
    labels = np.array([u.label for u in users])
    if set(labels.tolist()) != {0, 1}:
        raise ValueError("training needs both positive (1) and negative (0) users")
    if min(np.bincount(labels)) < config.folds:
        raise ValueError(
            f"each class needs at least {config.folds} users for {config.folds}-fold CV"
        )
    say = progress or (lambda _msg: None)

    say(f"tokenising {len(users)} documents")
    control = ([u.community if u.label == 0 else "" for u in users]
               if all(u.community for u in users) else None)
    cm = CountMatrix([tokenizer.tokens(join_writings(list(u.writings))) for u in users],
                     control)
    held_out: dict = {}
    if config.validation == "lco":
        folds, held_out = lco_folds(users, config.folds, config.seed)
    else:
        folds = kfold_folds(users, config.folds, config.seed)

    grid = [(pen, sub, c) for pen in config.penalty_grid for sub in config.sublinear_grid
            for c in config.c_grid]
    oofs = grid_out_of_fold(cm, labels, folds, grid, config, say)
    cv: list[dict] = []
    for pen, sub, c in grid:
        oof = oofs[(pen, sub, c)]
        row: dict = {"penalty": pen, "C": c, "sublinear_tf": sub}
        row.update({k: round(v, 6) for k, v in prf(labels, oof > 0.5).items()})
        if config.validation == "lco":
            comm = per_community(users, folds, oof)
            aucs = [v["auc"] for v in comm.values()]
            row["auc_mean_community"] = round(float(np.mean(aucs)), 6)
            row["auc_se_community"] = round(float(np.std(aucs, ddof=1) / np.sqrt(len(aucs))), 6)
            row["auc_min_community"] = round(float(np.min(aucs)), 6)
            row["auc_pooled"] = round(auc(oof[labels == 1], oof[labels == 0]), 6)
        cv.append(row)
    best = select(cv, config.validation)
    pen, sub, c = best["penalty"], best["sublinear_tf"], best["C"]
    say(f"refitting on all {len(users)} documents with penalty={pen} C={c:g} "
        f"sublinear_tf={sub}")
    final = fit(cm, np.arange(len(users)), labels, c, pen, sub, config)
    import sklearn

    report: dict = dict(describe or {})
    report.update({
        "method": ("tf-idf (smooth idf, l2 norm) + logistic regression (liblinear, "
                   "balanced class weights); a document is a user's writings joined "
                   "(one writing for a post)"),
        "penalty": pen,
        "C": c,
        "sublinear_tf": sub,
        "validation": config.validation,
        "cv_folds": config.folds,
        "cv_selection": SELECTION[config.validation],
        "cv_scores": cv,
        "cv_f1": best["f1"],
        "class_weight": config.class_weight,
        "min_df": config.min_df,
        "max_control_share": config.max_control_share,
        "seed": config.seed,
        "n_users": len(users),
        "n_positive": int(labels.sum()),
        "n_writings": int(sum(len(u.writings) for u in users)),
        "training_data_hash": training_data_hash(users),
        "sklearn_version": sklearn.__version__,
    })
    coef, intercept = final.coef, final.intercept
    if config.validation == "lco":
        oof = oofs[(pen, sub, c)]
        report["lco"] = {
            "held_out": {str(f): cs for f, cs in held_out.items()},
            "auc_mean_community": best["auc_mean_community"],
            "auc_se_community": best["auc_se_community"],
            "auc_min_community": best["auc_min_community"],
            "auc_pooled": best["auc_pooled"],
        }
        if config.calibrate:
            # Platt scaling on the held-out-community predictions, then a shift that
            # puts the operating point chosen on held-out user-like streams at p = 0.5
            # (so the default θ = 0.5 and the paper's bands apply; docs/MODEL.md).
            a, b = platt(oof, labels)
            streams = user_streams(users, folds, config.seed)
            logits: list[np.ndarray] = []
            by_fold = {}
            for f, (tr, _te) in enumerate(folds):
                by_fold[f] = fit(cm, tr, labels, c, pen, sub, config)
            for st in streams:
                logits.append(a * stream_logits(cm, by_fold[st.fold], st) + b)
            truth = [st.label for st in streams]
            theta, theta_grid = choose_threshold(logits, truth)
            shift = b - float(np.log(theta / (1 - theta)))
            coef, intercept = coef * a, intercept * a + shift
            oof = apply_platt(oof, a, shift)
            moved = [z - float(np.log(theta / (1 - theta))) for z in logits]
            report["calibration"] = {
                "method": ("Platt scaling of the out-of-fold (held-out-community) post "
                           "logits, then a shift putting the threshold chosen on held-out "
                           "user-like streams at p = 0.5"),
                "scale": round(a, 12), "platt_shift": round(b, 12), "shift": round(shift, 12),
                "positive_share": round(float(labels.mean()), 6),
                "stream_threshold": theta,
                "streams": {"users": len(streams), "positive": int(sum(truth)),
                            "writings": len(streams[0].rows) if streams else 0,
                            "positive_writings": 3},
                "stream_thresholds": theta_grid,
            }
            report["lco"]["streams"] = stream_report(streams, moved)
        report["lco"]["per_community"] = per_community(users, folds, oof)
        report["lco"]["operating_points"] = operating_points(users, oof)
        report["communities"] = community_summary(users)
        nz = np.flatnonzero(coef)
        if len(nz) > 1000:  # a dense (L2) model: the 500 strongest terms each way
            order = np.argsort(coef, kind="stable")
            nz = np.sort(np.r_[order[:500], order[-500:]])
        vocab_nz = [str(t) for t in cm.vocabulary[final.columns[nz]]]
        report["term_concentration"] = term_concentration(
            cm, users, final.columns[nz], vocab_nz)
    return PortableModel(
        name=config.name,
        vocabulary=tuple(str(t) for t in cm.vocabulary[final.columns]),
        idf=final.idf,
        coef=coef,
        intercept=intercept,
        sublinear_tf=sub,
        tokenizer=tokenizer,
        report=report,
    )


SELECTION = {
    "lco": ("mean held-out-community AUC; the best L1 setting unless an L2 setting beats "
            "it by more than one standard error (over communities) of the best; ties: "
            "raw tf, then smaller C"),
    "kfold": "F1 at p > 0.5 (the paper's); ties: L1, raw tf, then smaller C",
}


def select(cv: Sequence[dict], validation: str) -> dict:
    """The chosen row of the validation grid (rule: :data:`SELECTION`)."""
    if validation == "kfold":
        return max(cv, key=lambda r: (r["f1"], r["penalty"] == "l1", not r["sublinear_tf"],
                                      -r["C"]))

    def key(r: dict) -> tuple:
        return (r["auc_mean_community"], not r["sublinear_tf"], -r["C"])

    best = max(cv, key=key)
    l1 = [r for r in cv if r["penalty"] == "l1"]
    if not l1 or best["penalty"] == "l1":
        return best
    best_l1 = max(l1, key=key)
    margin = best["auc_mean_community"] - best_l1["auc_mean_community"]
    return best if margin > best["auc_se_community"] else best_l1


def operating_points(users: Sequence[TrainingUser], oof: np.ndarray,
                     thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9)) -> list[dict]:
    """Precision and recall over all held-out documents at each threshold."""
    labels = np.array([u.label for u in users])
    out = []
    for t in thresholds:
        f = prf(labels, oof > t)
        out.append({"threshold": t, **{k: round(v, 6) for k, v in f.items()},
                    "flagged": int(np.sum(oof > t))})
    return out


def stream_report(streams: Sequence[Stream], logits: Sequence[np.ndarray],
                  cuts: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9)) -> dict:
    """Incremental θ over the held-out streams: at each band cut-off, and per community."""
    y = np.array([st.label for st in streams])
    bands = []
    for t in cuts:
        k = np.array(stream_decisions(logits, float(np.log(t / (1 - t)))))
        f = prf(y, k > 0)
        bands.append({"threshold": t, **{a: round(b, 6) for a, b in f.items()},
                      "flagged": int(np.sum(k > 0)),
                      "erde5": round(erde_of(k, y, 5), 6), "erde50": round(erde_of(k, y, 50), 6)})
    k = np.array(stream_decisions(logits, 0.0))
    comm = np.array([st.community for st in streams], dtype=object)
    per = {}
    for c in sorted(set(comm.tolist())):
        m = comm == c
        f = prf(y[m], k[m] > 0)
        per[c] = {**{a: round(b, 6) for a, b in f.items()},
                  "erde5": round(erde_of(k[m], y[m], 5), 6),
                  "erde50": round(erde_of(k[m], y[m], 50), 6),
                  "users": int(m.sum()), "positive": int(y[m].sum())}
    return {"bands": bands, "per_community": per}


def community_summary(users: Sequence[TrainingUser]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for u in users:
        s = out.setdefault(u.community, {"documents": 0, "label": u.label})
        s["documents"] += 1
    return dict(sorted(out.items()))


def term_concentration(cm: CountMatrix, users: Sequence[TrainingUser], columns: np.ndarray,
                       terms: Sequence[str]) -> dict[str, dict]:
    """For each term: training occurrences, and the (control) community holding most of them.

    ``top_control_share`` is the artefact measure: a term that draws most of
    its occurrences from one control community is that community's vocabulary.
    """
    comm = np.array([u.community for u in users], dtype=object)
    label_of = {u.community: u.label for u in users}
    names = sorted(set(comm.tolist()))
    control = np.array([label_of[c] == 0 for c in names])
    member = {c: np.flatnonzero(comm == c) for c in names}
    counts = cm.X[:, columns].tocsr()
    per = np.vstack([np.asarray(counts[member[c]].sum(axis=0)).ravel() for c in names])
    out: dict[str, dict] = {}
    for j, term in enumerate(terms):
        total = int(per[:, j].sum())
        top = int(np.argmax(per[:, j]))
        ctl = np.where(control, per[:, j], -1)
        top_c = int(np.argmax(ctl))
        out[term] = {"occurrences": total, "top_community": names[top],
                     "top_share": round(float(per[top, j]) / total, 6) if total else 0.0,
                     "top_control_community": names[top_c],
                     "top_control_share": (round(float(per[top_c, j]) / total, 6)
                                           if total else 0.0)}
    return out
