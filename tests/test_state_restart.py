"""State and Kafka offsets move together: SIGKILL at each point of a run, then run again.

With the real Tansu broker. A backfill (``--until-caught-up``) in slices of
2,000 messages; each slice ends with one DuckDB transaction holding the
slice's user states and the offsets they count (``source_offsets``), then the
broker commit. The run is killed (SIGKILL, by the ``EARLYRISK_CRASH_AT`` fault
injection point or by watching DuckDB's log) at:

* ``mid-slice``: rows of the slice already written, its state not committed;
* ``before_state_commit:2``: the second slice fully written, state not committed;
* ``after_state_commit:2``: state and store offsets committed, the broker's not;
* ``after_source_commit:1``: both committed, the next slice not started.

After a restart (same group, same store), every Kafka position is exactly once
in ``scores`` or ``dead_letters``, no submission was taken for a redelivery
(no ``duplicate`` dead letter: the state never counted a message the offsets
did not), each user's stored state counts exactly their score rows and equals
(term counts, writings, alerts) what an uninterrupted run leaves, and the
store's and the broker's offsets are at the partitions' ends.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from models.scorer import UserState
from pipelines.screening import run
from tests.services import tansu
from tests.test_restart import BAD, KEY, TOPIC, _kill_once_writing, _payloads, _produce
from transforms.kafka_io import committed_offsets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SLICE = "2000"


def _argv(bootstrap: str, group: str, db: Path) -> list[str]:
    return ["--input", f"kafka://{bootstrap}/{TOPIC}", "--until-caught-up",
            "--kafka-group", group, "--output", f"duckdb://{db}", "--slice-size", SLICE]


def _spawn(bootstrap: str, group: str, db: Path, crash_at: str | None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("EARLYRISK_CRASH_AT", None)
    if crash_at:
        env["EARLYRISK_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", *_argv(bootstrap, group, db),
         "--no-progress"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)


def _query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _states(db: Path) -> dict[str, UserState]:
    return {u: UserState.from_bytes(bytes(b))
            for u, b in _query(db, "select user_id, state from user_state")}


def _store_offsets(db: Path, group: str) -> dict[int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("select partition, next_offset from source_offsets "
                                "where consumer_group = ?", [group]).fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def broker():
    mp = pytest.MonkeyPatch()
    mp.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    try:
        with tansu() as bootstrap:
            per_partition = _produce(bootstrap, _payloads())
            yield bootstrap, per_partition
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def reference(broker, tmp_path_factory) -> Path:
    """The same backfill, same slices, never interrupted."""
    bootstrap, _ = broker
    db = tmp_path_factory.mktemp("reference") / "ref.duckdb"
    summary = run(_argv(bootstrap, "reference", db), show_progress=False)
    assert summary.balanced and summary.read == len(_payloads())
    return db


@pytest.mark.parametrize("crash_at", ["mid-slice", "before_state_commit:2",
                                      "after_state_commit:2", "after_source_commit:1"])
def test_kill_then_restart_loses_nothing_counts_nothing_twice(
        broker, reference: Path, tmp_path: Path, crash_at: str, monkeypatch) -> None:
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)  # the reference's pseudonyms
    bootstrap, per_partition = broker
    group = "kill-" + crash_at.replace(":", "-").replace("_", "-")
    db = tmp_path / "killed.duckdb"
    slice_ends = _slice_ends(per_partition, int(SLICE))

    proc = _spawn(bootstrap, group, db, None if crash_at == "mid-slice" else crash_at)
    if crash_at == "mid-slice":
        _kill_once_writing(proc, db)
    else:
        proc.wait(600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]

    # What the kill left: the store's offsets always describe its state.
    broker_now = {p: o or 0 for p, o in committed_offsets(bootstrap, TOPIC, group).items()}
    store_now = _store_offsets(db, group) if db.exists() else {}
    nothing = {p: 0 for p in per_partition}
    if crash_at == "mid-slice":
        # Killed while a slice's rows were being written: the store holds the
        # state of the slices before it (if any), the broker the same or one less.
        k = slice_ends.index(store_now) if store_now else -1
        assert k < len(slice_ends) - 1, "killed after the last slice: make the input longer"
        assert broker_now in ((slice_ends[k] if k >= 0 else nothing),
                              (slice_ends[k - 1] if k >= 1 else nothing))
    else:
        expected_store = {"before_state_commit:2": slice_ends[0],
                          "after_state_commit:2": slice_ends[1],
                          "after_source_commit:1": slice_ends[0]}[crash_at]
        expected_broker = {"before_state_commit:2": slice_ends[0],
                           "after_state_commit:2": slice_ends[0],
                           "after_source_commit:1": slice_ends[0]}[crash_at]
        assert store_now == expected_store
        assert broker_now == expected_broker
    if store_now:
        states = _states(db)
        scored = sum(s.n for s in states.values())
        assert 0 < scored < sum(per_partition.values())

    # Restart: same group, same store.
    summary = run(_argv(bootstrap, group, db), show_progress=False)
    assert summary.balanced, summary.lines()
    _assert_complete(db, group, per_partition, reference)
    assert committed_offsets(bootstrap, TOPIC, group) == per_partition
    # Nothing left: one more run reads nothing and changes nothing.
    before = _query(db, "select user_id, state from user_state order by 1")
    assert run(_argv(bootstrap, group, db), show_progress=False).read == 0
    assert _query(db, "select user_id, state from user_state order by 1") == before


def _slice_ends(per_partition: dict[int, int], size: int) -> list[dict[int, int]]:
    per = -(-size // len(per_partition))
    ends, k = [], 1
    while True:
        cut = {p: min(n, k * per) for p, n in per_partition.items()}
        ends.append(cut)
        if cut == per_partition:
            return ends
        k += 1


def _assert_complete(db: Path, group: str, per_partition: dict[int, int],
                     reference: Path) -> None:
    sources = [s for (s,) in _query(
        db, "select source from scores union all select source from dead_letters")]
    expected = sorted(f"kafka:{TOPIC}:{p}:{o}" for p, n in per_partition.items()
                      for o in range(n))
    assert sorted(sources) == expected  # every message exactly once
    reasons = dict(_query(db, "select reason, count(*) from dead_letters group by 1"))
    assert "duplicate" not in reasons and sum(reasons.values()) == len(BAD)
    # The state counts each scored writing once: n = the user's score rows.
    per_user = dict(_query(db, "select user_id, count(*) from scores group by 1"))
    states = _states(db)
    assert {u: s.n for u, s in states.items()} == per_user
    # And it is the uninterrupted run's state (the order of arrival may differ
    # between runs, so the float sums are compared to rounding).
    ref = _states(reference)
    assert states.keys() == ref.keys()
    for u, s in states.items():
        r = ref[u]
        assert (s.n, s.counts, s.recent.keys()) == (r.n, r.counts, r.recent.keys())
        assert math.isclose(s.s1, r.s1, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(s.s2, r.s2, rel_tol=1e-9, abs_tol=1e-9)
        assert s.alerts <= 1
    assert _store_offsets(db, group) == per_partition
    assert len(_query(db, "select * from user_state_staging")) == 0
