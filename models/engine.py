"""What happens to one user's batch of submissions, for every engine.

The Beam DoFn (:mod:`transforms.scoring`) and the native Flink job wire their
keyed state, timers and outputs around :class:`UserProcessor`; the
arithmetic (:mod:`models.scorer`), the decision (:mod:`models.policy`) and the
records (:mod:`models.records`) are decided here once, so the engines cannot
disagree about a score, an alert or a dead letter.

For each submission of a batch, in arrival order, :meth:`UserProcessor.process`
yields ``(output, record)`` pairs:

* ``("dead_letters", DeadLetter)`` for a redelivery (same id within the user's
  dedupe window), which changes no count and no probability;
* ``("scores", ScoreRecord)`` for every new writing;
* ``("writings", WritingRecord)`` with its text, unless ``store_text`` is off;
* ``("alerts", AlertRecord)`` when the decision policy fires, with the
  user's top terms and the triggering writing's explanation
  (:func:`models.explain.alert_explanation`).

The caller owns the state's storage: it passes the user's
:class:`~models.scorer.UserState` (a fresh one for a new user), which is
updated in place, and writes it back if :attr:`BatchResult.changed`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from models.deadletters import dead_letter
from models.explain import alert_explanation
from models.policy import IncrementalPolicy, band_index
from models.records import AlertRecord, ScoreRecord, Submission, WritingRecord, priority_band
from models.scorer import DEFAULT_DEDUPE_WINDOW, IncrementalScorer, UserState

SCORES = "scores"
ALERTS = "alerts"
WRITINGS = "writings"
DEAD_LETTERS = "dead_letters"
DEFAULT_STATE_TTL_S = 365 * 86_400.0
MAX_EXPIRY_SLACK_S = 86_400.0


def expiry_slot(last_event: float, ttl_s: float) -> float:
    """When to forget a user whose last writing was at ``last_event``.

    The end of the TTL, rounded up to a multiple of ``min(TTL / 64, 1 day)``:
    writings that land in the same slot need not move the timer.
    """
    slack = min(ttl_s / 64, MAX_EXPIRY_SLACK_S)
    return math.ceil((last_event + ttl_s) / slack) * slack


def alert_id(user_id: str, model_version: str, policy: str, seq: int) -> str:
    """Deterministic alert id: a replayed alert is the same row."""
    return hashlib.sha256(f"{user_id}|{model_version}|{policy}|{seq}".encode()).hexdigest()[:24]


@dataclasses.dataclass
class BatchResult:
    """What a batch did, for the caller's state, timer and counters."""

    scored: int = 0
    duplicates: int = 0
    alerts: int = 0
    # The user's last event time before the batch (-inf for a new user).
    first_event: float = float("-inf")

    @property
    def changed(self) -> bool:
        """Whether the state must be written back (redeliveries change nothing)."""
        return self.scored > 0

    def timer_moves(self, state: UserState, ttl_s: float) -> bool:
        """Whether the expiry timer must be (re)set after this batch."""
        if not self.changed:
            return False
        if not math.isfinite(self.first_event):
            return True
        return expiry_slot(state.last_event, ttl_s) != expiry_slot(self.first_event, ttl_s)


class UserProcessor:
    """Scores a user's submissions against their state and decides alerts."""

    def __init__(
        self,
        scorer: IncrementalScorer,
        policy: IncrementalPolicy = IncrementalPolicy(),
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        top_n: int = 8,
        store_text: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if dedupe_window < 1:
            raise ValueError("dedupe window must be at least 1")
        self.scorer = scorer
        self.policy = policy
        self.dedupe_window = dedupe_window
        self.top_n = top_n
        self.store_text = store_text
        self._clock = clock

    def process(self, user_id: str, state: UserState, subs: Iterable[Submission],
                result: BatchResult | None = None) -> Iterator[tuple[str, Any]]:
        """Yield the batch's outputs; ``result`` (if given) is filled in as it goes."""
        res = result if result is not None else BatchResult()
        res.first_event = state.last_event
        scorer, policy, window = self.scorer, self.policy, self.dedupe_window
        version = scorer.version
        for sub in subs:
            if not state.remember(sub.id, window):
                res.duplicates += 1
                raw = json.dumps(dataclasses.asdict(sub), ensure_ascii=False)
                yield DEAD_LETTERS, dead_letter(
                    "dedupe", "duplicate", f"submission {sub.id} already scored for this user",
                    sub.source, raw)
                continue
            s1, s2 = state.s1, state.s2  # the user before this writing, for its explanation
            scored = scorer.update(state, sub.text, sub.created_utc)
            res.scored += 1
            yield SCORES, ScoreRecord(
                user_id=user_id,
                submission_id=sub.id,
                created_utc=sub.created_utc,
                kind=sub.kind,
                subreddit=sub.subreddit,
                p_text=scored.p_text,
                p_user=scored.p_user,
                writings_seen=scored.writings_seen,
                model_version=version,
                source=sub.source,
                processed_at=self._clock(),
            )
            if self.store_text:
                yield WRITINGS, WritingRecord(
                    user_id=user_id, submission_id=sub.id, created_utc=sub.created_utc,
                    kind=sub.kind, subreddit=sub.subreddit, title=sub.title, body=sub.body,
                    source=sub.source)
            if policy.decide(scored.p_user, scored.writings_seen, state.alerts, state.last_band):
                state.alerts += 1
                state.last_band = band_index(scored.p_user)
                res.alerts += 1
                yield ALERTS, AlertRecord(
                    alert_id=alert_id(user_id, version, policy.name, state.alerts),
                    user_id=user_id,
                    submission_id=sub.id,
                    created_utc=sub.created_utc,
                    p_user=scored.p_user,
                    writings_seen=scored.writings_seen,
                    threshold=policy.threshold,
                    priority=priority_band(scored.p_user),
                    policy=policy.name,
                    top_terms=json.dumps(scorer.top_terms(state, self.top_n)),
                    model_version=version,
                    alert_seq=state.alerts,
                    explanation=json.dumps(alert_explanation(
                        scorer.model, sub.text, sub.id, scorer.logit(s1, s2),
                        scorer.logit(state.s1, state.s2), self.top_n), ensure_ascii=False),
                )
