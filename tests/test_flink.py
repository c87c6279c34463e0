"""The native Flink job (flinkjob/) against the Beam job, on real PyFlink.

* equality: on the bundled stream (plus invalid lines and redeliveries), the
  Flink job run by ``earlyrisk run --engine flink`` on a local MiniCluster
  writes the same scores, alerts, writings and dead letters as the Beam
  DirectRunner;
* a standalone cluster started from the wheel (free ports): the job reads a
  Kafka topic on Tansu, checkpoints, is stopped with a savepoint midway through
  the topic, restored from it, and every message ends up stored exactly once,
  with per-user state carried across (writings_seen counts 1..n per user);
* BigQuery: the Flink job writes the same rows to the BigQuery emulator.

They need the Flink venv (``make flink``; ``make test`` runs it first) and skip,
saying so, without it.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from models.records import TABLES

REPO = Path(__file__).resolve().parent.parent
FLINK_VENV = Path(os.environ.get("EARLYRISK_FLINK_VENV", REPO / ".venv-flink"))
STREAM = REPO / "data" / "simulated" / "test.jsonl.gz"
KEY = "flink-equality-test-key-0123456789"
EARLYRISK = Path(sys.executable).parent / "earlyrisk"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (FLINK_VENV / "connectors").is_dir(),
                       reason=f"the Flink venv {FLINK_VENV} is missing: run 'make flink'"),
]


def _stream_with_faults(path: Path) -> list[bytes]:
    """The bundled stream, three invalid messages and five redeliveries."""
    lines = [line.rstrip(b"\n") for line in gzip.open(STREAM) if line.strip()]
    bad = [b"{not json", b'{"id": "x1"}', json.dumps({**json.loads(lines[0]), "kind": "poll",
                                                       "id": "zz-bad-kind"}).encode()]
    out = lines[:1000] + bad + lines[1000:] + [lines[i] for i in (3, 500, 1500, 2500, 3000)]
    path.write_bytes(b"\n".join(out) + b"\n")
    return out


def _table(path: Path, name: str) -> list[dict]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM {name}")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        con.close()


def _try_table(path: Path, name: str) -> list[dict] | None:
    try:
        return _table(path, name)
    except duckdb.IOException:
        return None


def _without(rows: list[dict], *cols: str) -> list[tuple]:
    return sorted(tuple((k, v) for k, v in r.items() if k not in cols) for r in rows)


def _run_flink(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, EARLYRISK_PSEUDONYM_KEY=KEY, EARLYRISK_FLINK_VENV=str(FLINK_VENV))
    return subprocess.run([str(EARLYRISK), "run", "--engine", "flink", "--no-progress", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_flink_job_writes_what_the_beam_job_writes(tmp_path, monkeypatch):
    from pipelines.screening import run

    src = tmp_path / "stream.jsonl"
    _stream_with_faults(src)
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    beam_db, flink_db = tmp_path / "beam.duckdb", tmp_path / "flink.duckdb"
    summary = run(["--input", f"file://{src}", "--output", f"duckdb://{beam_db}"],
                  show_progress=False)
    assert summary.dead_lettered == 8 and summary.balanced

    t0 = time.monotonic()
    done = _run_flink(["--input", f"file://{src}", "--output", f"duckdb://{flink_db}"],
                      tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"flink run: {time.monotonic() - t0:.1f} s")
    assert "dead-lettered                 8" in done.stdout

    beam_scores = {(r["user_id"], r["submission_id"]): r for r in _table(beam_db, "scores")}
    flink_scores = {(r["user_id"], r["submission_id"]): r for r in _table(flink_db, "scores")}
    assert set(flink_scores) == set(beam_scores) and len(beam_scores) == 3319
    assert {u for u, _ in flink_scores} == {u for u, _ in beam_scores}
    for key, b in beam_scores.items():
        f = flink_scores[key]
        assert abs(f["p_user"] - b["p_user"]) <= 1e-9, key
        assert abs(f["p_text"] - b["p_text"]) <= 1e-9, key
        assert (f["writings_seen"], f["source"], f["model_version"], f["created_utc"]) == \
            (b["writings_seen"], b["source"], b["model_version"], b["created_utc"]), key
    # Alerts: the same rows (ids are deterministic), so the same first alert per user.
    beam_alerts, flink_alerts = _table(beam_db, "alerts"), _table(flink_db, "alerts")
    assert beam_alerts and _without(flink_alerts, "p_user") == _without(beam_alerts, "p_user")
    first = {a["user_id"]: a["submission_id"] for a in beam_alerts if a["alert_seq"] == 1}
    assert first == {a["user_id"]: a["submission_id"] for a in flink_alerts
                     if a["alert_seq"] == 1}
    # Dead letters: same ids, stages, reasons, sources and payloads.
    dl = ("received_at",)
    assert _without(_table(flink_db, "dead_letters"), *dl) == \
        _without(_table(beam_db, "dead_letters"), *dl)
    assert len(_table(flink_db, "dead_letters")) == 8
    assert _without(_table(flink_db, "writings")) == _without(_table(beam_db, "writings"))
    # The sink's columns are models/records.py's.
    assert list(_table(flink_db, "alerts")[0]) == [c.name for c in TABLES["alerts"].columns]


def test_engine_flink_without_its_venv_exits_2_with_a_reason(tmp_path):
    env = dict(os.environ, EARLYRISK_FLINK_VENV=str(tmp_path / "nowhere"))
    done = subprocess.run([str(EARLYRISK), "run", "--engine", "flink"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "make flink" in done.stderr
    assert not (tmp_path / "earlyrisk.duckdb").exists()


def test_engine_flink_rejects_what_it_does_not_do(tmp_path):
    done = _run_flink(["--input", "pubsub://projects/p/topics/t"], tmp_path, timeout=120)
    assert done.returncode == 2 and "Pub/Sub" in done.stderr
    done = _run_flink(["--parallelism", "0", "--input", f"file://{STREAM}"], tmp_path,
                      timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("earlyrisk: error: --parallelism")


# -- a standalone cluster from the wheel: Kafka, checkpoint, savepoint, restore -----
def _expected_scores(lines: list[bytes]) -> dict[tuple[str, str], tuple[float, int]]:
    """Plain Python over the core: (user, submission) -> (p_user, writings_seen)."""
    from models.engine import SCORES, UserProcessor
    from models.portable import PortableModel
    from models.scorer import IncrementalScorer, UserState
    from models.wire import ParseError, Pseudonymizer, parse_submission

    processor = UserProcessor(IncrementalScorer(PortableModel.load()))
    pseudonymize = Pseudonymizer(KEY.encode())
    states: dict[str, UserState] = {}
    out = {}
    for line in lines:
        try:
            sub = parse_submission(line, pseudonymize)
        except ParseError:
            continue
        state = states.setdefault(sub.user_id, UserState())
        for kind, rec in processor.process(sub.user_id, state, [sub]):
            if kind == SCORES:
                out[(rec.user_id, rec.submission_id)] = (rec.p_user, rec.writings_seen)
    return out


def _produce_by_author(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """Create a 2-partition topic; each author's messages go to one partition, in order."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        f.result(timeout=15)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for line in lines:
        try:
            author = str(json.loads(line).get("author", ""))
        except ValueError:
            author = ""
        producer.produce(topic, line, key=author.encode() or None)
    assert producer.flush(30) == 0


def _score_records(home: Path, job_id: str) -> int:
    """Records the Score operator received (REST job details; kept after the job ends)."""
    from flinkjob import cluster

    for v in cluster.rest(home, f"/jobs/{job_id}")["vertices"]:
        if v["name"].startswith("Score"):
            return int(v["metrics"]["read-records"])
    raise AssertionError(f"no Score vertex in {job_id}")


def _wait(what: str, ok, timeout_s: float = 240.0, every_s: float = 0.5, diagnose=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = ok()
        if got:
            return got
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}"
                         + (f": {diagnose()}" if diagnose else ""))


def _job_report(home: Path, job_id: str) -> str:
    from flinkjob import cluster

    job = cluster.rest(home, f"/jobs/{job_id}")
    exceptions = cluster.rest(home, f"/jobs/{job_id}/exceptions")
    return json.dumps({"state": job["state"],
                       "vertices": {v["name"]: [v["status"], v["metrics"]]
                                    for v in job["vertices"]},
                       "exceptions": str(exceptions)[:3000]})


@pytest.mark.integration
def test_cluster_savepoint_midway_through_kafka_restores_exactly_once(tmp_path):
    from bench.services import free_port, tansu
    from flinkjob import cluster

    lines = [line.rstrip(b"\n") for line in gzip.open(STREAM) if line.strip()]
    lines = lines[:1500] + [b"{not json", b'{"id": "x1"}'] + lines[1500:]
    valid = len(lines) - 2
    expected = _expected_scores(lines)
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(KEY + "\n")
    db, checkpoints, savepoints = tmp_path / "out.duckdb", tmp_path / "cp", tmp_path / "sp"
    home = cluster.make_home(tmp_path / "flink", free_port(), FLINK_VENV)
    t0 = time.monotonic()
    with tansu() as bootstrap:
        _produce_by_author(bootstrap, "submissions", lines)
        pids = cluster.start(home)
        assert len(pids) == 2  # one JobManager, one TaskManager
        print(f"cluster up in {time.monotonic() - t0:.1f} s, pids {pids}")
        try:
            args = ["--input", f"kafka://{bootstrap}/submissions", "--output", f"duckdb://{db}",
                    "--kafka-start", "earliest", "--pseudonym-key-file", str(key_file),
                    "--checkpoint-dir", str(checkpoints), "--checkpoint-interval-ms", "2000"]
            first = cluster.submit(home, args, venv=FLINK_VENV)
            _wait("a checkpoint", lambda: cluster.job_state(home, first) == "RUNNING"
                  and cluster.completed_checkpoints(home, first) >= 1)
            _wait("a third of the topic", lambda: _score_records(home, first) >= valid // 3,
                  every_s=0.2)
            savepoint = cluster.stop_with_savepoint(home, first, str(savepoints))
            before = _wait("the first job's end", lambda: cluster.job_state(home, first)
                           == "FINISHED" and _score_records(home, first))
            print(f"stopped with a savepoint after {before} of {valid} submissions: {savepoint}")
            assert 0 < before < valid, "the savepoint was not taken midway through the topic"

            second = cluster.submit(home, args, savepoint=savepoint, venv=FLINK_VENV)
            _wait("the rest of the topic", lambda: cluster.job_state(home, second) == "RUNNING"
                  and _score_records(home, second) >= valid - before, timeout_s=300,
                  diagnose=lambda: _job_report(home, second))
            # Drain: event time to the end, so every pending row is written.
            cluster.stop_with_savepoint(home, second, str(savepoints), drain=True)
            _wait("the second job's end", lambda: cluster.job_state(home, second) == "FINISHED")
            assert _score_records(home, second) == valid - before  # nothing read twice
        finally:
            cluster.stop(home)
    assert not any(cluster._alive(p) for p in pids)
    print(f"cluster test: {time.monotonic() - t0:.1f} s")

    # The store's lock goes with the TaskManager; give the kernel a moment.
    scores = _wait("the DuckDB file's lock", lambda: _try_table(db, "scores"), timeout_s=60)
    got = {(r["user_id"], r["submission_id"]): (r["p_user"], r["writings_seen"]) for r in scores}
    assert len(scores) == len(got) == valid == len(expected)
    assert set(got) == set(expected)
    for k, (p_user, seen) in expected.items():
        # State crossed the savepoint: k counts on from where it was, p_user as if uninterrupted.
        assert got[k][1] == seen and abs(got[k][0] - p_user) <= 1e-9, k
    dead = _table(db, "dead_letters")
    assert sorted((d["stage"], d["reason"]) for d in dead) == \
        [("parse", "invalid_json"), ("parse", "missing_field")]
    assert len(_table(db, "writings")) == valid


# -- BigQuery (the cluster sink) on the emulator ---------------------------------
@pytest.mark.integration
def test_flink_job_writes_the_same_rows_to_bigquery(tmp_path, monkeypatch, bq_emulator):
    from pipelines.screening import run
    from storage.bigquery_store import fetch_rows, parse_bigquery_uri

    lines = [line.rstrip(b"\n") for line in gzip.open(STREAM) if line.strip()][:300]
    src = tmp_path / "small.jsonl"
    src.write_bytes(b"\n".join(lines[:100] + [b"{not json"] + lines[100:] + [lines[7]]) + b"\n")
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    beam_db = tmp_path / "beam.duckdb"
    run(["--input", f"file://{src}", "--output", f"duckdb://{beam_db}"], show_progress=False)

    uri = "bigquery://demo-project/flink_sink"
    done = _run_flink(["--input", f"file://{src}", "--output", uri, "--bq-create-tables"],
                      tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ref = parse_bigquery_uri(uri)
    for table, key in (("scores", ("user_id", "submission_id", "p_user", "writings_seen")),
                       ("alerts", ("alert_id", "user_id", "submission_id", "alert_seq")),
                       ("dead_letters", ("dead_letter_id", "stage", "reason", "source")),
                       ("writings", ("user_id", "submission_id", "body"))):
        got = sorted(tuple(r[k] for k in key) for r in fetch_rows(ref, table))
        want = sorted(tuple(r[k] for k in key) for r in _table(beam_db, table))
        assert got == want, table
    assert len(fetch_rows(ref, "dead_letters")) == 2  # the invalid line and the redelivery
