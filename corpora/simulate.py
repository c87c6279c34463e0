"""Builder of SIMULATED user streams from real, post-level Reddit data.

The bundled data (``data/rmhd-sample``, Low et al. 2020, CC BY 4.0) is 7,020
real posts labelled only by community, with nearly one post per author. The
early-risk task needs users who write over time and carry a label, which that
data does not have. This module simulates them, deterministically from a seed:

* every simulated user is a chronological stream of real posts, each used at
  most once across all users and both splits;
* positive users draw a share of their writings from depression-related
  communities (r/depression, r/SuicideWatch), the rest from everyday and
  mental-health support communities;
* controls draw from everyday communities and mental-health support
  communities, and some of them post once or twice in a depression community
  too (eRisk's controls likewise include people who talk about depression
  without having it);
* users are split into disjoint train and test sets, stratified by label.

It is a simulation: a "positive" user here is someone whose simulated history
contains depression-community posts, not a person with a diagnosis. The
output files say so in their README.

Run it with ``earlyrisk simulate`` (defaults rebuild the bundled files).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

from models.wire import to_wire

REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    """The bundled data: ``data/`` of a source checkout (or editable install), else the
    copy a wheel installs as package data (the ``earlyrisk_data`` package, see setup.py)."""
    checkout = REPO_ROOT / "data"
    if (checkout / "simulated").is_dir():
        return checkout
    spec = find_spec("earlyrisk_data")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return checkout


DATA_DIR = _data_dir()
RMHD_SAMPLE = DATA_DIR / "rmhd-sample" / "posts.csv.gz"
SIMULATED_DIR = DATA_DIR / "simulated"

DEPRESSION = ("depression", "suicidewatch")
SUPPORT = (
    "anxiety", "healthanxiety", "socialanxiety", "mentalhealth", "bipolarreddit", "bpd",
    "ptsd", "schizophrenia", "EDAnonymous", "addiction", "alcoholism", "adhd", "autism",
    "divorce", "mindfulness", "lonely", "ForeverAlone",
)
EVERYDAY = (
    "conspiracy", "guns", "legaladvice", "personalfinance", "UKPersonalFinance", "teaching",
    "ukpolitics", "unitedkingdom",
)


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 2020
    n_positive: int = 56
    n_control: int = 250
    min_writings: int = 5
    max_writings: int = 60
    positive_depression_share: tuple[float, float] = (0.2, 0.5)
    positive_support_share: tuple[float, float] = (0.2, 0.6)  # of the non-depression part
    control_support_share: tuple[float, float] = (0.3, 1.0)
    control_depression_rate: float = 0.25  # share of controls with 1-2 depression posts
    test_fraction: float = 0.5


@dataclass
class SimUser:
    name: str
    label: int
    writings: list[dict] = field(default_factory=list)  # wire-format dicts, chronological


def load_posts(path: Path = RMHD_SAMPLE) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        r["row"] = i
    return rows


def _log_uniform_int(rng: random.Random, lo: int, hi: int) -> int:
    return round(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def build(config: SimulationConfig = SimulationConfig(), posts: list[dict] | None = None
          ) -> tuple[list[SimUser], list[SimUser]]:
    """Simulated (train, test) users; deterministic for a given seed and data."""
    rng = random.Random(config.seed)
    posts = load_posts() if posts is None else posts
    pools: dict[str, list[dict]] = {"depression": [], "support": [], "everyday": []}
    for p in posts:
        sub = p["subreddit"]
        key = ("depression" if sub in DEPRESSION else "support" if sub in SUPPORT
               else "everyday" if sub in EVERYDAY else None)
        if key is None:
            raise ValueError(f"subreddit {sub!r} is in no pool")
        pools[key].append(p)
    for pool in pools.values():
        rng.shuffle(pool)

    def draw(pool: str, fallback: str) -> dict | None:
        for key in (pool, fallback):
            if pools[key]:
                return pools[key].pop()
        return None

    # Positives first, so that every positive gets its depression posts before
    # controls take the one or two some of them write there.
    labels = [1] * config.n_positive + [0] * config.n_control
    names: set[str] = set()
    users: list[SimUser] = []
    for label in labels:
        name = f"sim-{rng.getrandbits(32):08x}"
        while name in names:
            name = f"sim-{rng.getrandbits(32):08x}"
        names.add(name)
        n = _log_uniform_int(rng, config.min_writings, config.max_writings)
        chosen: list[dict] = []
        if label:
            n_dep = max(1, round(n * rng.uniform(*config.positive_depression_share)))
            support_share = rng.uniform(*config.positive_support_share)
            if len(pools["depression"]) < min(n_dep, n):
                continue  # no positive without its depression-community writings
        else:
            n_dep = rng.choice((1, 2)) if rng.random() < config.control_depression_rate else 0
            support_share = rng.uniform(*config.control_support_share)
        for _ in range(min(n_dep, n)):
            p = draw("depression", "depression")
            if p is not None:
                chosen.append(p)
        while len(chosen) < n:
            pool, other = (("support", "everyday") if rng.random() < support_share
                           else ("everyday", "support"))
            p = draw(pool, other)
            if p is None:
                break
            chosen.append(p)
        if len(chosen) < config.min_writings:
            break  # data exhausted: fewer users rather than degenerate ones
        user = SimUser(name=name, label=label)
        for p in chosen:
            day = datetime.strptime(p["date"], "%Y/%m/%d").replace(tzinfo=UTC)
            created = int(day.timestamp()) + rng.randrange(86_400)
            user.writings.append(
                {
                    "id": f"rmhd{p['row']:05d}",
                    "author": name,
                    "created_utc": created,
                    "kind": "post",
                    "subreddit": p["subreddit"],
                    "title": "",
                    "body": p["post"],
                }
            )
        user.writings.sort(key=lambda w: (w["created_utc"], w["id"]))
        users.append(user)

    pos = [u for u in users if u.label]
    neg = [u for u in users if not u.label]
    test: list[SimUser] = []
    train: list[SimUser] = []
    for group in (pos, neg):
        k = round(len(group) * config.test_fraction)
        test.extend(group[:k])
        train.extend(group[k:])
    return sorted(train, key=lambda u: u.name), sorted(test, key=lambda u: u.name)


def stream(users: list[SimUser]) -> list[dict]:
    """All users' writings merged into one chronological stream."""
    merged = [w for u in users for w in u.writings]
    merged.sort(key=lambda w: (w["created_utc"], w["id"]))
    return merged


def _gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    # mtime=0 and no file name: the same content gives the same bytes.
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return buf.getvalue()


def write(out_dir: Path = SIMULATED_DIR, config: SimulationConfig = SimulationConfig(),
          posts: list[dict] | None = None) -> dict:
    """Write ``{train,test}.jsonl.gz``, truth files and a manifest; return it."""
    train, test = build(config, posts)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"simulation": True, "config": asdict(config), "files": {}, "splits": {}}
    for split, users in (("train", train), ("test", test)):
        lines = [to_wire(**w) for w in stream(users)]
        blobs = {
            f"{split}.jsonl.gz": _gzip_bytes(("\n".join(lines) + "\n").encode()),
            f"{split}-truth.txt": "".join(f"{u.name} {u.label}\n" for u in users).encode(),
        }
        for name, blob in blobs.items():
            (out_dir / name).write_bytes(blob)
            manifest["files"][name] = hashlib.sha256(blob).hexdigest()
        manifest["splits"][split] = {
            "users": len(users),
            "positive": sum(u.label for u in users),
            "writings": len(lines),
            "writings_per_user_min": min(len(u.writings) for u in users),
            "writings_per_user_max": max(len(u.writings) for u in users),
        }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
