"""Retention: delete everything stored about one Reddit user (``earlyrisk forget``).

A user is named by their Reddit name or by their pseudonym. The pseudonym is
computed with the same key the pipeline used (``$EARLYRISK_PSEUDONYM_KEY`` or
the key file), so an operator can honour a request from a person who only
knows their own user name; the raw name is matched too, for stores written
with ``--raw-user-ids``.

What is deleted, in one transaction:

* every row of ``scores``, ``alerts``, ``writings``, ``labels`` and the
  per-user state (``user_state``, ``user_state_staging``) whose ``user_id``
  is one of those identifiers;
* every ``dead_letters`` row whose raw payload names the user (as the
  ``author`` or ``user_id`` of a JSON object, or as a quoted string in a
  payload that is not JSON at all).

DuckDB keeps deleted rows' bytes in the file until their blocks are reused, so
the store is then rewritten into a fresh file that replaces the old one: after
``forget`` returns, the user's text is no longer anywhere in the file.

The review app's own database next to a DuckDB store (``NAME.review.sqlite``:
verdicts, case notes and audit entries about the user) is purged the same way, and
so is the per-user state kept between in-process runs (``user_state``).

Not covered here (see docs/RELIABILITY.md, "Retention"): per-user state held
by a running pipeline or a remote runner (expires after ``--state-ttl-days`` of
silence), messages still retained by Kafka or Pub/Sub, and copies made outside
the store.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from models.wire import Pseudonymizer

USER_TABLES = ("scores", "alerts", "writings", "labels", "user_state", "user_state_staging")
_PSEUDONYM = re.compile(r"^u_[0-9a-f]{20}$")


@dataclass(frozen=True)
class ForgetReport:
    identifiers: tuple[str, ...]
    deleted: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def lines(self, dry_run: bool = False) -> list[str]:
        verb = "to delete" if dry_run else "deleted"
        out = [f"{t:<14}{n:>8,} row{'s' if n != 1 else ''} {verb}"
               for t, n in self.deleted.items()]
        return out + [f"{'total':<14}{self.total:>8,}"]


def identifiers_for(user: str, pseudonymize: Pseudonymizer | None) -> tuple[str, ...]:
    """Every user_id the pipeline may have stored for ``user``."""
    user = user.strip()
    if not user:
        raise ValueError("no user given")
    ids = [user]
    if _PSEUDONYM.match(user) is None and pseudonymize is not None and pseudonymize.enabled:
        ids.append(pseudonymize(user))
    return tuple(dict.fromkeys(ids))


def _names_user(raw: str, ids: tuple[str, ...]) -> bool:
    folded = {i.casefold() for i in ids}
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        return any(isinstance(obj.get(f), str) and obj[f].casefold() in folded
                   for f in ("author", "user_id"))
    # Not a JSON object (cut, or never valid): match a quoted occurrence.
    low = raw.casefold()
    return any(f'"{i}"' in low for i in folded)


def forget(path: str | Path, ids: tuple[str, ...], dry_run: bool = False) -> ForgetReport:
    """Delete the rows of ``ids`` from the DuckDB store at ``path``; rewrite the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    deleted: dict[str, int] = {}
    con = duckdb.connect(str(path))
    try:
        present = {r[0] for r in con.execute(
            "select table_name from information_schema.tables").fetchall()}
        con.execute("BEGIN TRANSACTION")
        marks = ", ".join("?" for _ in ids)
        for table in USER_TABLES:
            if table not in present:
                continue
            where = f"user_id IN ({marks})"
            deleted[table] = con.execute(
                f"select count(*) from {table} where {where}", list(ids)).fetchone()[0]
            if not dry_run:
                con.execute(f"delete from {table} where {where}", list(ids))
        if "dead_letters" in present:
            # A cheap case-insensitive prefilter, then an exact look at each payload.
            like = " OR ".join("contains(lower(raw), ?)" for _ in ids)
            candidates = con.execute(
                f"select dead_letter_id, raw from dead_letters where {like}",
                [i.casefold() for i in ids]).fetchall()
            doomed = [d for d, raw in candidates if _names_user(raw, ids)]
            deleted["dead_letters"] = len(doomed)
            if doomed and not dry_run:
                con.executemany("delete from dead_letters where dead_letter_id = ?",
                                [[d] for d in doomed])
        con.execute("ROLLBACK" if dry_run else "COMMIT")
        if not dry_run and any(deleted.values()):
            _rewrite(con, path)
            con = None
    finally:
        if con is not None:
            con.close()
    return ForgetReport(identifiers=ids, deleted=deleted)


def forget_bigquery(uri: str, ids: tuple[str, ...], dry_run: bool = False) -> ForgetReport:
    """The same deletions in a BigQuery dataset (``bigquery://PROJECT/DATASET``).

    Identifiers are bound as an array query parameter, never spliced. Real
    BigQuery refuses DML on rows still in the streaming buffer (up to ~90
    minutes after a streaming insert): the command then fails with that error
    and can simply be run again later.
    """
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    from storage.bigquery_store import client, parse_bigquery_uri

    ref = parse_bigquery_uri(uri)
    bq = client(ref.project)
    present = {t.table_id for t in bq.list_tables(f"{ref.project}.{ref.dataset}")}

    def query(sql: str, params: list) -> list:
        config = bigquery.QueryJobConfig(query_parameters=params)
        return list(bq.query(sql, job_config=config).result())

    id_param = [bigquery.ArrayQueryParameter("ids", "STRING", list(ids))]
    deleted: dict[str, int] = {}
    for table in USER_TABLES:
        if table not in present:
            continue
        name = f"`{ref.project}.{ref.dataset}.{table}`"
        deleted[table] = query(f"SELECT COUNT(*) AS n FROM {name} "
                               "WHERE user_id IN UNNEST(@ids)", id_param)[0]["n"]
        if deleted[table] and not dry_run:
            query(f"DELETE FROM {name} WHERE user_id IN UNNEST(@ids)", id_param)
    if "dead_letters" in present:
        name = f"`{ref.project}.{ref.dataset}.dead_letters`"
        folded = [bigquery.ArrayQueryParameter("needles", "STRING",
                                               [i.casefold() for i in ids])]
        candidates = query(f"SELECT dead_letter_id, raw FROM {name} WHERE EXISTS "
                           "(SELECT 1 FROM UNNEST(@needles) AS n "
                           "WHERE STRPOS(LOWER(raw), n) > 0)", folded)
        doomed = [r["dead_letter_id"] for r in candidates if _names_user(r["raw"], ids)]
        deleted["dead_letters"] = len(doomed)
        if doomed and not dry_run:
            query(f"DELETE FROM {name} WHERE dead_letter_id IN UNNEST(@doomed)",
                  [bigquery.ArrayQueryParameter("doomed", "STRING", doomed)])
    if not present:
        raise NotFound(f"no tables in {uri}")
    return ForgetReport(identifiers=ids, deleted=deleted)


def _rewrite(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Copy the live rows into a fresh file and swap it in (closes ``con``)."""
    fresh = path.with_name(path.name + ".forget-tmp")
    for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
        leftover.unlink(missing_ok=True)
    db = con.execute("select current_database()").fetchone()[0]
    literal = str(fresh).replace("'", "''")
    con.execute(f"ATTACH '{literal}' AS earlyrisk_fresh")
    con.execute(f'COPY FROM DATABASE "{db}" TO earlyrisk_fresh')
    con.execute("DETACH earlyrisk_fresh")
    con.close()
    os.replace(fresh, path)
    Path(str(path) + ".wal").unlink(missing_ok=True)


def _pseudonymizer(key_file: str | None) -> Pseudonymizer | None:
    """The pipeline's pseudonymiser, or None when no key exists on this machine."""
    from types import SimpleNamespace

    from pipelines.options import OptionsError, key_source

    opts = SimpleNamespace(raw_user_ids=False, pseudonym_key_secret=None,
                           pseudonym_key_file=key_file)
    try:
        return Pseudonymizer(key_source(opts, create=False).resolve())
    except OptionsError:
        if key_file:
            raise ValueError(f"pseudonymisation key file {key_file} does not exist") from None
        return None


def forget_command(users: list[str], db: str, key_file: str | None, dry_run: bool,
                   say: Callable[[str], None]) -> int:
    """``earlyrisk forget``: print what was (or would be) deleted."""
    pseudonymize = _pseudonymizer(key_file)
    if pseudonymize is None:
        say("earlyrisk: warning: no pseudonymisation key found; matching the given names "
            "and pseudonyms only")
    ids: list[str] = []
    for user in users:
        ids.extend(identifiers_for(user, pseudonymize))
    unique = tuple(dict.fromkeys(ids))
    if db.startswith("bigquery://"):
        report = forget_bigquery(db, unique, dry_run=dry_run)
    else:
        report = forget(db, unique, dry_run=dry_run)
        from webapp.store import default_review_db

        review_path = default_review_db(db)
        if review_path.exists():
            from webapp.reviewdb import ReviewDB

            review = ReviewDB(review_path)
            try:
                report.deleted.update(review.forget(unique, dry_run=dry_run))
            finally:
                review.close()
    n_ids = len(report.identifiers)
    looked_up = f"{n_ids} identifier{'s' if n_ids != 1 else ''} looked up"
    if report.total == 0:
        print(f"nothing stored for this user in {db} ({looked_up}); nothing "
              f"{'would be ' if dry_run else ''}deleted")
    else:
        print(f"{'would delete' if dry_run else 'deleted'} from {db} ({looked_up})")
    print("\n".join(report.lines(dry_run)))
    return 0
