"""Training: one document per user, tf-idf, L1 logistic regression, C by CV.

Follows the paper's recipe (Martínez-Castaño et al. 2020, section 3): each
training user's writings are joined into one document (a blank line apart),
weighted with tf-idf, and classified with an L1-regularised logistic
regression whose C is chosen by stratified 4-fold cross-validation on F1,
then refit on all training users. One addition: the CV search also tries
sublinear tf (1 + ln count), which long user documents favour. Classes are
weighted inversely to their frequency, since positives are a minority.

Deterministic: the folds and liblinear's coordinate order are seeded and
nothing depends on the clock, so the same data and settings give a model with
the same content hash.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.portable import PortableModel
from models.tokenize import Tokenizer, join_writings

DEFAULT_C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


@dataclass(frozen=True)
class TrainingUser:
    user: str
    label: int
    writings: tuple[str, ...]


@dataclass(frozen=True)
class TrainConfig:
    name: str = "tfidf-l1-logreg"
    c_grid: tuple[float, ...] = DEFAULT_C_GRID
    # Raw tf is the paper's setting; sublinear tf (1 + ln c) is searched too.
    sublinear_grid: tuple[bool, ...] = (False, True)
    folds: int = 4
    min_df: int = 2
    seed: int = 20200630
    class_weight: str | None = "balanced"
    max_iter: int = 5000


def training_data_hash(users: Sequence[TrainingUser]) -> str:
    """SHA-256 over users, labels and writings in order (format independent)."""
    h = hashlib.sha256()
    for u in users:
        h.update(f"{u.user}\t{u.label}\t{len(u.writings)}\n".encode())
        for w in u.writings:
            h.update(hashlib.sha256(w.encode()).digest())
    return h.hexdigest()


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _logreg(c: float, config: TrainConfig):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=c,
        l1_ratio=1.0,
        solver="liblinear",
        class_weight=config.class_weight,
        random_state=config.seed,
        max_iter=config.max_iter,
    )


def train(
    users: Sequence[TrainingUser],
    config: TrainConfig = TrainConfig(),
    tokenizer: Tokenizer = Tokenizer(),
    progress: Callable[[str], None] | None = None,
) -> PortableModel:
    """Fit the model; the cross-validation report travels inside it."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
    from sklearn.metrics import f1_score, precision_score, recall_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline

    labels = np.array([u.label for u in users])
    if set(labels.tolist()) != {0, 1}:
        raise ValueError("training needs both positive (1) and negative (0) users")
    if min(np.bincount(labels)) < config.folds:
        raise ValueError(
            f"each class needs at least {config.folds} users for {config.folds}-fold CV"
        )
    say = progress or (lambda _msg: None)

    # Tokenise once; every fold and the final fit reuse the token lists.
    say(f"tokenising {len(users)} users")
    docs = [tokenizer.tokens(join_writings(list(u.writings))) for u in users]

    def pipeline(c: float, sublinear: bool):
        return Pipeline(
            [
                ("counts", CountVectorizer(analyzer=_identity, min_df=config.min_df)),
                ("tfidf", TfidfTransformer(
                    norm="l2", use_idf=True, smooth_idf=True, sublinear_tf=sublinear)),
                ("lr", _logreg(c, config)),
            ]
        )

    folds = list(
        StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed).split(
            np.zeros(len(labels)), labels
        )
    )
    cv: list[dict] = []
    grid = [(sub, c) for sub in config.sublinear_grid for c in config.c_grid]
    for n, (sub, c) in enumerate(grid, start=1):
        say(f"[{n}/{len(grid)}] cross-validating C={c:g} sublinear_tf={sub}")
        pred = np.zeros(len(labels), dtype=int)
        for train_idx, test_idx in folds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = pipeline(c, sub).fit([docs[i] for i in train_idx], labels[train_idx])
            pred[test_idx] = m.predict([docs[i] for i in test_idx])
        cv.append(
            {
                "C": c,
                "sublinear_tf": sub,
                "f1": round(float(f1_score(labels, pred, zero_division=0)), 6),
                "precision": round(float(precision_score(labels, pred, zero_division=0)), 6),
                "recall": round(float(recall_score(labels, pred, zero_division=0)), 6),
            }
        )
    # Highest CV F1; ties go to raw tf (the paper's), then the smaller C.
    best = max(cv, key=lambda r: (r["f1"], not r["sublinear_tf"], -r["C"]))
    say(f"refitting on all users with C={best['C']:g} sublinear_tf={best['sublinear_tf']}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = pipeline(best["C"], best["sublinear_tf"]).fit(docs, labels)

    vec = final.named_steps["counts"]
    vocab = [None] * len(vec.vocabulary_)
    for term, i in vec.vocabulary_.items():
        vocab[i] = term
    import sklearn

    report = {
        "method": "one document per user; tf-idf (smooth idf, l2); L1 logistic regression",
        "C": best["C"],
        "sublinear_tf": best["sublinear_tf"],
        "cv_folds": config.folds,
        "cv_scores": cv,
        "cv_f1": best["f1"],
        "class_weight": config.class_weight,
        "min_df": config.min_df,
        "seed": config.seed,
        "n_users": len(users),
        "n_positive": int(labels.sum()),
        "n_writings": int(sum(len(u.writings) for u in users)),
        "training_data_hash": training_data_hash(users),
        "sklearn_version": sklearn.__version__,
    }
    lr = final.named_steps["lr"]
    return PortableModel(
        name=config.name,
        vocabulary=tuple(vocab),
        idf=np.asarray(final.named_steps["tfidf"].idf_, dtype=np.float64),
        coef=np.asarray(lr.coef_[0], dtype=np.float64),
        intercept=float(lr.intercept_[0]),
        sublinear_tf=best["sublinear_tf"],
        tokenizer=tokenizer,
        report=report,
    )
