"""The analytics pack: named queries written once in BigQuery SQL, run anywhere.

Each query is a file ``analytics/queries/NAME.sql`` in BigQuery's dialect with
``@named`` parameters and a header of ``--`` comments::

    -- name: alerts_per_day
    -- answers: one line saying which question the query answers
    -- param: start_date DATE = 1970-01-01  first day included

A ``param`` line gives the name, the BigQuery type (STRING, INT64, FLOAT64,
BOOL, DATE, TIMESTAMP), an optional ``= default`` and a description. On
BigQuery the text runs unchanged with typed query parameters; on DuckDB it is
translated by SQLGlot (``@name`` becomes ``$name``) and the values are bound
the same way. Values are always bound, never pasted into the SQL.

    from analytics.pack import load_pack, run_query
    result = run_query("alerts_per_day", {"start_date": "2020-01-01"},
                       "duckdb://earlyrisk.duckdb")
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUERIES_DIR = Path(__file__).parent / "queries"
PARAM_TYPES = ("STRING", "INT64", "FLOAT64", "BOOL", "DATE", "TIMESTAMP")
DEFAULT_DB = "duckdb://earlyrisk.duckdb"

_HEADER = re.compile(r"^--\s*(name|answers|param):\s*(.*?)\s*$")
_PARAM = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s+(?P<type>[A-Z0-9]+)"
                    r"(?:\s*=\s*(?P<default>\S+))?(?:\s+(?P<doc>.*))?$")


class QueryError(ValueError):
    """A bad query name, parameter or value; the message is one line."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    doc: str

    def convert(self, text: str) -> Any:
        """The Python value of ``text`` for this parameter's type."""
        try:
            if self.type == "STRING":
                return text
            if self.type == "INT64":
                return int(text)
            if self.type == "FLOAT64":
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError
                return value
            if self.type == "BOOL":
                low = text.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            if self.type == "DATE":
                return dt.date.fromisoformat(text)
            if self.type == "TIMESTAMP":
                value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        except ValueError:
            pass
        raise QueryError(f"--param {self.name}: {text!r} is not a valid {self.type}")


@dataclass(frozen=True)
class Query:
    name: str
    answers: str
    params: tuple[Param, ...]
    sql: str  # BigQuery dialect, with @named parameters

    @functools.cached_property
    def duckdb_sql(self) -> str:
        """The query translated to DuckDB's dialect (parameters as ``$name``)."""
        return to_duckdb(self.sql)

    def bind(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """Typed values for every parameter, from strings, with defaults filled in."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            names = ", ".join(known) or "none"
            raise QueryError(f"{self.name}: unknown parameter {unknown[0]!r} "
                             f"(parameters: {names})")
        values = {}
        for p in self.params:
            if p.name in raw:
                values[p.name] = p.convert(raw[p.name])
            elif p.default is not None:
                values[p.name] = p.convert(p.default)
            else:
                raise QueryError(f"{self.name}: parameter {p.name} ({p.type}) is required: "
                                 f"--param {p.name}=VALUE")
        return values


def _countif_zero(node):
    """COUNTIF is 0 on BigQuery when no row matches; DuckDB's count_if is NULL then."""
    from sqlglot import exp

    if isinstance(node, exp.Window) and isinstance(node.this, exp.CountIf):
        return exp.Coalesce(this=node.copy(), expressions=[exp.Literal.number(0)])
    if isinstance(node, exp.CountIf) and not isinstance(node.parent, exp.Window):
        return exp.Coalesce(this=node.copy(), expressions=[exp.Literal.number(0)])
    return node


def to_duckdb(sql: str, pretty: bool = False) -> str:
    """BigQuery SQL -> DuckDB SQL (SQLGlot, plus the semantic fixes it does not make)."""
    import sqlglot

    tree = sqlglot.parse_one(sql, read="bigquery")
    return tree.transform(_countif_zero, copy=False).sql(dialect="duckdb", pretty=pretty)


def parse_query(text: str, name: str) -> Query:
    meta: dict[str, str] = {}
    params: list[Param] = []
    for line in text.splitlines():
        m = _HEADER.match(line)
        if not m:
            if line.strip() and not line.startswith("--"):
                break
            continue
        key, value = m.groups()
        if key == "param":
            pm = _PARAM.match(value)
            if not pm or pm["type"] not in PARAM_TYPES:
                raise QueryError(f"{name}.sql: bad param line {value!r}")
            params.append(Param(pm["name"], pm["type"], pm["default"], pm["doc"] or ""))
        else:
            meta[key] = value
    if meta.get("name") != name:
        raise QueryError(f"{name}.sql: header 'name: {name}' missing or different")
    used = set(re.findall(r"@(\w+)", text))
    declared = {p.name for p in params}
    if used != declared:
        raise QueryError(f"{name}.sql: parameters used {sorted(used)} != declared "
                         f"{sorted(declared)}")
    return Query(name=name, answers=meta.get("answers", ""), params=tuple(params), sql=text)


@functools.cache
def load_pack(directory: Path = QUERIES_DIR) -> dict[str, Query]:
    """Every named query, by name, in alphabetical order."""
    return {f.stem: parse_query(f.read_text(encoding="utf-8"), f.stem)
            for f in sorted(directory.glob("*.sql"))}


def get_query(name: str) -> Query:
    pack = load_pack()
    if name not in pack:
        raise QueryError(f"no query named {name!r} (see 'earlyrisk analytics --list')")
    return pack[name]


# -- backends -------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    rows: list[tuple]


def run_duckdb(query: Query, values: Mapping[str, Any], con) -> Result:
    """Run on an open DuckDB connection (the translated text, values bound)."""
    bound = {}
    for p in query.params:
        v = values[p.name]
        if p.type == "TIMESTAMP":
            # The store's TIMESTAMP columns hold naive UTC instants.
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        bound[p.name] = v
    cur = con.execute(query.duckdb_sql, bound)
    columns = tuple(d[0] for d in cur.description)
    return Result(columns, [tuple(r) for r in cur.fetchall()])


def run_bigquery(query: Query, values: Mapping[str, Any], ref, bq=None) -> Result:
    """Run the BigQuery text unchanged, with typed query parameters."""
    from google.cloud import bigquery

    from storage.bigquery_store import client

    bq = bq or client(ref.project)
    config = bigquery.QueryJobConfig(
        default_dataset=f"{ref.project}.{ref.dataset}",
        query_parameters=[bigquery.ScalarQueryParameter(p.name, p.type, values[p.name])
                          for p in query.params],
    )
    rows = bq.query(query.sql, job_config=config).result()
    columns = tuple(f.name for f in rows.schema)
    return Result(columns, [tuple(r.values()) for r in rows])


def run_query(name: str, raw_params: Mapping[str, str], db: str = DEFAULT_DB) -> Result:
    """Run a named query against ``duckdb://PATH`` or ``bigquery://PROJECT/DATASET``."""
    query = get_query(name)
    values = query.bind(raw_params)
    if db.startswith("bigquery://"):
        from storage.bigquery_store import parse_bigquery_uri

        return run_bigquery(query, values, parse_bigquery_uri(db))
    from storage.duckdb_store import connect_readonly

    path = db[len("duckdb://"):] if db.startswith("duckdb://") else db
    if "://" in path or not path:
        raise QueryError(f"--db {db!r}: expected duckdb://PATH or bigquery://PROJECT/DATASET")
    con = connect_readonly(path)
    try:
        return run_duckdb(query, values, con)
    finally:
        con.close()


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise QueryError(f"--param {item!r}: expected NAME=VALUE")
        out[key.strip()] = value
    return out
