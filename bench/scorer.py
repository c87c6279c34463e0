"""Scorer benchmark: the incremental scorer against the paper's method.

All figures are CPU time of this process (``time.process_time``), so other
load on the machine changes them little; the baseline runs in the same
process on the same texts, so the ratio is the figure to trust.

* throughput: ``IncrementalScorer.update`` over a stream of texts spread
  over many users (one core, no Beam), with the compiled loop
  (models/_fastscore.c) when it is built, and beside it the pure-Python path
  on the mixed texts (the two give identical results);
* the same throughput with tokenizer version 2 features
  (``features_throughput``), for a model shaped like a trained one: the
  vocabulary is every term (words, negated words, lexicon pseudo-terms) of
  document frequency >= 2 in the bundled RMHD sample, as training with
  min_df 2 would keep (:func:`sample_feature_model`); and on the mix, the
  worst case (``features_worst``): the model's words, each also negated,
  and every lexicon pseudo-term plain and negated, so nothing the feature
  scanner finds is pruned (:func:`feature_model`). Skipped when the model
  already has the features;
* cost by history: the time of one more writing for users who have already
  written 10, 100, 500 or 1000 writings, for the incremental scorer and for
  the paper's method (accumulated count vector -> scikit-learn tf-idf
  transform -> logistic regression, at every writing).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bench import corpus
from models.portable import PortableModel
from models.scorer import IncrementalScorer, UserState
from models.tokenize import LEXICON_GROUPS, NEGATED_PREFIX, Tokenizer, load_lexicon

#: The feature settings benchmarked: every lexicon group and a 3-word negation scope.
FEATURES = Tokenizer(version=2, negation_window=3, lexicons=LEXICON_GROUPS)

HISTORIES = (10, 100, 500, 1000)


def _copy(state: UserState) -> UserState:
    st = UserState()
    st.counts = dict(state.counts)
    st.s1, st.s2, st.n = state.s1, state.s2, state.n
    return st


def throughput(scorer: IncrementalScorer, texts: list[str], n_users: int = 1000,
               repeat: int = 1) -> dict:
    """Submissions per CPU second of ``update`` over ``texts`` (round-robin users)."""
    best = float("inf")
    chars = sum(map(len, texts))
    for _ in range(repeat):
        states = [UserState() for _ in range(n_users)]
        t0 = time.process_time()
        update = scorer.update
        for i, text in enumerate(texts):
            update(states[i % n_users], text)
        best = min(best, time.process_time() - t0)
    return {
        "submissions": len(texts),
        "mean_chars": round(chars / len(texts), 1),
        "cpu_s": round(best, 4),
        "per_s": round(len(texts) / best),
        "us_per_submission": round(best / len(texts) * 1e6, 2),
    }


def feature_model(model: PortableModel, tokenizer: Tokenizer = FEATURES) -> PortableModel:
    """``model``'s words plus every feature term of ``tokenizer``, weighted at random.

    Each word also in its negated form, each lexicon pseudo-term plain and
    negated: nothing the feature scanner finds is pruned away. Weights are
    seeded random numbers (the cost of scoring does not depend on them).
    """
    lex = load_lexicon(tokenizer.lexicons)
    pseudo = {t for hits in lex.phrases.values() for t, _ in hits}
    words = [w for w in model.vocabulary if not w.startswith(NEGATED_PREFIX)]
    vocab = sorted(set(model.vocabulary) | {NEGATED_PREFIX + w for w in words} | pseudo
                   | {NEGATED_PREFIX + t for t in pseudo})
    rng = np.random.default_rng(13)
    return PortableModel(name="bench-features", vocabulary=tuple(vocab),
                         idf=rng.uniform(1.0, 8.0, len(vocab)), coef=rng.normal(0, 1, len(vocab)),
                         intercept=-1.0, sublinear_tf=model.sublinear_tf, tokenizer=tokenizer)


def sample_feature_model(tokenizer: Tokenizer = FEATURES, min_df: int = 2) -> PortableModel:
    """A model over the terms of document frequency >= ``min_df`` in the RMHD
    sample under ``tokenizer``, weighted at random (seeded)."""
    from collections import Counter

    from corpora.simulate import load_posts

    df: Counter[str] = Counter()
    for post in load_posts():
        df.update(set(tokenizer.tokens(post["post"])))
    vocab = tuple(sorted(t for t, c in df.items() if c >= min_df))
    rng = np.random.default_rng(14)
    return PortableModel(name="bench-sample-features", vocabulary=vocab,
                         idf=rng.uniform(1.0, 8.0, len(vocab)), coef=rng.normal(0, 1, len(vocab)),
                         intercept=-1.0, sublinear_tf=True, tokenizer=tokenizer)


class PaperScorer:
    """The paper's classifier chain, one writing at a time.

    Vectorise the writing (counts), add it to the user's accumulated count
    vector, re-apply tf-idf to the whole vector and predict with the logistic
    regression: what Martínez-Castaño et al. did at every new writing.
    """

    def __init__(self, model: PortableModel) -> None:
        pipe = model.to_sklearn()
        self._counts = pipe.named_steps["counts"]
        self._tfidf = pipe.named_steps["tfidf"]
        self._lr = pipe.named_steps["lr"]

    def new_user(self):
        from scipy.sparse import csr_matrix

        return csr_matrix((1, len(self._counts.vocabulary)), dtype=np.int64)

    def update(self, acc, text: str):
        acc = acc + self._counts.transform([text])
        p = self._lr.predict_proba(self._tfidf.transform(acc))[0, 1]
        return acc, float(p)


def _cost_at(histories: tuple[int, ...], texts: list[str], probes: list[str],
             make: Callable, step: Callable, copy: Callable, users: int) -> dict[int, float]:
    """CPU microseconds of one more writing at each history length."""
    out = {}
    for h in histories:
        total = 0.0
        n = 0
        for u in range(users):
            state = make()
            offset = (u * 7919) % len(texts)
            for j in range(h):
                state = step(state, texts[(offset + j) % len(texts)])
            for text in probes:
                s = copy(state)
                t0 = time.process_time()
                step(s, text)
                total += time.process_time() - t0
                n += 1
        out[h] = round(total / n * 1e6, 2)
    return out


def cost_by_history(model: PortableModel, kind: str, histories: tuple[int, ...] = HISTORIES,
                    users: int = 3, probes: int = 100, baseline_probes: int = 20,
                    baseline_histories: tuple[int, ...] | None = None) -> dict:
    """Per-writing cost at each history length, incremental and paper's method."""
    scorer = IncrementalScorer(model)
    paper = PaperScorer(model)
    history_texts = corpus.texts(kind, 3000, seed=11)
    probe_texts = corpus.texts(kind, probes, seed=12)

    def inc_step(state, text):
        scorer.update(state, text)
        return state

    def paper_step(acc, text):
        return paper.update(acc, text)[0]

    inc = _cost_at(histories, history_texts, probe_texts, UserState, inc_step, _copy, users)
    base = _cost_at(baseline_histories or histories, history_texts,
                    probe_texts[:baseline_probes], paper.new_user, paper_step,
                    lambda a: a, 1)
    ratio = {h: round(base[h] / inc[h], 1) for h in base if h in inc}
    first, last = min(inc), max(inc)
    return {
        "kind": kind,
        "incremental_us": inc,
        "paper_us": base,
        "speedup": ratio,
        "growth_last_vs_first": round(inc[last] / inc[first], 3),
    }


def run(quick: bool = False, model: PortableModel | None = None) -> dict:
    model = model or PortableModel.load()
    scorer = IncrementalScorer(model)
    n = 5_000 if quick else 50_000
    out: dict = {"compiled": scorer.compiled, "throughput": {}, "by_history": {}}
    for kind in corpus.KINDS:
        out["throughput"][kind] = throughput(scorer, corpus.texts(kind, n), repeat=1 if quick
                                             else 3)
    if scorer.compiled:
        python = IncrementalScorer(model, compiled=False)
        out["python_throughput"] = {"mix": throughput(python, corpus.texts("mix", n),
                                                      repeat=1 if quick else 3)}
    if not (model.tokenizer.negation_window and model.tokenizer.lexicons):
        featured = IncrementalScorer(sample_feature_model())
        out["features_throughput"] = {
            kind: throughput(featured, corpus.texts(kind, n), repeat=1 if quick else 3)
            for kind in corpus.KINDS}
        out["features_worst"] = {"mix": throughput(IncrementalScorer(feature_model(model)),
                                                   corpus.texts("mix", n),
                                                   repeat=1 if quick else 3)}
    histories = (10, 100) if quick else HISTORIES
    for kind in ("comments", "posts"):
        out["by_history"][kind] = cost_by_history(
            model, kind, histories, users=1 if quick else 3,
            probes=30 if quick else 200, baseline_probes=5 if quick else 20)
    return out
