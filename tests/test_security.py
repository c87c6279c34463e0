"""Privacy and secrets: no raw names without opt-in, no key inside the pipeline graph.

The review app's sign-in, CSRF and 401s are tested in tests/webapp/test_app.py
and test_auth.py.
"""

from __future__ import annotations

import gzip
import json

import apache_beam as beam
import duckdb
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import ScreeningOptions
from pipelines.screening import build, run
from tests.conftest import SIMULATED, write_jsonl

KEY = "a-secret-pseudonym-key-0123456789"


def _text_columns(con) -> list[tuple[str, str]]:
    return con.execute(
        "select table_name, column_name from information_schema.columns "
        "where data_type = 'VARCHAR' order by 1, 2").fetchall()


def _tables_mentioning(db, needles: list[str]) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    found = set()
    try:
        for table, column in _text_columns(con):
            for n in needles:
                hit = con.execute(f'select count(*) from {table} '
                                  f'where contains(lower("{column}"), ?)', [n.lower()]
                                  ).fetchone()[0]
                if hit:
                    found.add(f"{table}.{column}")
    finally:
        con.close()
    return found


@pytest.mark.slow
def test_no_raw_user_name_is_stored_anywhere_unless_opted_in(tmp_path, monkeypatch):
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    with gzip.open(SIMULATED / "test.jsonl.gz", "rb") as f:
        lines = [next(f).rstrip(b"\n") for _ in range(80)]
    objs = [json.loads(x) for x in lines]
    names = sorted({o["author"] for o in objs})
    victim = objs[0]
    bad = [
        json.dumps({**victim, "id": "b1", "created_utc": "soon"}),      # parse dead letter
        json.dumps({**victim, "id": "b2"})[:-1],                         # invalid JSON
        json.dumps({**victim, "id": "b3", "body": "x" * 70_000}),          # too large
        lines[0],                                                        # duplicate
    ]
    src = write_jsonl(tmp_path / "in.jsonl", lines + bad)
    db = tmp_path / "p.duckdb"
    summary = run(["--input", f"file://{src}", "--output", f"duckdb://{db}",
                   "--threshold", "0.0", "--max-message-bytes", "65536"], show_progress=False)
    assert summary.balanced and summary.dead_lettered == len(bad)
    assert summary.alerts > 0
    assert _tables_mentioning(db, names) == set()

    raw_db = tmp_path / "raw.duckdb"
    run(["--input", f"file://{src}", "--output", f"duckdb://{raw_db}", "--raw-user-ids"],
        show_progress=False)
    assert "scores.user_id" in _tables_mentioning(raw_db, [victim["author"]])


def _graph_bytes(p: beam.Pipeline) -> bytes:
    """The pipeline as runners receive it, with every DoFn unpickled and re-dumped
    uncompressed (Beam compresses pickled DoFns, which would hide any string)."""
    import cloudpickle
    from apache_beam.internal import pickler
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    proto = p.to_runner_api()
    out = [proto.SerializeToString()]
    for t in proto.components.transforms.values():
        if t.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
            out.append(cloudpickle.dumps(pickler.loads(payload.do_fn.payload)))
    return b"".join(out)


def test_the_key_never_travels_in_the_pipeline_graph(tmp_path, monkeypatch):
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    src = write_jsonl(tmp_path / "in.jsonl", ["{}"])
    opts = PipelineOptions(["--input", f"file://{src}", "--output",
                            f"duckdb://{tmp_path / 'x.duckdb'}"])
    p = beam.Pipeline(options=opts)
    build(p, opts.view_as(ScreeningOptions))
    graph = _graph_bytes(p)
    assert b"EARLYRISK_PSEUDONYM_KEY" in graph  # the name of the variable travels...
    assert KEY.encode() not in graph            # ...its value does not
    # Nor does a key file's content (only its path).
    key_file = tmp_path / "k.key"
    key_file.write_text("file-held-secret-key-0123456789\n")
    monkeypatch.delenv("EARLYRISK_PSEUDONYM_KEY")
    opts = PipelineOptions(["--input", f"file://{src}", "--output",
                            f"duckdb://{tmp_path / 'y.duckdb'}",
                            "--pseudonym-key-file", str(key_file)])
    p = beam.Pipeline(options=opts)
    build(p, opts.view_as(ScreeningOptions))
    graph = _graph_bytes(p)
    assert str(key_file).encode() in graph
    assert b"file-held-secret-key" not in graph
