"""Regenerate the vendored lexicon files from the upstream packages.

Not run at install or training time: the generated ``*.tsv`` files are
committed. To check or refresh them, fetch the three source distributions
(``pip download --no-deps DIR construct-tracker==1.0.16 vaderSentiment==3.3.2
empath==0.89``), unpack them, and run::

    python -m models.lexicons.vendor CT_DIR VADER_DIR EMPATH_DIR

where CT_DIR holds ``construct_tracker/``, VADER_DIR ``vaderSentiment/`` and
EMPATH_DIR ``empath/`` (the unpacked wheel or sdist roots). Each output line is
``CATEGORY<TAB>ENTRY``; entries are lower-cased and deduplicated, and only
entries the tokenizer can match (one or more word tokens, at most
MAX_PHRASE_WORDS of them) are kept.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRL_JSON = ("construct_tracker/data/lexicons/suicide_risk_lexicon_v1-0/"
            "suicide_risk_lexicon_validated_24-08-02T21-27-35.json")
# Empath categories about mood, emotion, pain, sleep and death; the other 170
# (topics such as "beach", "royalty", "programming") are left out.
EMPATH_CATEGORIES = (
    "sadness", "negative_emotion", "positive_emotion", "suffering", "pain", "shame",
    "nervousness", "fear", "torment", "disappointment", "death", "sleep", "optimism",
    "joy", "weakness", "neglect", "confusion", "irritability", "anger", "cheerfulness",
)
# VADER valences run from -4 to +4; words with |valence| below this are left out.
VADER_MIN_ABS = 0.5
MAX_PHRASE_WORDS = 8
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def words(entry: str) -> list[str]:
    return [w.replace("\u2019", "'") for w in _WORD.findall(entry.lower())]


def _matchable(entry: str) -> str | None:
    w = words(entry)
    if not w or len(w) > MAX_PHRASE_WORDS:
        return None
    return " ".join(w)


def _write(name: str, rows: list[tuple[str, str]]) -> None:
    seen = set()
    out = []
    for cat, entry in rows:
        e = _matchable(entry)
        if e is not None and (cat, e) not in seen:
            seen.add((cat, e))
            out.append(f"{cat}\t{e}\n")
    (HERE / name).write_text("".join(out), encoding="utf-8")
    print(f"{name}: {len(out)} entries")


def srl(root: Path) -> None:
    doc = json.loads((root / SRL_JSON).read_text(encoding="utf-8"))
    rows = []
    for construct in doc.values():
        rows.extend((construct["variable_name"], t) for t in construct["tokens"])
    _write("srl_v1.tsv", rows)


def vader(root: Path) -> None:
    rows = []
    for line in (root / "vaderSentiment" / "vader_lexicon.txt").read_text(
            encoding="utf-8").splitlines():
        token, valence = line.split("\t")[:2]
        v = float(valence)
        # Emoticons such as ":-)" have no word token and are dropped by _matchable;
        # keep only entries that are words as the tokenizer sees them.
        if abs(v) >= VADER_MIN_ABS and " ".join(words(token)) == token.lower():
            rows.append(("neg" if v < 0 else "pos", token))
    _write("vader.tsv", rows)


def empath(root: Path) -> None:
    rows = []
    for line in (root / "empath" / "data" / "categories.tsv").read_text(
            encoding="utf-8").splitlines():
        cat, *entries = line.split("\t")
        if cat in EMPATH_CATEGORIES:
            rows.extend((cat, e) for e in entries if e)
    _write("empath.tsv", rows)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m models.lexicons.vendor CT_DIR VADER_DIR EMPATH_DIR",
              file=sys.stderr)
        return 2
    srl(Path(argv[0]))
    vader(Path(argv[1]))
    empath(Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
