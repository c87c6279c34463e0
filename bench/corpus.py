"""Realistic Reddit texts for the benchmarks, and a streaming synthetic replay.

Two kinds of text, both from the real posts of data/rmhd-sample:

* ``posts``: a whole post (title and body), as in the simulated user streams;
  these are long (median ~700 characters).
* ``comments``: one to three consecutive sentences of a post, the recipe the
  fake Reddit fixtures use for comments; short, like most of what Reddit users
  write (comments outnumber posts on Reddit by an order of magnitude).

``mix`` draws comments with probability 0.9 and posts otherwise.
:func:`synthetic_stream` writes a wire-format JSONL file of any size without
holding it in memory, so the scale benchmark can replay a million submissions.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from corpora.simulate import load_posts

KINDS = ("comments", "posts", "mix")
COMMENT_SHARE = 0.9
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=1)
def _posts() -> tuple[str, ...]:
    return tuple(p["post"].strip() for p in load_posts() if p["post"].strip())


def _comment(rng: random.Random, post: str) -> str:
    sentences = _SENTENCE.split(post)
    k = rng.randint(1, min(3, len(sentences)))
    start = rng.randrange(0, len(sentences) - k + 1)
    return " ".join(sentences[start:start + k])


def texts(kind: str, n: int, seed: int = 8) -> list[str]:
    """``n`` texts of one kind (``comments``, ``posts`` or ``mix``), deterministic."""
    if kind not in KINDS:
        raise ValueError(f"unknown text kind {kind!r} (one of {', '.join(KINDS)})")
    rng = random.Random(seed)
    posts = _posts()
    out = []
    for _ in range(n):
        post = rng.choice(posts)
        comment = kind == "comments" or (kind == "mix" and rng.random() < COMMENT_SHARE)
        out.append(_comment(rng, post) if comment else post)
    return out


def iter_messages(n_submissions: int, n_users: int, kind: str = "mix",
                  seed: int = 8) -> Iterator[dict]:
    """Wire-format messages: ``n_submissions`` writings spread over ``n_users``.

    Users write at random (uniformly), in time order, one second apart; ids
    are unique. Generated lazily.
    """
    if n_users < 1 or n_submissions < 0:
        raise ValueError("need at least one user and a non-negative number of submissions")
    rng = random.Random(seed)
    posts = _posts()
    t0 = 1_546_300_800  # 2019-01-01
    for i in range(n_submissions):
        post = rng.choice(posts)
        comment = kind == "comments" or (kind == "mix" and rng.random() < COMMENT_SHARE)
        yield {
            "id": f"bench{i:08d}",
            "author": f"bench-u{rng.randrange(n_users):07d}",
            "created_utc": t0 + i,
            "kind": "comment" if comment else "post",
            "subreddit": "bench",
            "title": "",
            "body": _comment(rng, post) if comment else post,
        }


def synthetic_stream(path: str | Path, n_submissions: int, n_users: int,
                     kind: str = "mix", seed: int = 8) -> Path:
    """Write :func:`iter_messages` to ``path`` (gzip if it ends in .gz)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for msg in iter_messages(n_submissions, n_users, kind, seed):
            f.write(json.dumps(msg, ensure_ascii=False))
            f.write("\n")
    return path
