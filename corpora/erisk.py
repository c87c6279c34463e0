"""Readers of evaluation collections in other layouts: eRisk 2017/2018 XML and CSV.

Both return :class:`corpora.readers.UserStreams` (each user's submissions in
chronological order, plus counts of what was skipped and why), like the
wire-format reader, so the evaluator treats every format alike.

eRisk 2017/2018 layout: one XML file per subject and chunk,
``chunk N/SUBJECT_N.xml`` (the folder may also be ``chunkN``), each::

    <INDIVIDUAL><ID>subject123</ID>
      <WRITING><TITLE> .. </TITLE><DATE> 2013-08-08 02:48:56 </DATE>
               <INFO> reddit post </INFO><TEXT> .. </TEXT></WRITING> ...
    </INDIVIDUAL>

A subject's writings are gathered over all chunks and sorted by date (ties by
chunk, then position in the file). A writing whose title and text are both
empty is skipped and counted (``empty_text``), as the pipeline would
dead-letter it; a file that is not well-formed XML, or whose ID disagrees with
its file name, is an error naming the file.

CSV: one writing per row, columns named by a mapping (author, time, text and
optionally label and id); time is epoch seconds, ISO 8601 or YYYY/MM/DD. Rows
that the pipeline could not score (no author, bad time, no text) are skipped
and counted by reason.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from corpora.readers import UserStreams, open_binary
from models.records import Submission
from models.wire import ParseError, parse_created_utc

_CHUNK_DIR = re.compile(r"^chunk\s*_?(\d+)$", re.IGNORECASE)


class CollectionError(ValueError):
    """A collection that cannot be read; the message names the file and the problem."""


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def find_chunks(root: str | Path) -> list[tuple[int, Path]]:
    """The chunk folders under ``root`` (or ``root`` itself if it has XML files)."""
    root = Path(root)
    if not root.is_dir():
        raise CollectionError(f"{root} is not a directory")
    chunks = sorted(
        (int(m.group(1)), p) for p in root.iterdir()
        if p.is_dir() and (m := _CHUNK_DIR.match(p.name))
    )
    if not chunks and any(root.glob("*.xml")):
        chunks = [(1, root)]
    if not chunks:
        raise CollectionError(f"{root}: no 'chunk N' folders and no XML files")
    return chunks


def read_erisk(root: str | Path) -> UserStreams:
    """All subjects of an eRisk 2017/2018 collection directory."""
    collected: dict[str, list[tuple[float, int, int, Submission]]] = defaultdict(list)
    skipped: dict[str, int] = defaultdict(int)
    for chunk, folder in find_chunks(root):
        for path in sorted(folder.glob("*.xml")):
            try:
                tree = ET.parse(path)
            except ET.ParseError as e:
                raise CollectionError(f"{path}: not well-formed XML ({e})") from None
            top = tree.getroot()
            subject = _text(top.find("ID"))
            if top.tag != "INDIVIDUAL" or not subject:
                raise CollectionError(f"{path}: expected <INDIVIDUAL> with an <ID>")
            if not path.stem.startswith(subject):
                raise CollectionError(f"{path}: file name does not match ID {subject!r}")
            for pos, w in enumerate(top.iter("WRITING")):
                title, body = _text(w.find("TITLE")), _text(w.find("TEXT"))
                if not title and not body:
                    skipped["empty_text"] += 1
                    continue
                try:
                    created = parse_created_utc(_text(w.find("DATE")), "DATE")
                except ParseError:
                    skipped["invalid_date"] += 1
                    continue
                info = _text(w.find("INFO")).lower()
                sub = Submission(
                    id=f"{subject}-{chunk}-{pos}", user_id=subject, created_utc=created,
                    kind="comment" if "comment" in info else "post", subreddit="",
                    title=title, body=body, source=f"file:{path}:{pos + 1}",
                )
                collected[subject].append((created, chunk, pos, sub))
    users = {u: [s for *_, s in sorted(rows, key=lambda r: r[:3])]
             for u, rows in sorted(collected.items())}
    return UserStreams(users=users, skipped=dict(skipped))


@dataclass(frozen=True)
class CsvColumns:
    """Which CSV column holds what. ``label`` and ``id`` are optional."""

    author: str = "author"
    time: str = "created_utc"
    text: str = "text"
    label: str | None = None
    id: str | None = None

    @classmethod
    def parse(cls, spec: str | None) -> CsvColumns:
        """From ``author=user,time=date,text=post[,label=y][,id=post_id]``."""
        if not spec:
            return cls()
        fields: dict[str, str] = {}
        for item in spec.split(","):
            key, sep, col = item.partition("=")
            key, col = key.strip(), col.strip()
            if not sep or not col or key not in cls.__dataclass_fields__:
                raise ValueError(f"bad column mapping {item!r}: expected ROLE=COLUMN with "
                                 "ROLE one of author, time, text, label, id")
            fields[key] = col
        return cls(**fields)


def _csv_time(value: str) -> float:
    try:
        return parse_created_utc(value.strip())
    except ParseError:
        pass
    for fmt in ("%Y/%m/%d", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ValueError(value)


def read_csv(path: str | Path, columns: CsvColumns = CsvColumns()) -> tuple[UserStreams,
                                                                           dict[str, int]]:
    """Users' writings from a CSV, and the labels it carries (empty if no label column)."""
    with open_binary(path) as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        reader = csv.DictReader(text)
        header = reader.fieldnames or []
        wanted = [c for c in (columns.author, columns.time, columns.text, columns.label,
                              columns.id) if c]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise CollectionError(f"{path}: no column {missing[0]!r} (columns: "
                                  f"{', '.join(header) or 'none'})")
        users: dict[str, list[Submission]] = defaultdict(list)
        labels: dict[str, int] = {}
        skipped: dict[str, int] = defaultdict(int)
        for n, row in enumerate(reader, start=2):
            author = (row.get(columns.author) or "").strip()
            body = (row.get(columns.text) or "").strip()
            if not author or author in ("[deleted]", "[removed]"):
                skipped["missing_author"] += 1
                continue
            if not body or body in ("[deleted]", "[removed]"):
                skipped["empty_text"] += 1
                continue
            try:
                created = _csv_time(row.get(columns.time) or "")
            except ValueError:
                skipped["invalid_time"] += 1
                continue
            if columns.label:
                raw = (row.get(columns.label) or "").strip()
                if raw not in ("0", "1"):
                    raise CollectionError(f"{path}:{n}: label must be 0 or 1, got {raw[:20]!r}")
                if labels.setdefault(author, int(raw)) != int(raw):
                    raise CollectionError(f"{path}:{n}: user {author!r} has both labels")
            sid = (row.get(columns.id) or "").strip() if columns.id else ""
            users[author].append(Submission(
                id=sid or f"row{n}", user_id=author, created_utc=created, kind="post",
                subreddit="", title="", body=body, source=f"file:{path}:{n}"))
    for subs in users.values():
        subs.sort(key=lambda s: s.created_utc)  # stable: file order breaks ties
    return UserStreams(users=dict(users), skipped=dict(skipped)), labels


def write_erisk(users: dict[str, list[Submission]], truth: dict[str, int], out: str | Path,
                chunks: int = 10) -> Path:
    """Write users in the eRisk 2017/2018 layout (for fixtures and conversions).

    Each user's writings are split chronologically into ``chunks`` near-equal
    parts (``chunk N/USER_N.xml``; eRisk's own files list writings newest
    first, and so do these). Returns the golden-truth file's path.
    """
    out = Path(out)
    for n in range(1, chunks + 1):
        (out / f"chunk {n}").mkdir(parents=True, exist_ok=True)
    for user, subs in users.items():
        size = len(subs)
        for n in range(chunks):
            part = subs[n * size // chunks:(n + 1) * size // chunks]
            top = ET.Element("INDIVIDUAL")
            ET.SubElement(top, "ID").text = f" {user} "
            for s in reversed(part):
                w = ET.SubElement(top, "WRITING")
                ET.SubElement(w, "TITLE").text = f" {s.title} "
                ET.SubElement(w, "DATE").text = " " + datetime.fromtimestamp(
                    s.created_utc, UTC).strftime("%Y-%m-%d %H:%M:%S") + " "
                ET.SubElement(w, "INFO").text = f" reddit {s.kind} "
                ET.SubElement(w, "TEXT").text = f" {s.body} "
            ET.ElementTree(top).write(out / f"chunk {n + 1}" / f"{user}_{n + 1}.xml",
                                      encoding="utf-8", xml_declaration=False)
    truth_path = out / "golden-truth.txt"
    truth_path.write_text("".join(f"{u} {truth[u]}\n" for u in sorted(truth)))
    return truth_path
