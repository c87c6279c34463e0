"""Realistic Reddit JSON fixtures built from real posts (data/rmhd-sample).

The texts are real Reddit posts from the Reddit Mental Health Dataset sample
(Low et al., J Med Internet Res 2020;22(10):e22635, CC BY 4.0; see
data/rmhd-sample/README.md). Everything else is SIMULATED, deterministically
from a seed: the user names (``fx_`` + hex, never the real authors), who wrote
what, the timestamps within each post's real day, the comments (one to three
sentences of a real post, attached to a simulated post) and the ids.

The sample joins each post's title and body; a post's first sentence becomes
its title (Reddit caps titles at 300 characters) and the rest its selftext.

Timeline: every simulated user has a history before the "live" week
(2019-10-25 .. 2019-10-31) and at least one writing inside it, so a crawler
following the live listings discovers every user. The live week also has
one-off authors, writings of deleted accounts (author "[deleted]"), a
suspended user (history answers 403) and a power user with more comments
than Reddit's 1000-item listing cap.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from corpora.simulate import DEPRESSION, load_posts

LIVE_START = datetime(2019, 10, 25, tzinfo=UTC).timestamp()
LIVE_END = datetime(2019, 11, 1, tzinfo=UTC).timestamp()
HISTORY_START = datetime(2018, 11, 1, tzinfo=UTC).timestamp()
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def _account_id(author: str) -> str | None:
    if author == "[deleted]":
        return None
    return f"t2_{base36(zlib.crc32(author.encode()))}"


@dataclass(frozen=True)
class FixtureConfig:
    seed: int = 4752
    n_users: int = 24
    n_oneoff: int = 12
    n_deleted: int = 4
    posts_per_user: tuple[int, int] = (1, 12)
    comments_per_user: tuple[int, int] = (1, 25)
    depression_leaning_share: float = 0.35
    power_user_comments: int = 1050  # > Reddit's 1000-item listing cap


@dataclass
class FixtureData:
    """All things, oldest first, and who is who."""

    things: list[dict] = field(default_factory=list)  # {"kind": "t3"|"t1", "data": {...}}
    users: list[str] = field(default_factory=list)  # simulated users with histories
    oneoff: list[str] = field(default_factory=list)
    suspended: str = ""
    power_user: str = ""
    live_start_index: int = 0

    def by_author(self, author: str) -> list[dict]:
        return [t for t in self.things if t["data"]["author"] == author]


def _split_title(text: str) -> tuple[str, str]:
    parts = _SENTENCE.split(text.strip(), maxsplit=1)
    title = parts[0][:300]
    body = text.strip()[len(title):].strip() if len(parts) > 1 or len(parts[0]) > 300 else ""
    return title, body


class _Builder:
    def __init__(self, config: FixtureConfig) -> None:
        self.rng = random.Random(config.seed)
        self.config = config
        posts = load_posts()
        self.rng.shuffle(posts)
        self.depression = [p for p in posts if p["subreddit"] in DEPRESSION]
        self.other = [p for p in posts if p["subreddit"] not in DEPRESSION]
        self.next_id = 36 ** 5  # six-character base-36 ids, like 2019's
        self.things: list[dict] = []
        self.submissions: list[dict] = []
        self.names: set[str] = set()

    def name(self) -> str:
        while True:
            n = f"fx_{self.rng.getrandbits(40):010x}"
            if n not in self.names:
                self.names.add(n)
                return n

    def new_id(self) -> str:
        self.next_id += self.rng.randrange(1, 5000)
        return base36(self.next_id)

    def draw(self, leaning: bool) -> dict:
        pool = self.depression if leaning and self.rng.random() < 0.5 else self.other
        return pool.pop() if pool else (self.other or self.depression).pop()

    def post(self, author: str, p: dict, when: float) -> dict:
        sid = self.new_id()
        title, body = _split_title(p["post"])
        sub = p["subreddit"]
        data = {
            "approved_at_utc": None, "subreddit": sub, "selftext": body,
            "author_fullname": _account_id(author),
            "saved": False, "gilded": 0, "clicked": False, "title": title,
            "subreddit_name_prefixed": f"r/{sub}", "hidden": False, "downs": 0,
            "name": f"t3_{sid}", "upvote_ratio": 1.0, "ups": 1, "score": 1,
            "edited": False, "is_self": True, "domain": f"self.{sub}",
            "created": when, "created_utc": when, "over_18": False, "spoiler": False,
            "locked": False, "subreddit_id": f"t5_{base36(sum(map(ord, sub)) * 7919)}",
            "id": sid, "author": author, "num_comments": 0,
            "permalink": f"/r/{sub}/comments/{sid}/", "url":
            f"https://www.reddit.com/r/{sub}/comments/{sid}/", "stickied": False,
            "distinguished": None, "subreddit_type": "public", "archived": False,
            "link_flair_text": None, "selftext_html": None,
        }
        thing = {"kind": "t3", "data": data}
        self.things.append(thing)
        self.submissions.append(data)
        return thing

    def comment(self, author: str, p: dict, when: float) -> dict:
        sentences = _SENTENCE.split(p["post"].strip())
        k = self.rng.randint(1, min(3, len(sentences)))
        start = self.rng.randrange(0, len(sentences) - k + 1)
        body = " ".join(sentences[start:start + k])
        link = self.rng.choice(self.submissions)
        link["num_comments"] += 1
        cid = self.new_id()
        sub = link["subreddit"]
        data = {
            "subreddit_id": link["subreddit_id"], "approved_at_utc": None,
            "author_is_blocked": False, "edited": False, "link_title": link["title"],
            "ups": 1, "downs": 0, "score": 1, "saved": False, "gilded": 0,
            "author": author, "author_fullname": _account_id(author),
            "num_comments": link["num_comments"], "parent_id": link["name"],
            "link_id": link["name"], "link_author": link["author"],
            "link_permalink": link["url"], "subreddit": sub,
            "subreddit_name_prefixed": f"r/{sub}", "subreddit_type": "public",
            "body": body, "body_html": None, "is_submitter": author == link["author"],
            "id": cid, "name": f"t1_{cid}", "created": when, "created_utc": when,
            "permalink": f"/r/{sub}/comments/{link['id']}/_/{cid}/", "stickied": False,
            "distinguished": None, "archived": False, "over_18": False, "replies": "",
        }
        thing = {"kind": "t1", "data": data}
        self.things.append(thing)
        return thing

    def day_time(self, p: dict, lo: float, hi: float) -> float:
        day = datetime.strptime(p["date"], "%Y/%m/%d").replace(tzinfo=UTC).timestamp()
        if not lo <= day < hi:
            day = lo + self.rng.random() * (hi - lo - 86_400)
        return float(int(day) + self.rng.randrange(86_400))

    def history_time(self) -> float:
        return float(int(HISTORY_START + self.rng.random() * (LIVE_START - HISTORY_START)))

    def live_time(self) -> float:
        return float(int(LIVE_START + self.rng.random() * (LIVE_END - LIVE_START)))


def build(config: FixtureConfig = FixtureConfig()) -> FixtureData:
    """Deterministic fixtures for a given config (same seed, same things)."""
    b = _Builder(config)
    rng = b.rng
    out = FixtureData()
    # A few seed submissions for comments to attach to.
    for _ in range(10):
        b.post(b.name(), b.other.pop(), b.history_time())
    out.users = [b.name() for _ in range(config.n_users)]
    out.power_user = out.users[0]
    out.suspended = out.users[1]
    for user in out.users:
        leaning = rng.random() < config.depression_leaning_share
        for _ in range(rng.randint(*config.posts_per_user)):
            p = b.draw(leaning)
            b.post(user, p, b.day_time(p, HISTORY_START, LIVE_START))
        n_comments = (config.power_user_comments if user == out.power_user
                      else rng.randint(*config.comments_per_user))
        for _ in range(n_comments):
            b.comment(user, b.draw(leaning), b.history_time())
        # Live week: one or two writings that reveal the user.
        for _ in range(rng.randint(1, 2)):
            p = b.draw(leaning)
            if rng.random() < 0.5:
                b.post(user, p, b.live_time())
            else:
                b.comment(user, p, b.live_time())
    for _ in range(config.n_oneoff):
        name = b.name()
        out.oneoff.append(name)
        p = b.draw(False)
        (b.post if rng.random() < 0.5 else b.comment)(name, p, b.live_time())
    for _ in range(config.n_deleted):
        p = b.draw(False)
        (b.post if rng.random() < 0.5 else b.comment)("[deleted]", p, b.live_time())
    b.things.sort(key=lambda t: (t["data"]["created_utc"], t["data"]["name"]))
    out.things = b.things
    out.live_start_index = next(i for i, t in enumerate(out.things)
                                if t["data"]["created_utc"] >= LIVE_START)
    return out
