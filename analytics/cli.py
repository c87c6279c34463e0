"""``earlyrisk analytics``: list and run the named queries of the analytics pack.

    earlyrisk analytics --list
    earlyrisk analytics alerts_per_day --param start_date=2020-01-01
    earlyrisk analytics user_timeline --param user_id=u_3f2a... --format csv --out t.csv
    earlyrisk analytics users_by_probability --db bigquery://demo-project/earlyrisk

The parser and command are registered in :mod:`pipelines.cli`; the logic is here.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import Any

from analytics.pack import DEFAULT_DB, QueryError, Result, load_pack, parse_params, run_query


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="the query to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the named queries and exit")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a query parameter (repeatable); values are bound, never pasted "
                        "into the SQL")
    p.add_argument("--db", default=DEFAULT_DB,
                   help=f"duckdb://PATH or bigquery://PROJECT/DATASET (default: {DEFAULT_DB})")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output format (default: table)")
    p.add_argument("--out", default=None, help="write the output to this file instead of "
                                               "standard output")
    p.add_argument("--max-rows", type=int, default=200,
                   help="rows shown in table format (default 200; csv/json export all)")
    p.add_argument("--show-sql", choices=("bigquery", "duckdb"), default=None,
                   help="print the query's SQL in that dialect instead of running it")


def describe_pack() -> str:
    lines = []
    for q in load_pack().values():
        lines.append(q.name)
        lines.append(f"    {q.answers}")
        for p in q.params:
            default = "required" if p.default is None else f"default {p.default}"
            lines.append(f"    --param {p.name}=<{p.type}>  ({default}) {p.doc}".rstrip())
    return "\n".join(lines)


def _cell(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:  # DuckDB's TIMESTAMP columns hold UTC
            v = v.replace(tzinfo=dt.UTC)
        return v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def render(result: Result, fmt: str, max_rows: int) -> str:
    from pipelines.cli import format_table

    rows = [[_cell(v) for v in r] for r in result.rows]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(result.columns)
        w.writerows(rows)
        return buf.getvalue()
    if fmt == "json":
        return "".join(json.dumps(dict(zip(result.columns, r)), default=str,
                                  ensure_ascii=False) + "\n" for r in rows)
    n = len(rows)
    more = f" (showing {max_rows})" if n > max_rows else ""
    return (format_table(result.columns, rows[:max_rows])
            + f"\n({n} row{'s' if n != 1 else ''}{more})\n")


def _is_backend_error(e: Exception) -> bool:
    import duckdb
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return isinstance(e, duckdb.Error | GoogleAPIError | GoogleAuthError)


def _check_out(out: str) -> None:
    """Refuse an --out that cannot be written, before the query runs."""
    path = Path(out)
    if path.is_dir():
        raise QueryError(f"--out: {out} is a directory; give a file name")
    if not path.parent.is_dir():
        raise QueryError(f"--out: folder {path.parent} does not exist")


def run(args: argparse.Namespace, usage_error: type[Exception]) -> int:
    """Execute ``earlyrisk analytics``; bad arguments raise ``usage_error``."""
    if args.list:
        print(describe_pack())
        return 0
    if not args.name:
        raise usage_error("name a query to run, or --list to see them")
    try:
        pack = load_pack()
        if args.name not in pack:
            raise QueryError(f"no query named {args.name!r} (see 'earlyrisk analytics --list')")
        if args.show_sql:
            q = pack[args.name]
            from analytics.pack import to_duckdb

            print(q.sql if args.show_sql == "bigquery" else to_duckdb(q.sql, pretty=True))
            return 0
        params = parse_params(args.param)
        if args.out:
            _check_out(args.out)
        if args.max_rows < 1:
            raise QueryError("--max-rows must be at least 1")
        result = run_query(args.name, params, args.db)
    except (QueryError, FileNotFoundError) as e:
        raise usage_error(str(e)) from None
    except Exception as e:  # the backend's own error, e.g. a missing table
        if _is_backend_error(e):
            raise usage_error(f"query failed: {str(e).splitlines()[0]}") from None
        raise
    text = render(result, args.format, args.max_rows)
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"{len(result.rows)} rows -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0

