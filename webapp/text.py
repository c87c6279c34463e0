"""Reddit text as reviewers should see it: decoded, a safe markdown subset, graded marks.

Reddit's API returns bodies HTML-escaped, sometimes twice (``&amp;#x200B;``
is a zero-width space Reddit's editor inserts for an empty paragraph).
:func:`decode` undoes that. :func:`render` turns the decoded text into HTML:

* every character of the text is escaped; the only tags are ones this module
  writes (``p``, ``br``, ``blockquote``, ``ul``/``li``, ``strong``, ``em``,
  ``code``, ``mark``), never any from the text. Links stay text with their
  address shown, so nothing in a writing navigates anywhere.
* ``marks`` are (start, end, weight, negated, label) over the decoded text: a
  ``<mark>`` graded by weight (logit contribution: positive pushes the score
  up, negative down), with the weight in its tooltip. Inline emphasis never
  crosses a mark, so the markup always nests.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\ufeff]")
_INLINE = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"
                     r"|`([^`]+)`|\[([^\]\n]{1,200})\]\((https?://[^\s)]{1,500})\)")
_LIST = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s{0,3}&gt;\s?|^\s{0,3}>\s?")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")


def decode(text: str | None) -> str:
    """HTML entities decoded (twice: Reddit double-escapes), zero-width spaces dropped."""
    if not text:
        return ""
    for _ in range(2):
        if "&" not in text:
            break
        text = html.unescape(text)
    return _ZERO_WIDTH.sub("", text)


@dataclass(frozen=True)
class Mark:
    start: int
    end: int
    weight: float  # logit contribution; 0 when unknown (plain term highlight)
    negated: bool = False
    label: str = ""


def grade(weight: float) -> str:
    """CSS class for a weight: up-1..up-3 (pushes towards risk), down-1..down-3."""
    a = abs(weight)
    level = 3 if a >= 0.15 else 2 if a >= 0.05 else 1
    return f"{'up' if weight >= 0 else 'down'}-{level}"


def _inline(text: str) -> Markup:
    """Escaped text with bold, italic, code and links-as-text."""
    out: list[Markup] = []
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[pos:m.start()]))
        bold, em, code, link_text, url = m.groups()
        if bold is not None:
            out.append(Markup("<strong>") + _inline(bold) + Markup("</strong>"))
        elif em is not None:
            out.append(Markup("<em>") + _inline(em) + Markup("</em>"))
        elif code is not None:
            out.append(Markup("<code>") + escape(code) + Markup("</code>"))
        else:
            out.append(escape(link_text) + Markup(' <span class="url">(')
                       + escape(url) + Markup(")</span>"))
        pos = m.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def _mark_html(m: Mark, inner: Markup) -> Markup:
    sign = "+" if m.weight >= 0 else ""
    title = f"{m.label}: {sign}{m.weight:.3f} logit" if m.weight else m.label
    if m.negated:
        title += " (negated)"
    cls = f"w {grade(m.weight)}" + (" neg" if m.negated else "") if m.weight else "term"
    return (Markup('<mark class="') + escape(cls) + Markup('" title="') + escape(title)
            + Markup('">') + inner + Markup("</mark>"))


def _line(text: str, start: int, marks: Sequence[Mark]) -> Markup:
    """One line (text[start:start+len]) with the marks that fall inside it."""
    out: list[Markup] = []
    pos = 0
    end = len(text)
    for m in marks:
        s, e = max(m.start - start, 0), min(m.end - start, end)
        if e <= pos or s >= end:
            continue
        s = max(s, pos)
        out.append(_inline(text[pos:s]))
        out.append(_mark_html(m, escape(text[s:e])))
        pos = e
    out.append(_inline(text[pos:]))
    return Markup("").join(out)


def _merge(marks: Sequence[Mark]) -> list[Mark]:
    """Non-overlapping marks: where spans overlap (a word and a lexicon category it
    triggers) their weights add up over the union."""
    merged: list[Mark] = []
    for m in sorted(marks, key=lambda m: (m.start, m.end)):
        if merged and m.start < merged[-1].end:
            last = merged[-1]
            label = last.label if m.label in last.label else f"{last.label} + {m.label}"
            merged[-1] = Mark(last.start, max(last.end, m.end), last.weight + m.weight,
                              last.negated or m.negated, label)
        else:
            merged.append(m)
    return merged


def render(text: str, marks: Sequence[Mark] = ()) -> Markup:
    """``text`` (already decoded) as safe HTML with a markdown subset and marks."""
    if not text:
        return Markup("")
    marks = _merge(marks)
    blocks: list[Markup] = []
    para: list[Markup] = []
    items: list[Markup] = []
    quote: list[Markup] = []

    def flush() -> None:
        if para:
            blocks.append(Markup("<p>") + Markup("<br>").join(para) + Markup("</p>"))
            para.clear()
        if items:
            blocks.append(Markup("<ul>") + Markup("").join(
                Markup("<li>") + i + Markup("</li>") for i in items) + Markup("</ul>"))
            items.clear()
        if quote:
            blocks.append(Markup("<blockquote>") + Markup("<br>").join(quote)
                          + Markup("</blockquote>"))
            quote.clear()

    offset = 0
    for raw in text.split("\n"):
        line_start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            flush()
            continue
        kind, body = "text", None
        for pattern, name in ((_LIST, "item"), (_QUOTE, "quote"), (_HEADING, "heading")):
            m = pattern.match(raw)
            if m:
                kind, body = name, _line(raw[m.end():], line_start + m.end(), marks)
                break
        if body is None:
            body = _line(raw, line_start, marks)
        if kind == "item":
            if para or quote:
                flush()
            items.append(body)
        elif kind == "quote":
            if para or items:
                flush()
            quote.append(body)
        elif kind == "heading":
            flush()
            blocks.append(Markup("<p><strong>") + body + Markup("</strong></p>"))
        else:
            if items or quote:
                flush()
            para.append(body)
    flush()
    return Markup("").join(blocks)


def term_marks(text: str, terms: Sequence[str]) -> list[Mark]:
    """Whole-word occurrences of ``terms`` (no weights known)."""
    words = sorted({t for t in terms if t and not t.startswith("_")}, key=len, reverse=True)
    if not words or not text:
        return []
    pattern = re.compile(r"(?<![\w'])(" + "|".join(re.escape(w) for w in words) + r")(?![\w'])",
                         re.IGNORECASE)
    return [Mark(m.start(), m.end(), 0.0, False, m.group(0).lower())
            for m in pattern.finditer(text)]


def word_count(text: str) -> int:
    return len(text.split())
