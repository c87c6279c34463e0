"""Wrong invocations of the real console script: one line on stderr, no traceback, exit 2.

Each case runs ``earlyrisk`` as a user would (a subprocess of the installed console
script), in a scratch directory holding a small store, a directory, a file and, for the
"store in use" cases, a store another process holds open for writing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from bench.services import free_port
from storage.duckdb_store import ensure_schema
from tests.conftest import SIMULATED, TEST_KEY

EARLYRISK = str(Path(sys.executable).parent / "earlyrisk")

# (argv, a phrase the one line must contain). {dir}, {file}, {db}, {locked}, {port} and
# {sim} are filled in by the fixture below.
CASES: list[tuple[list[str], str]] = [
    # run: sources and sinks
    (["run", "--input", "{dir}"], "is a directory"),
    (["run", "--input", "file://{dir}/nothing*.jsonl"], "no file matches"),
    (["run", "--input", "file://{dir}/missing.jsonl"], "does not exist"),
    (["run", "--output", "duckdb://{dir}"], "is a directory"),
    (["run", "--state-store", "bogus://x", "--output", "duckdb://{db}"], "--state-store"),
    (["run", "--state-store", "duckdb://{dir}", "--output", "duckdb://{db}"], "is a directory"),
    (["run", "--slice-size", "-5", "--output", "duckdb://{db}"], "--slice-size"),
    (["run", "--snapshot-seconds", "0", "--output", "duckdb://{db}"], "--snapshot-seconds"),
    (["run", "--engine", "spark"], "--engine"),
    (["run", "--output", "postgres://x"], "unsupported sink scheme"),
    (["run", "--output", "duckdb://{file}/x.duckdb"], "is a file, not a directory"),
    (["run", "--input", "ftp://x/y"], "unsupported source scheme"),
    (["run", "--threshold", "2"], "--threshold"),
    (["run", "--no-such-flag"], "unrecognised option"),
    (["run", "--input", "kafka://127.0.0.1:{port}/t", "--until-caught-up"], "not reachable"),
    (["run", "--input", "pubsub://projects/demo-project/subscriptions/s"], "credentials"),
    # sql
    (["sql", "select 1", "--db", "{dir}"], "is a directory"),
    (["sql", "select 1", "--db", "bigquery://p/d"], "DuckDB store only"),
    (["sql", "select 1", "--db", "{dir}/missing.duckdb"], "no database"),
    (["sql", "SELEC 1", "--db", "{db}"], "query failed"),
    (["sql", "select 1", "--db", "{locked}"], "in use by another process"),
    (["sql", "select 1", "--format", "xml"], "invalid choice"),
    # forget
    (["forget", "--user", "someone", "--db", "{locked}"], "in use by another process"),
    (["forget", "--user", "someone", "--db", "bigquery://demo-project/earlyrisk"],
     "credentials"),
    (["forget", "--user", "", "--db", "{db}"], "no user given"),
    (["forget", "--db", "{db}"], "--user"),
    # analytics
    (["analytics", "alerts_per_day", "--db", "{db}", "--out", "{dir}"], "is a directory"),
    (["analytics", "alerts_per_day", "--db", "{db}", "--out", "{dir}/no/x.csv"],
     "does not exist"),
    (["analytics", "alerts_per_day", "--db", "{locked}"], "lock"),
    (["analytics", "no_such_query", "--db", "{db}"], "no query named"),
    (["analytics", "alerts_per_day", "--db", "{db}", "--param", "bogus=1"],
     "unknown parameter"),
    (["analytics"], "--list"),
    # evaluate
    (["evaluate", "--out", "{file}"], "is a file"),
    (["evaluate", "--input", "{dir}/missing.jsonl"], "does not exist"),
    (["evaluate", "--methods", "bogus"], "unknown method"),
    (["evaluate", "--model", "{dir}"], "--model"),
    # train
    (["train", "--truth", "{sim}/test-truth.txt"], "need --format"),
    (["train", "--format", "jsonl", "--input", "{sim}/train.jsonl.gz", "--truth",
      "{sim}/test-truth.txt"], "have no usable writings"),
    (["train", "--format", "jsonl", "--input", "{dir}", "--truth", "{sim}/train-truth.txt"],
     "is not a file"),
    (["train", "--format", "erisk", "--input", "{sim}/train.jsonl.gz", "--truth",
      "{sim}/train-truth.txt"], "collection directory"),
    (["train", "--format", "csv", "--input", "{sim}/train.jsonl.gz", "--csv-columns",
      "nonsense"], "column mapping"),
    (["model", "show", "--model", "{dir}"], "no model.json"),
    (["model"], "required"),
    (["train", "--penalties", "l3"], "--penalties"),
    (["train", "--out", "{file}"], "is a file"),
    (["train", "--folds", "1"], "--folds"),
    # simulate
    (["simulate", "--seed", "x"], "invalid int"),
    (["simulate", "--positive", "1"], "at least 4"),
    (["simulate", "--out", "{file}"], "is a file"),
    # publish
    (["publish"], "--to"),
    (["publish", "--to", "gs://bucket/x"], "expected kafka://"),
    (["publish", "--to", "kafka://127.0.0.1:{port}"], "expected kafka://HOST:PORT/TOPIC"),
    (["publish", "--to", "kafka://127.0.0.1:{port}/t"], "not reachable"),
    (["publish", "--input", "{dir}", "--to", "kafka://127.0.0.1:{port}/t"], "is a directory"),
    (["publish", "--to", "pubsub://projects/demo-project/subscriptions/s"], "topics/TOPIC"),
    (["publish", "--to", "pubsub://projects/demo-project/topics/t"], "credentials"),
    (["publish", "--to", "kafka://127.0.0.1:{port}/t", "--subscription", "s"],
     "--subscription is for"),
    # the rest
    (["serve", "--port", "0"], "--port"),
    (["serve", "--db", "{db}"], "EARLYRISK_REVIEW_USERS"),
    (["crawl", "--max-users", "1"], "credentials"),
    (["crawl", "--duration", "0"], "must be positive"),
    (["bench", "--only", "bogus"], "unknown section"),
    (["bogus"], "invalid choice"),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("wrong")
    (root / "adir").mkdir()
    (root / "afile").write_text("not a directory\n")
    db = root / "store.duckdb"
    con = duckdb.connect(str(db))
    ensure_schema(con)
    con.close()
    locked = root / "locked.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); time.sleep(600)", str(locked)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield {"dir": str(root / "adir"), "file": str(root / "afile"), "db": str(db),
               "locked": str(locked), "port": str(free_port()), "sim": str(SIMULATED),
               "cwd": str(root)}
    finally:
        holder.kill()
        holder.wait()


def _env(root: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EARLYRISK_REVIEW", "REDDIT_", "PUBSUB_EMULATOR",
                                "BIGQUERY_EMULATOR", "GOOGLE_"))}
    # No cloud credentials, whatever the machine has: an empty gcloud configuration.
    env["CLOUDSDK_CONFIG"] = str(Path(root) / "gcloud")
    env["GOOGLE_CLOUD_PROJECT"] = "demo-project"
    env["HOME"] = root
    env["EARLYRISK_PSEUDONYM_KEY"] = TEST_KEY
    return env


@pytest.mark.slow
@pytest.mark.parametrize("argv,needle", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_wrong_invocation_is_one_line_and_exit_2(scratch, argv, needle):
    args = [a.format(**scratch) for a in argv]
    proc = subprocess.run([EARLYRISK, *args], capture_output=True, text=True, timeout=120,
                          cwd=scratch["cwd"], env=_env(scratch["cwd"]), stdin=subprocess.DEVNULL)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1, proc.stderr
    assert err.startswith("earlyrisk: error: "), err
    assert needle in err, err
    assert proc.returncode == 2, (proc.returncode, err)


def test_every_command_has_a_summary_and_help(capsys):
    from pipelines.cli import COMMANDS, SUMMARIES, build_parser, main

    missing = set(COMMANDS) - set(SUMMARIES)
    assert not missing, f"add a one-line summary to pipelines.cli.SUMMARIES for {missing}"
    assert set(SUMMARIES) <= set(COMMANDS)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, choice in sub.choices.items():  # the full parsers say what the summary says
        helps = [a.help for a in sub._choices_actions if a.dest == name]
        assert helps == [SUMMARIES[name]], name
        assert choice.description
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert f"usage: earlyrisk {name}" in capsys.readouterr().out


def test_help_and_version_import_nothing_heavy():
    code = ("import sys; from pipelines.cli import main\n"
            "for argv in (['--help'], ['--version']):\n"
            "    try: main(argv)\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('apache_beam', 'sklearn', 'duckdb', 'numpy', 'scipy', "
            "'google.cloud.bigquery', 'google.cloud.pubsub_v1', 'flask', 'praw', "
            "'confluent_kafka') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "HEAVY []" in out, out
    assert "publish" in out and "earlyrisk 0.1" in out


def test_forget_says_what_it_would_do(tmp_path, capsys):
    from models.records import ScoreRecord, to_row
    from pipelines.cli import main
    from storage.duckdb_store import insert_rows

    db = tmp_path / "s.duckdb"
    con = duckdb.connect(str(db))
    ensure_schema(con)
    insert_rows(con, "scores", [to_row(ScoreRecord(
        user_id="u_0123456789abcdef0123", submission_id=f"s{i}", created_utc=1_546_300_800,
        kind="post", subreddit="d", p_text=0.1, p_user=0.2, writings_seen=i + 1,
        model_version="m", source="")) for i in range(2)])
    con.close()
    assert main(["forget", "--user", "u_0123456789abcdef0123", "--db", str(db),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would delete from") and "deleted" not in out.replace(
        "would delete", "")
    assert "scores               2 rows to delete" in out
    assert main(["forget", "--user", "somebody-else", "--db", str(db), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nothing stored for this user") and "looked up" in out
    assert main(["forget", "--user", "u_0123456789abcdef0123", "--db", str(db)]) == 0
    assert "scores               2 rows deleted" in capsys.readouterr().out
