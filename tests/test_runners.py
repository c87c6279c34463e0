"""Runner portability: stable labels, Flink-safe state, portable = direct, Dataflow dry run."""

from __future__ import annotations

import apache_beam as beam
import duckdb
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2

from pipelines import steplabels
from pipelines.cli import main
from pipelines.options import ScreeningOptions
from pipelines.screening import build, run

# State kinds the Flink portable runner implements for Python SDK harnesses.
FLINK_STATE_KINDS = {"read_modify_write_spec", "bag_spec", "combining_spec"}


def test_step_labels_match_the_record():
    assert steplabels.main([]) == 0, (
        "step labels changed: Flink savepoints / Dataflow updates would lose state. If "
        "deliberate, run `python -m pipelines.steplabels --write` and plan the migration.")


def pipeline_proto(extra: tuple[str, ...] = ()) -> beam_runner_api_pb2.Pipeline:
    options = PipelineOptions(["--runner=DirectRunner", "--raw_user_ids", *extra])
    p = beam.Pipeline(options=options)
    build(p, options.view_as(ScreeningOptions))
    return p.to_runner_api()


def test_pipeline_uses_only_what_flink_portable_supports():
    proto = pipeline_proto(("--output", "duckdb:///tmp/earlyrisk-flinkcheck.duckdb"))
    stateful = []
    for t in proto.components.transforms.values():
        if t.spec.urn != "beam:transform:pardo:v1":
            continue
        payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
        assert not payload.requires_time_sorted_input, t.unique_name
        for name, spec in payload.state_specs.items():
            kind = spec.WhichOneof("spec")
            assert kind in FLINK_STATE_KINDS, f"{t.unique_name}: {name} uses {kind}"
            stateful.append(t.unique_name)
        for name, timer in payload.timer_family_specs.items():
            assert timer.time_domain in (beam_runner_api_pb2.TimeDomain.EVENT_TIME,
                                         beam_runner_api_pb2.TimeDomain.PROCESSING_TIME), name
    assert stateful == ["Score/ScoreUser/ParDo(_ScoreUserDoFn)"]


def table_rows(db) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "scores": con.execute("select * exclude (processed_at) from scores "
                                  "order by all").fetchall(),
            "alerts": con.execute("select * from alerts order by all").fetchall(),
            "writings": con.execute("select * from writings order by all").fetchall(),
            "dead_letters": con.execute("select * exclude (received_at) from dead_letters "
                                        "order by all").fetchall(),
        }
    finally:
        con.close()


@pytest.mark.slow
def test_portable_runner_gives_the_same_rows_as_direct(tmp_path):
    base = ["--raw_user_ids", "--input", "data/simulated/test.jsonl.gz"]
    direct = run(base + ["--output", f"duckdb://{tmp_path}/direct.duckdb"], show_progress=False)
    portable = run(base + ["--output", f"duckdb://{tmp_path}/portable.duckdb",
                           "--runner", "portable", "--job_endpoint", "embed",
                           "--environment_type", "LOOPBACK"], show_progress=False)
    assert (direct.read, direct.scored, direct.alerts) == (
        portable.read, portable.scored, portable.alerts)
    a, b = table_rows(tmp_path / "direct.duckdb"), table_rows(tmp_path / "portable.duckdb")
    assert len(a["scores"]) == direct.scored > 0
    assert a == b


@pytest.mark.slow
def test_dataflow_dry_run_translates_the_streaming_pipeline(capsys, monkeypatch):
    # The production shape: Pub/Sub in, BigQuery out, streaming; translated, not submitted.
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    code = main(["run", "--runner", "dataflow", "--dry_run=True", "--project", "demo-project",
                 "--region", "europe-west1", "--temp_location", "gs://demo-bucket/tmp",
                 "--streaming", "--input", "pubsub://projects/demo-project/subscriptions/s",
                 "--output", "bigquery://demo-project/earlyrisk", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "translated (dry run, not submitted)" in out


@pytest.mark.parametrize("argv,needle", [
    (["--runner", "flink"], "--flink_master"),
    (["--runner", "flink", "--flink_master", "localhost:8081"], "--environment_type"),
    (["--runner", "portable"], "--job_endpoint"),
    (["--runner", "dataflow", "--project", "p"], "--region, --temp_location"),
    (["--runner", "dataflow", "--project", "p", "--region", "r", "--temp_location", "/tmp"],
     "gs://"),
    (["--runner", "dataflow", "--project", "p", "--region", "r", "--temp_location", "gs://b/t"],
     "duckdb:// is an embedded store"),
    (["--runner", "spark"], "unsupported runner"),
])
def test_runner_option_errors(argv, needle, capsys):
    assert main(["run", *argv]) == 2
    assert needle in capsys.readouterr().err
