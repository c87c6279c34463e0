"""``earlyrisk``: the one command-line entry point.

Subcommands: ``run`` (the screening pipeline), ``train`` (fit and save a
portable model), ``model show`` (a model's card), ``simulate`` (rebuild the
simulated user streams), ``sql``
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
import os
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
    p.add_argument("--engine", choices=("beam", "flink"), default="beam",
                   help="'beam' (default; --runner picks where) or 'flink': the native "
                        "PyFlink job on a local MiniCluster, run in .venv-flink ('make flink'); "
                        "Flink options (--parallelism, --checkpoint-dir, ...) pass through; "
                        "see deploy/flink/README.md")
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

    if args.engine == "flink":
        from flinkjob import launch

        try:
            return launch.run(args, beam_args)
        except (launch.FlinkUnavailableError, ValueError) as e:
            raise UsageError(str(e)) from None
    unknown = _unknown_beam_args(beam_args)
    if unknown:
        raise UsageError(f"unrecognised option {unknown[0]} (see 'earlyrisk run --help')")
    argv = list(beam_args)
    for key, value in vars(args).items():
        if key in ("command", "func", "no_progress", "engine") or value is None:
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
    if getattr(summary, "interrupted", False):
        return 130
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
        description="Train tf-idf + logistic regression. Default (--format rmhd): the bundled "
        "real posts (r/depression and r/SuicideWatch positive, 25 other communities control), "
        "one document per post, words with negation scope and VADER, Empath and "
        "first-person-pronoun counts; penalty (L1/L2), C and tf variant chosen by "
        "leave-communities-out CV; scale and threshold set on held-out data; these "
        "defaults reproduce the bundled model exactly (same content hash). With --format "
        "jsonl|erisk|csv and --truth: a user-level collection (one document per user, the "
        "paper's recipe: L1, C and tf variant by stratified k-fold CV on F1). See docs/MODEL.md.",
    )
    p.add_argument("--format", choices=("rmhd", "jsonl", "erisk", "csv"), default="rmhd",
                   help="training data: rmhd (bundled real posts, default), jsonl (wire "
                        "format), erisk (an eRisk 2017/2018 collection directory) or csv")
    p.add_argument("--input", "--train", dest="input", default=None,
                   help="training writings for jsonl/erisk/csv (a file, or the eRisk "
                        "directory)")
    p.add_argument("--truth", default=None,
                   help="golden truth, 'user 0|1' per line (jsonl, erisk; optional for csv "
                        "with a label column)")
    p.add_argument("--csv-columns", default=None,
                   help="CSV column mapping, e.g. author=user,time=date,text=post,label=y "
                        "(as for 'earlyrisk evaluate')")
    p.add_argument("--out", default="earlyrisk-model",
                   help="output model directory (default: %(default)s in the working "
                        "directory)")
    p.add_argument("--name", default=None, help="model name (default tfidf-logreg)")
    p.add_argument("--folds", type=int, default=None,
                   help=f"cross-validation folds (default {d.folds} for rmhd, 4 otherwise)")
    p.add_argument("--min-df", type=int, default=d.min_df,
                   help="drop terms used by fewer documents")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for folds and solver")
    p.add_argument("--c-grid", default=None,
                   help="comma-separated values of C to search (default "
                        f"{','.join(f'{c:g}' for c in d.c_grid)})")
    p.add_argument("--penalties", default=None,
                   help="comma-separated penalties to search, l1 and/or l2 (default l1,l2 "
                        "for rmhd, l1 otherwise, the paper's)")
    return p


def _training_users(args: argparse.Namespace):
    """(documents, config overrides, description, tokenizer) for the chosen --format."""
    from corpora.erisk import CollectionError, CsvColumns
    from corpora.rmhd import POSITIVE_COMMUNITIES, rmhd_documents
    from corpora.simulate import RMHD_SAMPLE
    from evaluation.evaluate import EvaluationError, load_collection
    from models.tokenize import Tokenizer
    from models.train import DEFAULT_TOKENIZER, TrainingUser

    if args.format == "rmhd":
        if args.input is not None or args.truth is not None:
            raise UsageError("--input/--truth need --format jsonl, erisk or csv")
        docs = rmhd_documents()
        describe = {
            "data": ("Reddit Mental Health Dataset sample (Low et al. 2020, CC BY 4.0): "
                     "7,020 real posts, 260 from each of 27 communities, 2018-11 to 2019-11 "
                     f"({RMHD_SAMPLE.relative_to(RMHD_SAMPLE.parents[2])})"),
            "unit": "post (one document per post)",
            "labels": (f"positive = posts in r/{', r/'.join(POSITIVE_COMMUNITIES)}; control = "
                       "posts in the other 25 communities (8 everyday, 17 mental-health "
                       "support); community labels, not diagnoses"),
        }
        return docs, {"validation": "lco"}, describe, DEFAULT_TOKENIZER
    if args.input is None:
        raise UsageError(f"--format {args.format} needs --input")
    if not Path(args.input).exists():
        raise UsageError(f"{args.input} does not exist")
    if args.truth is not None and not Path(args.truth).is_file():
        raise UsageError(f"{args.truth} does not exist")
    if args.format != "csv" and args.truth is None:
        raise UsageError(f"--format {args.format} needs --truth")
    if args.format == "erisk" and not Path(args.input).is_dir():
        raise UsageError("--format erisk needs a collection directory as --input")
    if args.format != "erisk" and not Path(args.input).is_file():
        raise UsageError(f"{args.input} is not a file (use --format erisk for a directory)")
    try:
        columns = CsvColumns.parse(args.csv_columns)
        coll = load_collection(args.input, args.truth, args.format, columns)
    except (CollectionError, EvaluationError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    docs = [TrainingUser(user=u, label=coll.truth[u], writings=tuple(s.text for s in subs))
            for u, subs in coll.users.items()]
    describe = {"data": f"{args.format} collection {args.input}",
                "unit": "user (one document per user: the user's writings joined)",
                "labels": f"golden truth {args.truth or '(CSV label column)'}"}
    return docs, {"validation": "kfold", "penalty_grid": ("l1",), "folds": 4,
                  "max_control_share": None, "calibrate": False}, describe, Tokenizer()


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from models.portable import PortableModel
    from models.train import TrainConfig, train

    if args.folds is not None and args.folds < 2:
        raise UsageError("--folds must be at least 2")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out: {args.out} is a file; give a directory for the model")
    overrides: dict = {}
    if args.c_grid is not None:
        try:
            overrides["c_grid"] = tuple(float(c) for c in args.c_grid.split(","))
        except ValueError:
            raise UsageError(f"--c-grid: not a list of numbers: {args.c_grid!r}") from None
        if not overrides["c_grid"] or min(overrides["c_grid"]) <= 0:
            raise UsageError("--c-grid values must be positive")
    if args.penalties is not None:
        pens = tuple(x.strip() for x in args.penalties.split(",") if x.strip())
        if not pens or set(pens) - {"l1", "l2"}:
            raise UsageError(f"--penalties: l1 and/or l2, got {args.penalties!r}")
        overrides["penalty_grid"] = pens
    docs, fmt_overrides, describe, tokenizer = _training_users(args)
    config = replace(TrainConfig(), **fmt_overrides, **overrides, min_df=args.min_df,
                     seed=args.seed)
    if args.folds is not None:
        config = replace(config, folds=args.folds)
    if args.name is not None:
        config = replace(config, name=args.name)
    try:
        model = train(docs, config, tokenizer=tokenizer, progress=_say, describe=describe)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model.save(args.out)
    r = model.report
    print(f"model            {model.version}  ->  {args.out}")
    print(f"documents        {r['n_users']} ({r['n_positive']} positive), "
          f"{r['n_writings']} writings")
    print(f"vocabulary       {len(model.vocabulary)} terms, {model.n_nonzero} non-zero weights")
    figure = (f"mean held-out-community AUC={r['lco']['auc_mean_community']:.3f}"
              if "lco" in r else f"CV F1={r['cv_f1']:.3f}")
    print(f"chosen           penalty={r['penalty']} C={r['C']:g} "
          f"sublinear_tf={r['sublinear_tf']}, {figure} ({r['cv_folds']}-fold "
          f"{r['validation']})")
    try:
        bundled = PortableModel.load()
        same = bundled.content_hash == model.content_hash
        print(f"bundled model    {'identical' if same else 'differs'} ({bundled.version})")
    except Exception as e:
        print(f"bundled model    not comparable: {e}")
    return 0


# -- model show --------------------------------------------------------------------
def _model_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "model",
        help="describe a model ('earlyrisk model show')",
        description="'earlyrisk model show [--model DIR]' prints a model card: data, labels, "
        "validation figures, top positive and negative terms with weight and community "
        "concentration, non-zero count.",
    )
    p.add_argument("action", choices=("show",), help="show: print the model card")
    p.add_argument("--model", default=None, help="model directory (default: bundled)")
    p.add_argument("--top", type=int, default=25, help="terms listed each way (default 25)")
    p.add_argument("--markdown", action="store_true", help="print the card as Markdown")
    return p


def cmd_model(args: argparse.Namespace) -> int:
    from models.card import model_card
    from models.portable import ModelFormatError, PortableModel

    if args.top < 1:
        raise UsageError("--top must be at least 1")
    try:
        model = PortableModel.load(args.model)
    except (ModelFormatError, OSError) as e:
        raise UsageError(f"--model: {str(e).splitlines()[0]}") from None
    print(model_card(model, top=args.top, markdown=args.markdown))
    return 0


# -- simulate --------------------------------------------------------------------
def _simulate_parser(sub) -> argparse.ArgumentParser:
    from corpora.simulate import SimulationConfig

    d = SimulationConfig()
    p = sub.add_parser(
        "simulate",
        help="rebuild the simulated user streams from the bundled posts",
        description="Build SIMULATED users (chronological streams of real RMHD posts) and "
        "write train/test JSONL + truth files. The defaults rebuild the bundled files "
        "(same bytes) into ./earlyrisk-simulated.",
    )
    p.add_argument("--out", default="earlyrisk-simulated",
                   help="output directory (default: %(default)s in the working directory; "
                        "the defaults reproduce the bundled data/simulated files)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="random seed: which posts each simulated user gets, and in which "
                        "order (default: %(default)s)")
    p.add_argument("--positive", type=int, default=d.n_positive,
                   help="positive users per split (default: %(default)s)")
    p.add_argument("--control", type=int, default=d.n_control,
                   help="control users per split (default: %(default)s)")
    return p


def cmd_simulate(args: argparse.Namespace) -> int:
    from corpora.simulate import SimulationConfig, write

    if args.positive < 4 or args.control < 4:
        raise UsageError("need at least 4 positive and 4 control users")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out: {args.out} is a file; give a directory")
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
    """The DuckDB file a ``--db`` value names: ``duckdb://PATH`` or a bare path."""
    if "://" not in uri:
        path = uri
    else:
        scheme, _, path = uri.partition("://")
        if scheme == "bigquery":
            raise UsageError(f"{uri} is BigQuery: this command reads the DuckDB store only "
                             "(for BigQuery: 'earlyrisk analytics NAME --db bigquery://...')")
        if scheme != "duckdb" or not path:
            raise UsageError(f"--db: {uri!r}: expected duckdb://PATH or a path")
    if Path(path).is_dir():
        raise UsageError(f"--db: {path} is a directory, not a DuckDB file")
    return path


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
        w = csv.writer(sys.stdout, lineterminator="\n")
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
    p.add_argument("--review-db", default=None, metavar="PATH",
                   help="SQLite file for verdicts, notes, claims, the audit trail and sessions "
                        "(default: NAME.review.sqlite next to a DuckDB store NAME.duckdb; "
                        "earlyrisk-review.sqlite with BigQuery)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="model directory for explanations (default: the bundled model); "
                        "alerts scored by another model version show the explanation stored with "
                        "them")
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
        serve(args.db, args.host, args.port, raw_names=args.raw_names,
              review_db=args.review_db, model_dir=args.model)
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
                   help="where to write the JSON results (default: %(default)s in the "
                        "working directory; the committed record is bench/results.json)")
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


# -- publish ---------------------------------------------------------------------
def _publish_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "publish",
        help=SUMMARIES["publish"],
        description="Send wire-format submissions (JSONL, one per line; .gz and globs work) "
        "to a Kafka topic (message key = author, so each user's writings stay in order) or "
        "a Pub/Sub topic (ordering key = author), for 'earlyrisk run --input kafka://... | "
        "pubsub://...'. Lines are sent unchanged; ends with the accounting "
        "(read = published + failed). See docs/SOURCES.md.",
    )
    p.add_argument("--input", default=f"file://{SIMULATED_DIR / 'test.jsonl.gz'}",
                   help="file://PATH.jsonl[.gz] or a glob (default: the bundled simulated "
                        "test stream)")
    p.add_argument("--to", required=True, metavar="URI",
                   help="kafka://HOST:PORT/TOPIC or pubsub://projects/PROJECT/topics/TOPIC")
    p.add_argument("--create", action="store_true",
                   help="create the topic (and the --subscription) if missing")
    p.add_argument("--subscription", default=None, metavar="NAME",
                   help="Pub/Sub: make sure subscription NAME (message ordering on) exists on "
                        "the topic before publishing, so it receives every message; with "
                        "--create it is created if missing")
    p.add_argument("--partitions", type=int, default=2,
                   help="Kafka: partitions of a topic --create makes (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    return p


def cmd_publish(args: argparse.Namespace) -> int:
    from pipelines.publish import PublishError, input_files, open_target, publish

    try:
        files = input_files(args.input)
        target = open_target(args.to, create=args.create, partitions=args.partitions,
                             subscription=args.subscription)
    except PublishError as e:
        raise UsageError(str(e)) from None
    acc = publish(files, target, show_progress=False if args.no_progress else None)
    print("\n".join(acc.lines()))
    if acc.interrupted:
        return 130
    return 0 if acc.failed == 0 and acc.balanced else 1


# -- main ------------------------------------------------------------------------
COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "run": (_run_parser, cmd_run),
    "train": (_train_parser, cmd_train),
    "model": (_model_parser, cmd_model),
    "simulate": (_simulate_parser, cmd_simulate),
    "sql": (_sql_parser, cmd_sql),
    "evaluate": (_evaluate_parser, cmd_evaluate),
    "serve": (_serve_parser, cmd_serve),
    "crawl": (_crawl_parser, cmd_crawl),
    "bench": (_bench_parser, cmd_bench),
    "analytics": (_analytics_parser, cmd_analytics),
    "forget": (_forget_parser, cmd_forget),
    "publish": (_publish_parser, cmd_publish),
}


# One line per command for 'earlyrisk --help'. Listing the commands from here imports
# nothing heavy (Beam, scikit-learn, DuckDB): only the command being run builds its full
# parser. A command missing here gets its full parser built every time (correct, slower).
SUMMARIES: dict[str, str] = {
    "run": "run the screening pipeline",
    "train": "train and save a portable model",
    "simulate": "rebuild the simulated user streams from the bundled posts",
    "sql": "query the embedded DuckDB store",
    "evaluate": "evaluate decision methods with the eRisk protocol",
    "serve": "run the expert review web app",
    "crawl": "crawl Reddit: new posts/comments -> authors -> their histories -> publish",
    "bench": "measure performance against the paper's method and Beam's ceiling",
    "analytics": "run a named analytics query on DuckDB or BigQuery",
    "forget": "delete everything stored about a user (retention, erasure requests)",
    "publish": "send a JSONL file of submissions to a Kafka topic or a Pub/Sub topic",
    "model": "inspect a portable model: 'earlyrisk model show' prints its card",
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("earlyrisk")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The command line's parser. Only ``command``'s sub-parser is built in full (``"*"``:
    all of them); the others carry just their summary, so that ``earlyrisk --help`` and
    each command import only what they use."""
    parser = _Parser(
        prog="earlyrisk",
        description="Early risk detection of depression on Reddit: a streaming screening "
        "pipeline that flags users for review by human experts. "
        "'earlyrisk COMMAND --help' documents each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (make, func) in COMMANDS.items():
        if command in ("*", name) or name not in SUMMARIES:
            p = make(sub)
        else:
            p = sub.add_parser(name, help=SUMMARIES[name], add_help=False)
        p.set_defaults(func=func)
    return parser


_MISSING_PATH = {FileNotFoundError: "does not exist", IsADirectoryError: "is a directory",
                 NotADirectoryError: "is not a directory", FileExistsError: "already exists",
                 PermissionError: "permission denied"}


def user_error(e: BaseException) -> str | None:
    """One line when ``e`` comes from what the user asked for (a path that is missing, a
    directory or an existing file; a store another process holds; no cloud credentials),
    else None: a bug, whose traceback is kept."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, UsageError):
        return first
    for cls, what in _MISSING_PATH.items():
        if isinstance(e, cls):
            return f"{e.filename} {what}" if getattr(e, "filename", None) else first
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(e, duckdb.Error):
        if "lock" in first.lower():
            return (f"the DuckDB store is in use by another process (one writer per file; "
                    f"wait for it to finish): {first}")
        return f"DuckDB store: {first}"
    auth = sys.modules.get("google.auth.exceptions")
    if auth is not None and isinstance(e, auth.DefaultCredentialsError):
        return ("no Google Cloud credentials (run 'gcloud auth application-default login'; "
                "for the local emulators set BIGQUERY_EMULATOR_HOST or PUBSUB_EMULATOR_HOST)")
    return None


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        parser = build_parser(_command_of(argv))
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
    except KeyboardInterrupt:
        print("earlyrisk: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        reason = user_error(e)
        if reason is None or os.environ.get("EARLYRISK_TRACEBACK"):
            raise
        print(f"earlyrisk: error: {reason}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
