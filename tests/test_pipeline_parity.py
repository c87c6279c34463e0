"""The live pipeline's alerts equal the evaluator's decisions on the same stream.

Runs the real screening pipeline (DirectRunner, DuckDB sink) over the bundled
simulated test stream and compares, user by user, the writing at which it
first alerted with the evaluator's positive decision for the same policy.
"""

from __future__ import annotations

import pytest

from corpora.readers import read_wire_streams
from corpora.simulate import SIMULATED_DIR
from models.decisions import parse_method, trajectory
from models.portable import PortableModel
from models.scorer import IncrementalScorer
from pipelines.screening import run
from storage.duckdb_store import connect_readonly

STREAM = SIMULATED_DIR / "test.jsonl.gz"


@pytest.fixture(scope="module")
def trajectories() -> dict[str, tuple[float, ...]]:
    scorer = IncrementalScorer(PortableModel.load())
    users = read_wire_streams(STREAM).users
    return {u: trajectory(scorer, (s.text for s in subs)) for u, subs in users.items()}


@pytest.mark.slow
@pytest.mark.parametrize("policy, method", [
    ([], "incremental:0.5"),
    (["--policy", "window"], "window"),
])
def test_pipeline_alerts_equal_evaluator_decisions(tmp_path, trajectories, policy, method):
    db = tmp_path / "parity.duckdb"
    summary = run(["--input", f"file://{STREAM}", "--output", f"duckdb://{db}",
                   "--raw-user-ids", *policy], show_progress=False)
    assert summary.balanced
    con = connect_readonly(str(db))
    alerts = dict(con.execute(
        "SELECT user_id, writings_seen FROM alerts WHERE alert_seq = 1").fetchall())
    con.close()
    evaluator = parse_method(method)
    decided = {}
    for user, traj in trajectories.items():
        out = evaluator.decide(user, traj)
        if out.decision:
            decided[user] = out.writings_seen
    assert decided  # the comparison is not vacuous
    assert alerts == decided


@pytest.mark.parametrize("value", ["nope", "window:0.5/0.6", "window:0.5/0.6/0/0.6",
                                   "incremental:1.5"])
def test_run_rejects_bad_policy(value, capsys):
    from pipelines.cli import main

    assert main(["run", "--policy", value, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("earlyrisk: error: --policy") and len(err.splitlines()) == 1, err
