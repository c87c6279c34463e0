"""praw submissions and comments -> wire-format messages (models.wire).

A writing the pipeline could not use is not published: :class:`SkipError` says
why (a deleted author, removed text), and the crawler counts each reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.wire import to_wire

_REMOVED = {"[removed]", "[deleted]", ""}


class SkipError(Exception):
    """A writing that is not published; ``reason`` is a stable metric name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Writing:
    """One publishable writing: its Reddit fullname, author and wire message."""

    id: str
    author: str
    kind: str
    text: str
    message: str


def _author_name(thing: Any) -> str | None:
    author = getattr(thing, "author", None)
    if author is None:  # praw turns "[deleted]" into None
        return None
    name = getattr(author, "name", author)
    return str(name) if name and str(name) != "[deleted]" else None


def _subreddit_name(thing: Any) -> str:
    sub = getattr(thing, "subreddit", None)
    name = getattr(sub, "display_name", sub)
    if not name:
        raise SkipError("malformed", "no subreddit")
    return str(name)


def to_writing(thing: Any) -> Writing:
    """Convert a praw ``Submission`` or ``Comment`` (or any object with their
    attributes); raise :class:`SkipError` if it cannot be published."""
    fullname = getattr(thing, "name", None) or getattr(thing, "fullname", None)
    if not fullname or "_" not in str(fullname):
        raise SkipError("malformed", "no fullname")
    fullname = str(fullname)
    prefix = fullname.split("_", 1)[0]
    if prefix == "t3":
        kind = "post"
        title = getattr(thing, "title", "") or ""
        body = getattr(thing, "selftext", "") or ""
    elif prefix == "t1":
        kind = "comment"
        title = ""  # comments have no title in the wire format
        body = getattr(thing, "body", "") or ""
    else:
        raise SkipError("malformed", f"not a post or a comment: {fullname}")
    author = _author_name(thing)
    if author is None:
        raise SkipError("deleted_author", fullname)
    if title.strip() in _REMOVED:
        title = ""
    if body.strip() in _REMOVED:
        body = ""
    if not title.strip() and not body.strip():
        raise SkipError("empty_text", fullname)
    created = getattr(thing, "created_utc", None)
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        raise SkipError("malformed", f"{fullname}: created_utc is not a number")
    # Whole seconds when Reddit sends 1546300800.0: the wire format allows
    # either, and ints keep messages byte-identical across re-crawls.
    created_out: int | float = int(created) if float(created).is_integer() else float(created)
    message = to_wire(
        id=fullname,
        author=author,
        created_utc=created_out,
        kind=kind,
        subreddit=_subreddit_name(thing),
        title=title,
        body=body,
    )
    text = f"{title}\n{body}" if title else body
    return Writing(id=fullname, author=author, kind=kind, text=text, message=message)
