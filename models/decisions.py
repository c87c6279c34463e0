"""The paper's decision methods (its Table 2), as the evaluator runs them.

Each method reads one user's writings in chronological order and emits a
:class:`Outcome`: the decision (1 = at risk) and how many writings it had seen
when it decided. Methods that need the model score the writings with
:class:`~models.scorer.IncrementalScorer`, the pipeline's own scorer, and the
policy methods (Incremental θ and any policy of :mod:`models.policy`) call the
policy's ``decide`` with exactly the arguments the pipeline's scoring DoFn
passes, so the pipeline's first alert for a user *is* the evaluator's
positive decision (a slow test checks this on the bundled stream).

Two ways in, one logic: :meth:`DecisionMethod.run` scores texts lazily (a
policy stops reading at its first alert, as a live system would), and
:meth:`DecisionMethod.decide` takes the user's probability trajectory when the
evaluator has already scored it once for all methods.

Method specifications (``earlyrisk evaluate --methods``)::

    random[:SEED]  depressed  first:N  all  incremental:THETA  POLICY[:ARGS]

where POLICY is any name :func:`models.policy.make_policy` knows.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from models.policy import POLICIES, IncrementalPolicy, Policy, make_policy
from models.scorer import IncrementalScorer, UserState

#: The paper's classifier decision: p > 0.5 (logistic regression's predict).
CLASSIFIER_THRESHOLD = 0.5

PAPER_METHODS = (
    "random", "depressed", "first:10", "first:100", "first:500", "all",
    "incremental:0.5", "incremental:0.75", "incremental:0.9",
)


class MethodSpecError(ValueError):
    """A --methods entry that names no method; the message says why."""


@dataclass(frozen=True)
class Outcome:
    decision: int
    writings_seen: int


def score_stream(scorer: IncrementalScorer, texts: Iterable[str]) -> Iterator[float]:
    """p_user after each writing, computed lazily with a fresh user state."""
    state = UserState()
    for text in texts:
        yield scorer.update(state, text).p_user


def trajectory(scorer: IncrementalScorer, texts: Iterable[str]) -> tuple[float, ...]:
    return tuple(score_stream(scorer, texts))


class DecisionMethod:
    """Base class: subclasses implement :meth:`_decide` over an iterator of p_user."""

    name: str = "method"
    needs_model: bool = True

    def _decide(self, user: str, probabilities: Iterator[float], n_writings: int) -> Outcome:
        raise NotImplementedError

    def decide(self, user: str, probabilities: Sequence[float]) -> Outcome:
        """Decision from a precomputed trajectory (one p_user per writing)."""
        if not probabilities:
            raise ValueError(f"user {user!r} has no writings")
        return self._decide(user, iter(probabilities), len(probabilities))

    def run(self, user: str, texts: Sequence[str], scorer: IncrementalScorer) -> Outcome:
        """Decision from the texts themselves, scored only as far as needed."""
        if not texts:
            raise ValueError(f"user {user!r} has no writings")
        return self._decide(user, score_stream(scorer, texts), len(texts))


class RandomMethod(DecisionMethod):
    """A coin flip per user, at the first writing; seeded, and independent of
    the order in which users are evaluated (the coin is a hash of seed and user)."""

    needs_model = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.name = "Random" if seed == 0 else f"Random (seed {seed})"

    def _decide(self, user, probabilities, n_writings):
        h = hashlib.sha256(f"{self.seed}|{user}".encode()).digest()
        return Outcome(h[0] & 1, 1)


class DepressedMethod(DecisionMethod):
    """Everyone is at risk, decided at the first writing."""

    name = "Depressed"
    needs_model = False

    def _decide(self, user, probabilities, n_writings):
        return Outcome(1, 1)


class FirstNMethod(DecisionMethod):
    """Classify the first n writings (all of them if fewer), once."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n
        self.name = f"First {n}"

    def _decide(self, user, probabilities, n_writings):
        k = min(self.n, n_writings)
        # Reads exactly k writings: the k-th probability is the decision's.
        p = next(itertools.islice(probabilities, k - 1, k))
        return Outcome(int(p > CLASSIFIER_THRESHOLD), k)


class AllMethod(DecisionMethod):
    """Classify the whole history, once, after the last writing."""

    name = "All"

    def _decide(self, user, probabilities, n_writings):
        p = deque(probabilities, maxlen=1)[0]
        return Outcome(int(p > CLASSIFIER_THRESHOLD), n_writings)


class PolicyMethod(DecisionMethod):
    """Any pipeline policy: positive at its first alert, else negative after
    all writings. The bookkeeping mirrors transforms.scoring._ScoreUserDoFn."""

    def __init__(self, policy: Policy, name: str | None = None) -> None:
        self.policy = policy
        self.name = name or policy.label

    def _decide(self, user, probabilities, n_writings):
        alerts, last_band = 0, -1
        for k, p in enumerate(probabilities, start=1):
            if self.policy.decide(p, k, alerts, last_band):
                # The first alert is the eRisk decision, so reading stops here
                # (the pipeline goes on, possibly re-alerting on escalation).
                return Outcome(1, k)
        return Outcome(0, n_writings)


def incremental(threshold: float) -> PolicyMethod:
    """The paper's Incremental θ over the pipeline's own policy class."""
    return PolicyMethod(IncrementalPolicy(threshold), f"Incremental {threshold:g}")


def parse_method(spec: str) -> DecisionMethod:
    """One method from its specification (see the module docstring)."""
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    try:
        if name == "random":
            return RandomMethod(int(arg) if arg else 0)
        if name == "depressed" and not arg:
            return DepressedMethod()
        if name == "all" and not arg:
            return AllMethod()
        if name == "first":
            if not arg:
                raise MethodSpecError("first needs n, e.g. first:10")
            return FirstNMethod(int(arg))
        if name == "incremental":
            return incremental(float(arg) if arg else 0.5)
        if name in POLICIES:
            return PolicyMethod(make_policy(name, arg or None))
    except MethodSpecError:
        raise
    except ValueError as e:
        raise MethodSpecError(f"method {spec!r}: {e}") from None
    known = "random[:SEED], depressed, first:N, all, incremental:THETA, " + ", ".join(
        f"{p}[:ARGS]" for p in POLICIES if p != "incremental")
    raise MethodSpecError(f"unknown method {spec!r} (known: {known})")


def parse_methods(specs: str | Sequence[str]) -> list[DecisionMethod]:
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    methods = [parse_method(s) for s in items if s.strip()]
    if not methods:
        raise MethodSpecError("no methods given")
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MethodSpecError(f"method listed twice: {dupes[0]}")
    return methods
