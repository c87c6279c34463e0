"""Explanations for the review app, from :mod:`models.explain`.

The app loads the model once (``--model DIR``, default the bundled model) and
explains a writing only when the alert's ``model_version`` is that model's
version: an explanation from another model would be wrong, so the page then
says so and falls back to the ``top_terms`` the pipeline stored.

Every weight shown is a **logit contribution**: how far a term moved the
writing's log-odds from the model's intercept (positive towards risk,
negative away from it). Per-writing moves are changes of the user's logit,
from the stored ``p_user`` sequence.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from models.explain import (
    TermContribution,
    WritingExplanation,
    explain_text,
    highlight_spans,
    writing_moves,
)
from models.portable import ModelFormatError, PortableModel
from webapp.text import Mark


def joined(title: str, body: str) -> tuple[str, int]:
    """The text the model reads for a writing, and where the body starts in it."""
    if title and body:
        return f"{title}\n\n{body}", len(title) + 2
    return (title or body), (0 if not title else len(title) + 2)


class Explainer:
    def __init__(self, model_dir: str | Path | None = None) -> None:
        self.model_dir = model_dir
        self._model: PortableModel | None = None
        self._error: str | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._cached = lru_cache(maxsize=4096)(
            lambda title, body: _marks(self._model, title, body))

    def _load(self) -> PortableModel | None:
        with self._lock:
            if not self._loaded:
                try:
                    self._model = PortableModel.load(self.model_dir)
                except (ModelFormatError, OSError) as e:
                    self._error = str(e).splitlines()[0]
                self._loaded = True
        return self._model

    def model_for(self, version: str) -> PortableModel | None:
        m = self._load()
        return m if m is not None and m.version == version else None

    def note(self, version: str) -> str | None:
        """Why there is no explanation for ``version`` (None when there is one)."""
        m = self._load()
        if m is None:
            return f"no model loaded ({self._error})"
        if m.version != version:
            return (f"the alert was scored by model {version}; the app has {m.version} "
                    "(start it with --model DIR of that model)")
        return None

    @staticmethod
    def moves(p_users: Sequence[float], model: PortableModel | None) -> list[float]:
        return writing_moves(p_users, intercept=model.intercept if model is not None else 0.0)

    @staticmethod
    def explain(model: PortableModel, title: str, body: str, top: int = 8) -> WritingExplanation:
        return explain_text(model, joined(title, body)[0], top=top)

    def marks(self, model: PortableModel, title: str, body: str
              ) -> tuple[list[Mark], list[Mark]]:
        """Graded marks for the title and the body (offsets into each). Writings do not
        change, so they are cached (the app has one model)."""
        if model is not self._model:
            return _marks(model, title, body)
        return self._cached(title, body)


def _marks(model: PortableModel, title: str, body: str) -> tuple[list[Mark], list[Mark]]:
    text, body_at = joined(title, body)
    tmarks: list[Mark] = []
    bmarks: list[Mark] = []
    for s in highlight_spans(model, text):
        if title and s.end <= len(title):
            tmarks.append(Mark(s.start, s.end, s.logit, s.negated, s.feature))
        elif s.start >= body_at:
            bmarks.append(Mark(s.start - body_at, s.end - body_at, s.logit, s.negated,
                               s.feature))
    return tmarks, bmarks


def stored(text: str | None) -> WritingExplanation | None:
    """An ``alerts.explanation`` JSON (docs/MODEL.md, format 1) as a WritingExplanation;
    None if absent or in a format this app does not read."""
    import json

    try:
        doc = json.loads(text or "")
        if doc.get("format") != 1 or doc.get("unit") != "logit":
            return None
        w = doc["writing"]

        def terms(items: list) -> tuple[TermContribution, ...]:
            return tuple(TermContribution(term=str(t["term"]), feature=str(t["feature"]),
                                          count=int(t["count"]), logit=float(t["logit"]),
                                          negated=bool(t["negated"])) for t in items)

        return WritingExplanation(p_text=float(w["p_text"]), logit=float(w["logit"]),
                                  intercept=float(doc["intercept"]), up=terms(w["up"]),
                                  down=terms(w["down"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
