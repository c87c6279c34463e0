"""Domain records and the tables they land in.

Every stage speaks in these frozen dataclasses; sinks turn them into rows of
the tables described by :data:`TABLES`, the one schema that DuckDB DDL (and
later BigQuery's) is generated from. Column docs here are the documentation of
the tables (README links here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KIND_POST = "post"
KIND_COMMENT = "comment"
KINDS = (KIND_POST, KIND_COMMENT)


@dataclass(frozen=True)
class Submission:
    """One validated Reddit writing (a post or a comment).

    ``user_id`` is the key used downstream: the pseudonym of ``author`` unless the
    operator opted out of pseudonymisation, in which case it is ``author``.
    ``source`` says where the message came from (``file:PATH:LINE``,
    ``kafka:TOPIC:PARTITION:OFFSET``, ``pubsub:MESSAGE_ID``).
    """

    id: str
    user_id: str
    created_utc: float
    kind: str
    subreddit: str
    title: str
    body: str
    source: str = ""

    @property
    def text(self) -> str:
        """The text the model reads: title and body, a blank line apart."""
        if self.title and self.body:
            return f"{self.title}\n\n{self.body}"
        return self.title or self.body


@dataclass(frozen=True)
class ScoreRecord:
    """The model's view of one submission, emitted once per scored writing."""

    user_id: str
    submission_id: str
    created_utc: float
    kind: str
    subreddit: str
    p_text: float
    p_user: float
    writings_seen: int
    model_version: str
    source: str
    processed_at: float | None = None  # processing time (None in hand-built records)


@dataclass(frozen=True)
class AlertRecord:
    """A decision to put a user in front of a human reviewer."""

    alert_id: str
    user_id: str
    submission_id: str
    created_utc: float
    p_user: float
    writings_seen: int
    threshold: float
    priority: str
    policy: str
    top_terms: str
    model_version: str
    alert_seq: int
    explanation: str | None = None  # JSON, docs/MODEL.md "Explanations"; None before it existed


@dataclass(frozen=True)
class DeadLetter:
    """A message that was not scored, with the stage and the reason why."""

    dead_letter_id: str
    stage: str
    reason: str
    detail: str
    source: str
    raw: str
    raw_bytes: int
    received_at: float


@dataclass(frozen=True)
class WritingRecord:
    """The text of a scored submission, for expert review and dataset export."""

    user_id: str
    submission_id: str
    created_utc: float
    kind: str
    subreddit: str
    title: str
    body: str
    source: str


@dataclass(frozen=True)
class LabelRecord:
    """An expert's verdict on an alert (written by the review web app)."""

    alert_id: str
    user_id: str
    label: str  # risk | no_risk | undecided
    comment: str
    reviewer: str
    labelled_at: float


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # logical type: STRING, FLOAT64, INT64, TIMESTAMP
    doc: str
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    record: type
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    doc: str


def _cols(*specs: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(n, t, d) for n, t, d in specs)


SCORES = Table(
    name="scores",
    record=ScoreRecord,
    primary_key=("user_id", "submission_id", "model_version"),
    doc="One row per scored submission.",
    columns=_cols(
        ("user_id", "STRING", "pseudonymised user id (raw author only on opt-out)"),
        ("submission_id", "STRING", "Reddit id of the post or comment"),
        ("created_utc", "TIMESTAMP", "event time: when the writing was posted"),
        ("kind", "STRING", "post or comment"),
        ("subreddit", "STRING", "community the writing was posted in"),
        ("p_text", "FLOAT64", "probability from this writing alone"),
        ("p_user", "FLOAT64", "probability from all the user's writings so far"),
        ("writings_seen", "INT64", "k: writings of this user scored so far, this one included"),
        ("model_version", "STRING", "model name and content hash"),
        ("source", "STRING", "where the message came from (file/kafka/pubsub position)"),
    ) + (Column("processed_at", "TIMESTAMP", "processing time: when the pipeline scored it",
                nullable=True),),
)

ALERTS = Table(
    name="alerts",
    record=AlertRecord,
    primary_key=("alert_id",),
    doc="One row per alert raised for expert review.",
    columns=_cols(
        ("alert_id", "STRING", "deterministic id: hash of user, model, policy, sequence"),
        ("user_id", "STRING", "pseudonymised user id"),
        ("submission_id", "STRING", "the writing after which the alert was raised"),
        ("created_utc", "TIMESTAMP", "event time of that writing"),
        ("p_user", "FLOAT64", "user probability at alert time"),
        ("writings_seen", "INT64", "k at alert time (the delay of the decision)"),
        ("threshold", "FLOAT64", "the policy's threshold"),
        ("priority", "STRING", "P0 (>0.9), P1 (>0.8), P2 (>0.7), P3 (>0.6) or P4"),
        ("policy", "STRING", "decision policy, e.g. incremental(0.5)"),
        ("top_terms", "STRING", "terms that pushed the user's score up most, as JSON "
         "[[term, logit contribution]]"),
        ("model_version", "STRING", "model name and content hash"),
        ("alert_seq", "INT64", "1 for a user's first alert, 2 for an escalation, ..."),
    ) + (Column("explanation", "STRING",
                "why, as JSON: logit contributions of the triggering writing's terms "
                "(docs/MODEL.md, 'Explanations'); NULL in rows written before it existed",
                nullable=True),),
)

DEAD_LETTERS = Table(
    name="dead_letters",
    record=DeadLetter,
    primary_key=("dead_letter_id",),
    doc="One row per message that was not scored.",
    columns=_cols(
        ("dead_letter_id", "STRING", "deterministic id: hash of source position and stage"),
        ("stage", "STRING", "stage that rejected it: read, parse, dedupe, sink"),
        ("reason", "STRING", "machine-readable reason, e.g. invalid_json, duplicate"),
        ("detail", "STRING", "human-readable detail"),
        ("source", "STRING", "where the message came from"),
        ("raw", "STRING", "the payload (invalid bytes escaped; cut at the size limit)"),
        ("raw_bytes", "INT64", "size of the original payload in bytes"),
        ("received_at", "TIMESTAMP", "processing time of the rejection"),
    ),
)

WRITINGS = Table(
    name="writings",
    record=WritingRecord,
    primary_key=("user_id", "submission_id"),
    doc="The text of each scored submission (omitted with --no-store-text).",
    columns=_cols(
        ("user_id", "STRING", "pseudonymised user id"),
        ("submission_id", "STRING", "Reddit id of the post or comment"),
        ("created_utc", "TIMESTAMP", "event time"),
        ("kind", "STRING", "post or comment"),
        ("subreddit", "STRING", "community"),
        ("title", "STRING", "title (empty for comments)"),
        ("body", "STRING", "body text"),
        ("source", "STRING", "where the message came from"),
    ),
)

LABELS = Table(
    name="labels",
    record=LabelRecord,
    primary_key=("alert_id", "reviewer", "labelled_at"),
    doc="Expert review verdicts; the latest row per alert is the current one.",
    columns=_cols(
        ("alert_id", "STRING", "the alert reviewed"),
        ("user_id", "STRING", "pseudonymised user id"),
        ("label", "STRING", "risk, no_risk or undecided"),
        ("comment", "STRING", "the reviewer's optional comment"),
        ("reviewer", "STRING", "who reviewed it"),
        ("labelled_at", "TIMESTAMP", "when"),
    ),
)

# Tables the pipeline writes, in order; LABELS is written by the review app.
PIPELINE_TABLES = (SCORES, ALERTS, DEAD_LETTERS, WRITINGS)
TABLES: dict[str, Table] = {t.name: t for t in (*PIPELINE_TABLES, LABELS)}


def to_row(record: Any) -> dict[str, Any]:
    """A record as a plain dict keyed by column name (fields are flat scalars)."""
    return dict(vars(record))


def priority_band(p: float) -> str:
    """The paper's alert-manager bands: P0 > 0.9, P1 > 0.8, ... else P4."""
    if p > 0.9:
        return "P0"
    if p > 0.8:
        return "P1"
    if p > 0.7:
        return "P2"
    if p > 0.6:
        return "P3"
    return "P4"
