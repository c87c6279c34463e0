"""Run the review app: ``earlyrisk serve [--db URI] [--host H] [--port P]``.

The app is served by waitress (pure-Python, multi-threaded WSGI server).
Start-up checks everything that can be wrong before listening: credentials in
the environment, the store URI, the store's tables. Each problem is one line
(exit status 2 through :class:`pipelines.cli.UsageError`).
"""

from __future__ import annotations

import getpass
import logging
import sys

from webapp.auth import CredentialsError, hash_password

DEFAULT_DB = "duckdb://earlyrisk.duckdb"
THREADS = 8


def configure_logging() -> None:
    """The review app's events (JSON lines) on stderr, once."""
    log = logging.getLogger("earlyrisk.review")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def build(db: str, raw_names: bool = False, review_db: str | None = None,
          model_dir: str | None = None):
    """The configured Flask app over the store at ``db`` (raises ValueError)."""
    from webapp.app import AppConfig, create_app
    from webapp.store import StoreError, open_store

    try:
        config = AppConfig.from_env(raw_names=raw_names, model_dir=model_dir)
    except CredentialsError as e:
        raise ValueError(str(e)) from None
    try:
        store = open_store(db, review_db)
        store.check()
    except StoreError as e:
        raise ValueError(str(e)) from None
    return create_app(store, config)


def serve(db: str, host: str, port: int, raw_names: bool = False,
          review_db: str | None = None, model_dir: str | None = None) -> None:
    from waitress import serve as waitress_serve

    configure_logging()
    app = build(db, raw_names, review_db, model_dir)
    store = app.extensions["earlyrisk_store"]
    where = getattr(getattr(store, "review", None), "path", "?")
    print(f"earlyrisk review app on http://{host}:{port}/  (store: {db}; review data: "
          f"{where}; Ctrl-C stops)", file=sys.stderr, flush=True)
    waitress_serve(app, host=host, port=port, threads=THREADS, ident="earlyrisk",
                   clear_untrusted_proxy_headers=True)


def prompt_password_hash() -> str:
    """Read a password (twice on a terminal; one line from a pipe) and hash it."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the passwords differ")
    else:
        first = sys.stdin.readline().rstrip("\n")
    return hash_password(first)
