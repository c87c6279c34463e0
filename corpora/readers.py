"""Readers of labelled user collections (outside Beam: training, evaluation).

The wire-format reader goes through the same parser as the pipeline, so a
line the pipeline would dead-letter is skipped here too, and counted.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from models.records import Submission
from models.train import TrainingUser
from models.wire import ParseError, Pseudonymizer, parse_submission


def open_binary(path: str | Path):
    """Open a file for reading bytes, un-gzipping ``.gz`` files."""
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "rb")
    return open(p, "rb")


def iter_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line without newline); blank lines skipped."""
    with open_binary(path) as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield n, line


def read_truth(path: str | Path) -> dict[str, int]:
    """A golden-truth file: ``user label`` per line, label 0 or 1."""
    truth: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("0", "1"):
                raise ValueError(f"{path}:{n}: expected 'user 0|1', got {line.strip()[:80]!r}")
            truth[parts[0]] = int(parts[1])
    return truth


@dataclass
class UserStreams:
    """Each user's submissions in chronological order, plus what was skipped."""

    users: dict[str, list[Submission]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def read_wire_streams(path: str | Path) -> UserStreams:
    """Group a wire-format JSONL file by author, each user sorted by time.

    Duplicate submission ids of one user are kept once, as the pipeline does.
    Author names are not pseudonymised here: golden truth is keyed by name.
    """
    raw = Pseudonymizer(None)
    users: dict[str, list[Submission]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    skipped: dict[str, int] = defaultdict(int)
    for n, line in iter_lines(path):
        try:
            s = parse_submission(line, raw, source=f"file:{path}:{n}", now=float("inf"))
        except ParseError as e:
            skipped[e.reason] += 1
            continue
        if s.id in seen[s.user_id]:
            skipped["duplicate"] += 1
            continue
        seen[s.user_id].add(s.id)
        users[s.user_id].append(s)
    for subs in users.values():
        subs.sort(key=lambda s: (s.created_utc, s.id))
    return UserStreams(users=dict(users), skipped=dict(skipped))


def read_training_users(jsonl: str | Path, truth: str | Path) -> list[TrainingUser]:
    """Labelled users (sorted by name) from a wire-format file and a truth file."""
    labels = read_truth(truth)
    streams = read_wire_streams(jsonl).users
    missing = sorted(set(labels) - set(streams))
    if missing:
        raise ValueError(f"{len(missing)} users in {truth} have no writings in {jsonl}, "
                         f"e.g. {missing[0]!r}")
    return [
        TrainingUser(user=u, label=labels[u], writings=tuple(s.text for s in streams[u]))
        for u in sorted(labels)
    ]
