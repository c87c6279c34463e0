"""The simulated streams: reproducible, disjoint, chronological, honest."""

import gzip
import hashlib
import json

from corpora.simulate import SimulationConfig, build, write
from tests.conftest import SIMULATED


def test_builder_reproduces_bundled_files(tmp_path):
    manifest = write(tmp_path)
    bundled = json.loads((SIMULATED / "manifest.json").read_text())
    assert manifest["files"] == bundled["files"]
    for name, digest in bundled["files"].items():
        assert hashlib.sha256((SIMULATED / name).read_bytes()).hexdigest() == digest


def test_users_disjoint_posts_unique_streams_chronological():
    train, test = build(SimulationConfig())
    assert not {u.name for u in train} & {u.name for u in test}
    ids = [w["id"] for u in train + test for w in u.writings]
    assert len(ids) == len(set(ids)), "a post was used twice"
    for u in train + test:
        times = [w["created_utc"] for w in u.writings]
        assert times == sorted(times)
        assert all(w["author"] == u.name for w in u.writings)
    for users in (train, test):
        assert 0 < sum(u.label for u in users) < len(users)


def test_positives_and_controls_draw_as_specified():
    train, test = build(SimulationConfig())
    dep = {"depression", "suicidewatch"}
    for u in train + test:
        share = sum(w["subreddit"] in dep for w in u.writings) / len(u.writings)
        if u.label:
            assert share > 0
        else:
            assert sum(w["subreddit"] in dep for w in u.writings) <= 2
    # Some controls talk in mental-health support communities too.
    assert any(not u.label and any(w["subreddit"] not in dep and w["subreddit"] in
               {"anxiety", "lonely", "mentalhealth", "bpd", "ptsd"} for w in u.writings)
               for u in test)


def test_files_say_they_are_a_simulation():
    assert json.loads((SIMULATED / "manifest.json").read_text())["simulation"] is True
    assert "SIMULATED" in (SIMULATED / "README.md").read_text()
    with gzip.open(SIMULATED / "test.jsonl.gz", "rt") as f:
        first = json.loads(f.readline())
    assert first["author"].startswith("sim-")
