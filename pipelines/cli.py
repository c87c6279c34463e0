"""``earlyrisk``: the one command-line entry point.

Subcommands: ``run`` (the screening pipeline), ``train`` (fit and save a
portable model), ``simulate`` (rebuild the simulated user streams), ``sql``
(query the embedded store), ``serve`` (the expert review web app), ``bench``
(performance measurements, see docs/PERFORMANCE.md).
``earlyrisk SUBCOMMAND --help`` documents each.
Bad arguments exit with status 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from corpora.simulate import SIMULATED_DIR

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, no usage dump
        raise UsageError(message)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- run -------------------------------------------------------------------------
def _run_parser(sub) -> argparse.ArgumentParser:
    from pipelines.options import ScreeningOptions

    p = sub.add_parser(
        "run",
        help="run the screening pipeline",
        description="Run the screening pipeline: read submissions, keep per-user state, "
        "score with tf-idf + L1 logistic regression, write scores, alerts and dead letters. "
        "With no arguments: the bundled simulated test stream and model, into "
        "./earlyrisk.duckdb. Any Apache Beam pipeline option (--runner, ...) is accepted too.",
    )
    ScreeningOptions._add_argparse_args(p)
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    return p


def _unknown_beam_args(args: list[str]) -> list[str]:
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(args)
    return [a for a in unknown if a.startswith("-")]


def cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.options import OptionsError
    from pipelines.screening import run

    unknown = _unknown_beam_args(beam_args)
    if unknown:
        raise UsageError(f"unrecognised option {unknown[0]} (see 'earlyrisk run --help')")
    argv = list(beam_args)
    for key, value in vars(args).items():
        if key in ("command", "func", "no_progress") or value is None:
            continue
        if isinstance(value, bool):
            if value:
                argv.append(f"--{key}")
        else:
            argv += [f"--{key}", str(value)]
    # A failing DoFn is logged by Beam with its traceback before the run
    # raises; the reason is printed below (or the traceback, for a bug).
    beam_log = logging.getLogger("apache_beam.runners.common")
    level = beam_log.level
    beam_log.setLevel(logging.CRITICAL)
    try:
        summary = run(argv, show_progress=False if args.no_progress else None)
    except OptionsError as e:
        raise UsageError(str(e)) from None
    except Exception as e:
        reason = _run_failure(e)
        if reason is None:
            raise  # not an operational failure: a bug, keep the traceback
        print(f"earlyrisk: error: {reason}", file=sys.stderr)
        return 1
    finally:
        beam_log.setLevel(level)
    print("\n".join(summary.lines()))
    return 0 if summary.balanced else 1


def _run_failure(e: Exception) -> str | None:
    """A one-line reason for a run that failed for an operational reason, else None."""
    import duckdb

    from transforms.sinks import SinkUnavailableError

    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, SinkUnavailableError):
        return (f"{first}; nothing after the last written bundle was acknowledged, "
                "so running again resumes without loss")
    if isinstance(e, duckdb.Error):
        return f"DuckDB store: {first}"
    return None


# -- train -----------------------------------------------------------------------
def _train_parser(sub) -> argparse.ArgumentParser:
    from models.train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train and save a portable model",
        description="Train the model: one document per user, tf-idf, L1 logistic regression, "
        "C (and raw vs sublinear tf) by stratified k-fold CV on F1, refit on all users. "
        "Defaults reproduce the bundled model exactly (same content hash).",
    )
    p.add_argument("--train", default=str(SIMULATED_DIR / "train.jsonl.gz"),
                   help="training writings, wire-format JSONL (default: bundled simulated "
                        "train split)")
    p.add_argument("--truth", default=str(SIMULATED_DIR / "train-truth.txt"),
                   help="golden truth, 'user label' per line")
    p.add_argument("--out", default="earlyrisk-model", help="output model directory")
    p.add_argument("--name", default=d.name, help="model name")
    p.add_argument("--folds", type=int, default=d.folds, help="cross-validation folds")
    p.add_argument("--min-df", type=int, default=d.min_df,
                   help="drop terms used by fewer users")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for folds and solver")
    p.add_argument("--c-grid", default=",".join(f"{c:g}" for c in d.c_grid),
                   help="comma-separated values of C to search")
    return p


def cmd_train(args: argparse.Namespace) -> int:
    from corpora.readers import read_training_users
    from models.portable import PortableModel
    from models.train import TrainConfig, train

    for path in (args.train, args.truth):
        if not Path(path).is_file():
            raise UsageError(f"{path} does not exist")
    if args.folds < 2:
        raise UsageError("--folds must be at least 2")
    try:
        grid = tuple(float(c) for c in args.c_grid.split(","))
    except ValueError:
        raise UsageError(f"--c-grid: not a list of numbers: {args.c_grid!r}") from None
    if not grid or min(grid) <= 0:
        raise UsageError("--c-grid values must be positive")
    users = read_training_users(args.train, args.truth)
    config = TrainConfig(name=args.name, c_grid=grid, folds=args.folds, min_df=args.min_df,
                         seed=args.seed)
    try:
        model = train(users, config, progress=_say)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model.save(args.out)
    r = model.report
    print(f"model            {model.version}  ->  {args.out}")
    print(f"users            {r['n_users']} ({r['n_positive']} positive), "
          f"{r['n_writings']} writings")
    print(f"vocabulary       {len(model.vocabulary)} terms, {model.n_nonzero} non-zero weights")
    print(f"chosen           C={r['C']:g}, sublinear_tf={r['sublinear_tf']}, "
          f"CV F1={r['cv_f1']:.3f} ({r['cv_folds']}-fold)")
    try:
        bundled = PortableModel.load()
        same = bundled.content_hash == model.content_hash
        print(f"bundled model    {'identical' if same else 'differs'} ({bundled.version})")
    except Exception as e:
        print(f"bundled model    not comparable: {e}")
    return 0


# -- simulate --------------------------------------------------------------------
def _simulate_parser(sub) -> argparse.ArgumentParser:
    from corpora.simulate import SimulationConfig

    d = SimulationConfig()
    p = sub.add_parser(
        "simulate",
        help="rebuild the simulated user streams from the bundled posts",
        description="Build SIMULATED users (chronological streams of real RMHD posts) and "
        "write train/test JSONL + truth files. Defaults rebuild the bundled files.",
    )
    p.add_argument("--out", default=str(SIMULATED_DIR), help="output directory")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--positive", type=int, default=d.n_positive, help="positive users")
    p.add_argument("--control", type=int, default=d.n_control, help="control users")
    return p


def cmd_simulate(args: argparse.Namespace) -> int:
    from corpora.simulate import SimulationConfig, write

    if args.positive < 4 or args.control < 4:
        raise UsageError("need at least 4 positive and 4 control users")
    config = SimulationConfig(seed=args.seed, n_positive=args.positive, n_control=args.control)
    manifest = write(Path(args.out), config)
    for split, s in manifest["splits"].items():
        print(f"{split:5}  {s['users']} users ({s['positive']} positive), "
              f"{s['writings']} writings -> {args.out}")
    return 0


# -- sql -------------------------------------------------------------------------
def _sql_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sql",
        help="query the embedded DuckDB store",
        description="Run one SQL query (read-only) against the DuckDB store that "
        "'earlyrisk run' wrote. Tables: scores, alerts, dead_letters, writings, labels.",
    )
    p.add_argument("query", help="the SQL query")
    p.add_argument("--db", default="duckdb://earlyrisk.duckdb",
                   help="database URI or path (default: duckdb://earlyrisk.duckdb)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--max-rows", type=int, default=200,
                   help="rows shown in table format (default 200)")
    return p


def _db_path(uri: str) -> str:
    from transforms.sinks import SinkURIError, parse_sink_uri

    if "://" not in uri:
        return uri
    try:
        return parse_sink_uri(uri)[1]
    except SinkURIError as e:
        raise UsageError(str(e)) from None


def format_table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [[("NULL" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from storage.duckdb_store import connect_readonly

    try:
        con = connect_readonly(_db_path(args.db))
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    try:
        cur = con.execute(args.query)
    except duckdb.Error as e:
        raise UsageError(f"query failed: {str(e).splitlines()[0]}") from None
    if cur.description is None:
        return 0
    columns = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if args.format == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(rows)
    elif args.format == "json":
        for r in rows:
            print(json.dumps(dict(zip(columns, r)), default=str, ensure_ascii=False))
    else:
        print(format_table(columns, rows[: args.max_rows]))
        more = f" (showing {args.max_rows})" if len(rows) > args.max_rows else ""
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{more})")
    return 0


# -- evaluate --------------------------------------------------------------------
def _evaluate_parser(sub) -> argparse.ArgumentParser:
    from models.decisions import PAPER_METHODS

    p = sub.add_parser(
        "evaluate",
        help="evaluate decision methods with the eRisk protocol",
        description="Run early-risk decision methods over a labelled collection with the "
        "pipeline's scorer and policies; print a table like the paper's Table 2 (F1, P, R, "
        "ERDE5, ERDE50, F_latency) and write metrics.json, decisions.csv, rankings.csv and "
        "plots. With no arguments: the bundled SIMULATED test users.",
    )
    p.add_argument("--input", default=str(SIMULATED_DIR / "test.jsonl.gz"),
                   help="writings: a JSONL[.gz] file, an eRisk collection directory, or a "
                        "CSV file (default: bundled simulated test split)")
    p.add_argument("--truth", default=None,
                   help="golden truth, 'user 0|1' per line (default for the bundled input: "
                        "its truth file; optional for CSV with a label column)")
    p.add_argument("--format", choices=("jsonl", "erisk", "csv"), default="jsonl")
    p.add_argument("--csv-columns", default=None,
                   help="CSV column mapping, e.g. author=user,time=date,text=post,label=y "
                        "(defaults: author, created_utc, text; no label)")
    p.add_argument("--methods", default=",".join((*PAPER_METHODS, "window")),
                   help="comma-separated: random[:SEED], depressed, first:N, all, "
                        "incremental:THETA, window[:T/FIRST/WINDOW/LATE] (default: the "
                        "paper's nine methods and 'window', this project's early-window "
                        "policy; see docs/EVALUATION.md)")
    p.add_argument("--model", default=None, help="portable model directory (default: bundled)")
    p.add_argument("--out", default="earlyrisk-eval", help="output directory")
    p.add_argument("--erde", default="5,50", help="ERDE o values (default 5,50)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    return p


def cmd_evaluate(args: argparse.Namespace) -> int:
    from evaluation.cli import evaluate_command

    try:
        return evaluate_command(args)
    except ValueError as e:
        raise UsageError(str(e).splitlines()[0]) from None
# -- serve -----------------------------------------------------------------------
def _serve_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="run the expert review web app",
        description="Serve the review web app over the store 'earlyrisk run' wrote: alerts, "
        "per-user history with probabilities, tagging, dataset downloads, statistics. "
        "Needs credentials in the environment: EARLYRISK_REVIEW_USERS (name:hash, see "
        "--hash-password) and/or EARLYRISK_REVIEW_TOKEN. See docs/REVIEW_APP.md.",
    )
    p.add_argument("--db", default="duckdb://earlyrisk.duckdb",
                   help="store: duckdb://PATH, a path, or bigquery://PROJECT/DATASET "
                        "(default: duckdb://earlyrisk.duckdb)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--raw-names", action="store_true",
                   help="show user ids as stored even when they are raw Reddit names "
                        "(default: pseudonymise them for display; or set "
                        "EARLYRISK_REVIEW_RAW_NAMES=1)")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password (stdin or prompt), print its hash for "
                        "EARLYRISK_REVIEW_USERS and exit")
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    from webapp.server import prompt_password_hash, serve

    if args.hash_password:
        try:
            print(prompt_password_hash())
        except ValueError as e:
            raise UsageError(str(e)) from None
        return 0
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, got {args.port}")
    try:
        serve(args.db, args.host, args.port, raw_names=args.raw_names)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    return 0
# -- crawl -----------------------------------------------------------------------
def _crawl_parser(sub) -> argparse.ArgumentParser:
    from crawler.cli import add_parser

    return add_parser(sub)


def cmd_crawl(args: argparse.Namespace) -> int:
    from crawler.cli import cmd_crawl as run_crawl

    return run_crawl(args)
# -- analytics -------------------------------------------------------------------
def _analytics_parser(sub) -> argparse.ArgumentParser:
    from analytics.cli import add_arguments

    p = sub.add_parser(
        "analytics",
        help="run a named analytics query on DuckDB or BigQuery",
        description="Named queries written once in BigQuery SQL (analytics/queries/), run "
        "unchanged on BigQuery and translated for DuckDB. 'earlyrisk analytics --list' "
        "shows them with their parameters.",
    )
    add_arguments(p)
    return p


def cmd_analytics(args: argparse.Namespace) -> int:
    from analytics.cli import run

    return run(args, UsageError)


# -- bench -----------------------------------------------------------------------
def _bench_parser(sub) -> argparse.ArgumentParser:
    from bench.run import DEFAULT_RESULTS, SECTIONS

    p = sub.add_parser(
        "bench",
        help="measure performance against the paper's method and Beam's ceiling",
        description="Benchmarks, each side by side with its baseline in the same run: the "
        "incremental scorer vs the paper's re-transform, earlyrisk run vs an empty stateful "
        "DoFn, per-user state size, Pub/Sub latency, a 1M-submission replay and training. "
        "Prints a table and writes a JSON file. See docs/PERFORMANCE.md.",
    )
    p.add_argument("--quick", action="store_true",
                   help="small sizes (a minute or two; what CI runs)")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    p.add_argument("--results", default=str(DEFAULT_RESULTS),
                   help=f"where to write the JSON results (default ./{DEFAULT_RESULTS})")
    p.add_argument("--keep", action="store_true",
                   help="with --only: keep the other sections' figures already in the "
                        "results file (from a run of the same kind, quick or full)")
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.run import SECTIONS, run, table

    sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise UsageError(f"--only: unknown section {unknown[0] if unknown else '(none)'} "
                         f"(sections: {', '.join(SECTIONS)})")
    results = run(quick=args.quick, sections=sections, results=Path(args.results), say=_say,
                  keep_other_sections=args.keep)
    print(table(results))
    print(f"results          {args.results}")
    return 0


# -- forget ----------------------------------------------------------------------
def _forget_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "forget",
        help="delete everything stored about a user (retention, erasure requests)",
        description="Delete a user's rows from every table of the store (scores, alerts, "
        "writings, labels, their stored per-user state, and dead letters that name them), "
        "then rewrite the file so no trace remains in it. Give the Reddit name (its "
        "pseudonym is computed with the pipeline's key: $EARLYRISK_PSEUDONYM_KEY or the key "
        "file) or the pseudonym. State held by a running or remote pipeline and broker "
        "retention are separate: see docs/RELIABILITY.md.",
    )
    p.add_argument("--user", action="append", required=True,
                   help="Reddit user name or pseudonym (u_...); repeat for several")
    p.add_argument("--db", default="duckdb://earlyrisk.duckdb",
                   help="store: duckdb://PATH, a path, or bigquery://PROJECT/DATASET "
                        "(default: duckdb://earlyrisk.duckdb)")
    p.add_argument("--pseudonym-key-file", default=None,
                   help="key file, when $EARLYRISK_PSEUDONYM_KEY is unset (default: the "
                        "pipeline's default key file)")
    p.add_argument("--dry-run", action="store_true",
                   help="count what would be deleted, delete nothing")
    return p


def cmd_forget(args: argparse.Namespace) -> int:
    from storage.retention import forget_command

    try:
        db = args.db if args.db.startswith("bigquery://") else _db_path(args.db)
        return forget_command(args.user, db, args.pseudonym_key_file, args.dry_run, _say)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e).splitlines()[0]) from None


# -- main ------------------------------------------------------------------------
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "run": (_run_parser, cmd_run),
    "train": (_train_parser, cmd_train),
    "simulate": (_simulate_parser, cmd_simulate),
    "sql": (_sql_parser, cmd_sql),
    "evaluate": (_evaluate_parser, cmd_evaluate),
    "serve": (_serve_parser, cmd_serve),
    "crawl": (_crawl_parser, cmd_crawl),
    "bench": (_bench_parser, cmd_bench),
    "analytics": (_analytics_parser, cmd_analytics),
    "forget": (_forget_parser, cmd_forget),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="earlyrisk",
        description="Early risk detection of depression on Reddit: a streaming screening "
        "pipeline that flags users for review by human experts.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for make, func in COMMANDS.values():
        make(sub).set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    try:
        if argv and argv[0] == "run":
            args, extra = parser.parse_known_args(argv)
        else:
            args, extra = parser.parse_args(argv), []
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "run":
            return args.func(args, extra)
        return args.func(args)
    except UsageError as e:
        print(f"earlyrisk: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("earlyrisk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
