"""The expert review web app (``earlyrisk serve``): a Flask application.

Pages: alerts (tabs untagged / true positives / false positives, search, sort,
filters, keyset paging both ways), alert detail (the writing that raised the
alert first with the verdict beside it, explanations, charts, every writing,
case notes, the user's other alerts, claims), activity (the audit trail),
datasets (wire-format downloads), statistics. Everything but the sign-in page,
the stylesheet, the script and the icon needs a signed-in session; every POST
needs the session's CSRF token. The one script (keyboard shortcuts) is an
enhancement: every action is a plain link or form without it. Charts are
server-side SVG.

Sessions are server-side (:class:`webapp.reviewdb.ReviewDB`): the cookie
carries a random session id; signing out deletes it, and a session of a
reviewer no longer configured (or whose password hash or the token changed)
is refused. Build the app with :func:`create_app`; :mod:`webapp.server` runs it
under waitress.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from flask import (
    Flask,
    Response,
    abort,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from models.records import LabelRecord
from models.wire import Pseudonymizer
from webapp.auth import Credentials, LoginLimiter
from webapp.charts import bar_chart, probability_chart
from webapp.explain import Explainer, stored
from webapp.reviewdb import REASON_CODES, ReviewDBError
from webapp.store import (
    BANDS,
    DATASETS,
    LABEL_VALUES,
    SORTS,
    TABS,
    AlertFilter,
    Cursor,
    ReviewStore,
    StoreBusyError,
    StoreError,
    StoreReadOnlyError,
)
from webapp.text import Mark, decode, render, term_marks, word_count

SECRET_ENV = "EARLYRISK_REVIEW_SECRET"
RAW_NAMES_ENV = "EARLYRISK_REVIEW_RAW_NAMES"
SECURE_COOKIE_ENV = "EARLYRISK_REVIEW_SECURE_COOKIE"
PSEUDONYM_KEY_ENV = "EARLYRISK_PSEUDONYM_KEY"
PROXY_HOPS_ENV = "EARLYRISK_REVIEW_PROXY_HOPS"
SESSION_HOURS = 8
PAGE_SIZE = 50
MAX_COMMENT_CHARS = 2000
MAX_NOTE_CHARS = 4000
LONG_POST_WORDS = 250

# Sign-in limits (failures per sliding 5 minutes): per account and address, per
# address over all accounts, and wrong bearer tokens per address.
ACCOUNT_FAILURES, ADDRESS_FAILURES, BEARER_FAILURES, LIMIT_WINDOW_S = 5, 20, 20, 300.0

TAB_TITLES = {"untagged": "To review", "risk": "True positives", "no_risk": "False positives"}
LABEL_TITLES = {"risk": "Risk", "no_risk": "No risk", "undecided": "Undecided"}
DATASET_TITLES = {"tp": "True positives (tagged risk)", "fp": "False positives (tagged no risk)",
                  "all": "All users"}
EVENT_TITLES = {"sign_in": "signed in", "sign_out": "signed out",
                "sign_in_failed": "failed sign-in", "sign_in_limited": "sign-in refused (limit)",
                "verdict": "verdict", "export": "download", "note": "case note",
                "claim": "claimed", "release": "released claim"}
_PSEUDONYM = re.compile(r"^u_[0-9a-f]{20}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
# Characters a same-site path may carry, as sent (RFC 3986 path, query; no '\').
_SAFE_TARGET = re.compile(r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_FILTER_KEYS = ("tab", "sort", "q", "from", "to", "band", "subreddit", "reviewer", "vfrom", "vto")

log = logging.getLogger("earlyrisk.review")


def log_event(event: str, **fields: Any) -> None:
    """One JSON line on the ``earlyrisk.review`` logger. Callers pass ids, names and
    counts only: never passwords, tokens, comments, notes or writing text."""
    record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event,
              **fields}
    level = logging.WARNING if event in ("sign_in_failed", "sign_in_limited", "bearer_failed",
                                         "bearer_limited", "not_saved") else logging.INFO
    if event == "error":
        level = logging.ERROR
    log.log(level, json.dumps(record, sort_keys=True, default=str))


@dataclass(frozen=True)
class AppConfig:
    credentials: Credentials
    secret_key: bytes
    raw_names: bool = False
    secure_cookie: bool = False
    pseudonym_key: bytes | None = None
    proxy_hops: int = 0
    model_dir: str | None = None

    @classmethod
    def from_env(cls, raw_names: bool = False, env: dict[str, str] | None = None,
                 model_dir: str | None = None) -> AppConfig:
        env = dict(os.environ) if env is None else env
        secret = env.get(SECRET_ENV)
        key = env.get(PSEUDONYM_KEY_ENV)
        hops = env.get(PROXY_HOPS_ENV, "0").strip() or "0"
        if not hops.isdigit() or int(hops) > 5:
            raise ValueError(f"{PROXY_HOPS_ENV} must be a number of proxies, 0-5")
        return cls(
            credentials=Credentials.from_env(env),
            # Random per process when unset: sessions then end with the process.
            secret_key=secret.encode() if secret else secrets.token_bytes(32),
            raw_names=raw_names or env.get(RAW_NAMES_ENV, "") in ("1", "true", "yes"),
            secure_cookie=env.get(SECURE_COOKIE_ENV, "") in ("1", "true", "yes"),
            pseudonym_key=key.encode() if key and len(key.encode()) >= 16 else None,
            proxy_hops=int(hops),
            model_dir=model_dir,
        )


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _parse_date(text: str | None, strict: bool = True) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        if strict:
            abort(400, f"not a date (YYYY-MM-DD): {text[:20]!r}")
        return None


def safe_target(target: str | None, default: str) -> str:
    """``target`` if a browser would resolve it to a path on this site, else ``default``.

    Only an absolute path of URL characters is accepted: no scheme, no host, no
    ``//`` or ``\\`` (which browsers treat as ``//``), no tab, newline or other
    control character (which browsers drop, turning ``/<TAB>/evil`` into
    ``//evil``), and the same after percent-decoding the path.
    """
    if not target or len(target) > 2000 or not _SAFE_TARGET.match(target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return default
    path = parts.path
    for _ in range(3):  # undo nested encodings (%252F -> %2F -> /)
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    if path.startswith("//") or "\\" in path or any(ord(c) < 0x20 or ord(c) == 0x7F
                                                     for c in path):
        return default
    return target


def csv_cell(value: Any) -> Any:
    """A spreadsheet must not run a cell as a formula: text starting with = + - @ (or a
    tab or carriage return before one) gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_CSV_FORMULA):
        return "'" + value
    return value


def highlight(text: str, terms: list[str]) -> Markup:
    """``text`` escaped (no markdown), with whole-word occurrences of ``terms`` marked."""
    if not text:
        return Markup("")
    return render(text, term_marks(text, terms))


def _credential_fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def create_app(store: ReviewStore, config: AppConfig) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_NAME="earlyrisk_review",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=config.secure_cookie,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if config.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Only when the operator says how many proxies are in front: otherwise
        # anyone could pick their own address with X-Forwarded-For.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.proxy_hops,  # type: ignore[method-assign]
                                x_proto=config.proxy_hops)
    account_limiter = LoginLimiter(ACCOUNT_FAILURES, LIMIT_WINDOW_S)
    address_limiter = LoginLimiter(ADDRESS_FAILURES, LIMIT_WINDOW_S)
    bearer_limiter = LoginLimiter(BEARER_FAILURES, LIMIT_WINDOW_S)
    display_key = config.pseudonym_key or secrets.token_bytes(32)
    pseudonymize = Pseudonymizer(display_key)
    review = store.review
    explainer = Explainer(config.model_dir)
    app.extensions["earlyrisk_store"] = store
    app.extensions["earlyrisk_limiter"] = account_limiter
    creds = config.credentials

    def display_name(user_id: str) -> str:
        """user_id as stored if it is a pseudonym or raw names are enabled."""
        if config.raw_names or _PSEUDONYM.match(user_id):
            return user_id
        return pseudonymize(user_id)

    def fresh() -> dict[str, Any]:
        return store.freshness()

    app.jinja_env.filters["when"] = _fmt_time
    app.jinja_env.globals.update(
        TABS=TABS, TAB_TITLES=TAB_TITLES, LABEL_TITLES=LABEL_TITLES, BANDS=BANDS,
        DATASETS=DATASETS, DATASET_TITLES=DATASET_TITLES, display_name=display_name,
        LABEL_VALUES=LABEL_VALUES, raw_names=config.raw_names, REASON_CODES=REASON_CODES,
        EVENT_TITLES=EVENT_TITLES, features=store.features, freshness=fresh,
    )

    # -- authentication and CSRF ------------------------------------------------------
    def credential_of(user: str, via: str) -> str | None:
        """What a session of ``user`` is bound to; None if they may no longer sign in."""
        if via == "token":
            if creds.token is None or user != creds.token_user:
                return None
            return _credential_fingerprint("token:" + creds.token)
        encoded = creds.users.get(user)
        return None if encoded is None else _credential_fingerprint("user:" + encoded)

    def current_user() -> tuple[str, str] | None:
        sid = session.get("sid")
        if not sid:
            return None
        row = review.session(sid)
        if row is None:
            session.clear()
            return None
        expected = credential_of(row["user"], row["via"])
        too_old = time.time() - row["created"] > SESSION_HOURS * 3600
        if expected is None or not hmac.compare_digest(expected, row["credential"]) or too_old:
            review.end_session(sid)
            session.clear()
            log_event("session_revoked", reviewer=row["user"], via=row["via"],
                      reason="expired" if too_old and expected else "no longer configured")
            return None
        if time.time() - row["last_seen"] > 60:
            review.touch_session(sid)
        return row["user"], row["via"]

    def bearer_user() -> str | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        key = [f"bearer:{request.remote_addr}"]
        wait = bearer_limiter.retry_after(key)
        if wait > 0:
            log_event("bearer_limited", addr=request.remote_addr)
            abort(Response("too many wrong tokens from this address; try again later\n", 429,
                           {"Retry-After": str(int(wait) + 1)}, mimetype="text/plain"))
        if creds.check_token(auth[7:].strip()):
            return creds.token_user
        bearer_limiter.failed(key)
        log_event("bearer_failed", addr=request.remote_addr, path=request.path)
        return None

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.before_request
    def _guard() -> Any:
        g.user, g.via = None, None
        if request.endpoint in ("static", "favicon"):
            return None
        who = current_user()
        if who:
            g.user, g.via = who
        if request.endpoint == "login":
            pass
        elif g.user is None:
            if request.method == "GET" and (name := bearer_user()):
                g.user, g.via = name, "bearer"  # scripted downloads; no cookie, no CSRF
            elif request.method == "GET" and request.endpoint not in ("download", "download_truth"):
                return redirect(url_for("login", next=request.full_path.rstrip("?")))
            else:
                return Response("authentication required\n", 401,
                                {"WWW-Authenticate": 'Bearer realm="earlyrisk review"'},
                                mimetype="text/plain")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin and origin != "null" and urlsplit(origin).netloc != request.host:
                abort(403, "cross-site request refused")
            sent = request.form.get("csrf_token", "")
            expected = session.get("csrf", "")
            if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                abort(403, "missing or wrong CSRF token; reload the page and try again")
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        if request.endpoint not in ("static", "favicon"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(StoreBusyError)
    def _busy(e: StoreBusyError) -> Any:
        not_saved = None
        if request.method == "POST":
            # Nothing was written: say so, and keep what the reviewer typed.
            not_saved = {k: request.form.get(k, "") for k in ("label", "comment", "note")}
            not_saved.update(alert_id=(request.view_args or {}).get("alert_id"),
                             reasons=request.form.getlist("reason"),
                             back=safe_target(request.form.get("back"), url_for("alerts")))
            log_event("not_saved", reviewer=g.get("user"), alert_id=not_saved["alert_id"],
                      error="StoreBusyError")
        return render_template("error.html", code=503, message=(
            "The alerts cannot be shown yet: a running 'earlyrisk run' holds the database "
            "(DuckDB's single write lock) and the app has no copy of it from before. They "
            "appear as soon as the pipeline releases the file."), not_saved=not_saved), 503

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Any:
        if e.code is None or e.code < 400:
            return e
        return render_template("error.html", code=e.code, message=e.description,
                               not_saved=None), e.code

    @app.errorhandler(Exception)
    def _error(e: Exception) -> Any:
        # Type and place only: messages can quote data.
        log_event("error", error=type(e).__name__, endpoint=request.endpoint,
                  method=request.method, path=request.path, reviewer=g.get("user"))
        log.debug("traceback", exc_info=e)
        message = "Something went wrong on the server; it has been logged."
        if isinstance(e, (StoreError, ReviewDBError)):
            message = str(e)
        not_saved = None
        if request.method == "POST":
            not_saved = "Nothing you sent with this request was saved."
        return render_template("error.html", code=500, message=message,
                               not_saved=not_saved), 500

    def _audit(event: str, **fields: Any) -> None:
        """The audit trail (review database) and the server log."""
        log_event(event, reviewer=g.get("user"), via=g.get("via"), addr=request.remote_addr,
                  **{k: v for k, v in fields.items() if k != "detail"})
        try:
            review.record(event, g.get("user") or fields.get("account", "-"),
                          via=g.get("via") or "", alert_id=fields.get("alert_id"),
                          user_id=fields.get("user_id"), **fields.get("detail", {}))
        except ReviewDBError as e:
            log_event("error", error="audit trail not written", detail=str(e)[:200])

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        status = 200
        if request.method == "POST":
            name = request.form.get("username", "").strip()[:64]
            password = request.form.get("password", "")
            token = request.form.get("token", "")
            addr = request.remote_addr or "-"
            via = "token" if token else "password"
            account = creds.token_user if token else name
            # Names are logged only when they are configured accounts: a password
            # typed into the name field must not end up in the log.
            known = account if (token or name in creds.users) else "(unknown)"
            akey = [f"{via}:{account}@{addr}"]
            wait = max(account_limiter.retry_after(akey),
                       address_limiter.retry_after([addr]))
            if wait > 0:
                log_event("sign_in_limited", account=known, addr=addr, via=via)
                resp = Response(render_template(
                    "login.html", error=f"Too many failed attempts; try again in "
                    f"{int(wait) + 1} s.", next=request.form.get("next")), 429)
                resp.headers["Retry-After"] = str(int(wait) + 1)
                return resp
            who = None
            if token:
                if creds.check_token(token):
                    who = creds.token_user
            elif name and password and creds.check_password(name, password):
                who = name
            if who:
                # A success clears this account's count at this address only; the
                # address's own budget is never reset by a success.
                account_limiter.succeeded(akey)
                credential = credential_of(who, via)
                assert credential is not None
                if session.get("sid"):
                    review.end_session(session["sid"])
                session.clear()  # new session on sign-in: no fixation
                session["sid"] = review.new_session(who, via, credential)
                session["csrf"] = secrets.token_urlsafe(32)
                session.permanent = True
                g.user, g.via = who, via
                _audit("sign_in")
                return redirect(safe_target(request.form.get("next"), url_for("alerts")))
            account_limiter.failed(akey)
            address_limiter.failed([addr])
            log_event("sign_in_failed", account=known, addr=addr, via=via)
            try:
                review.record("sign_in_failed", known, via=via)
            except ReviewDBError:
                pass
            error, status = "Wrong user name, password or token.", 401
        return render_template("login.html", error=error,
                               next=safe_target(request.values.get("next"), "")), status

    @app.post("/logout")
    def logout() -> Any:
        _audit("sign_out")
        if session.get("sid"):
            review.end_session(session["sid"])
        session.clear()
        return redirect(url_for("login"))

    @app.get("/favicon.ico")
    def favicon() -> Any:
        return send_from_directory(Path(app.root_path) / "static", "favicon.svg",
                                   mimetype="image/svg+xml", max_age=86400)

    # -- alerts ------------------------------------------------------------------------
    def _filters(args: Any, strict: bool = True) -> AlertFilter:
        band = args.get("band") or None
        if band is not None and band not in BANDS:
            if strict:
                abort(400, "unknown priority band")
            band = None
        sub = (args.get("subreddit") or "").strip() or None
        q = (args.get("q") or "").strip()[:200] or None
        reviewer = (args.get("reviewer") or "").strip()[:64] or None
        return AlertFilter(date_from=_parse_date(args.get("from"), strict),
                           date_to=_parse_date(args.get("to"), strict),
                           band=band, subreddit=sub[:200] if sub else None, q=q,
                           reviewer=reviewer,
                           verdict_from=_parse_date(args.get("vfrom"), strict),
                           verdict_to=_parse_date(args.get("vto"), strict))

    @app.get("/")
    def index() -> Any:
        return redirect(url_for("alerts"))

    @app.get("/alerts")
    def alerts() -> Any:
        tab = request.args.get("tab", "untagged")
        sort = request.args.get("sort", "recent")
        if tab not in TABS or sort not in SORTS:
            abort(400, "unknown tab or sort")
        flt = _filters(request.args)
        after = before = None
        try:
            if request.args.get("after"):
                after = Cursor.decode(request.args["after"], sort)
            elif request.args.get("before"):
                before = Cursor.decode(request.args["before"], sort)
            pos = max(0, int(request.args.get("pos", "0") or 0))
        except ValueError:
            abort(400, "bad page cursor")
        page = store.list_alerts(tab, sort, flt, after, PAGE_SIZE, before=before)
        counts = store.tab_counts(flt)
        if after is None and before is None:
            pos = 0
        elif before is not None and page.prev_cursor is None:
            pos = 0
        total = counts[tab]
        base = {k: request.args.get(k, "") for k in _FILTER_KEYS}
        base.update(tab=tab, sort=sort)

        def link(**changes: Any) -> str:
            params = {**base, **changes}
            params = {k: v for k, v in params.items() if v not in (None, "")}
            return url_for("alerts") + ("?" + urlencode(params) if params else "")

        here = link(after=request.args.get("after"), before=request.args.get("before"),
                    pos=pos or None)
        claims = review.claims([r["alert_id"] for r in page.rows])
        return render_template(
            "alerts.html", page=page, counts=counts, tab=tab, sort=sort, flt=flt,
            args=request.args, subreddits=store.subreddits(), reviewers=store.reviewers(),
            link=link, claims=claims, total=total, first=pos + 1 if page.rows else 0,
            last=pos + len(page.rows),
            next_link=link(after=page.next_cursor.encode(), pos=pos + PAGE_SIZE)
            if page.next_cursor else None,
            prev_link=link(before=page.prev_cursor.encode(), pos=max(pos - PAGE_SIZE, 0))
            if page.prev_cursor else None,
            first_link=link() if (after or before) and page.prev_cursor else None,
            back=here)

    def _context(back: str) -> tuple[str, str, AlertFilter]:
        """The list an alert was opened from (tab, sort, filters), from its back link."""
        parts = urlsplit(back)
        args = {k: v[0] for k, v in parse_qs(parts.query).items()} \
            if parts.path == url_for("alerts") else {}
        tab = args.get("tab") if args.get("tab") in TABS else "untagged"
        sort = args.get("sort") if args.get("sort") in SORTS else "recent"
        return tab, sort, _filters(args, strict=False)

    def _cursor_of(a: dict[str, Any], sort: str) -> Cursor:
        return Cursor(a["key_recent"] if sort == "recent" else a["key_priority"], a["alert_id"])

    def _following(a: dict[str, Any], back: str, n: int = 10) -> list[dict[str, Any]]:
        """The next ``n`` alerts after ``a`` in the list it was opened from."""
        tab, sort, flt = _context(back)
        return store.list_alerts(tab, sort, flt, _cursor_of(a, sort), n).rows

    def _unclaimed(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        held = review.claims([r["alert_id"] for r in rows])
        for r in rows:
            who = held.get(r["alert_id"])
            if who is None or who[0] == g.user:
                return r
        return None

    @app.get("/alerts/<alert_id>")
    def alert(alert_id: str) -> Any:
        if not _SAFE_ID.match(alert_id):
            abort(404, "no such alert")
        a = store.alert(alert_id)
        if a is None:
            abort(404, "no such alert")
        back = safe_target(request.args.get("back"), url_for("alerts"))
        wsort = request.args.get("wsort", "time")
        if wsort not in ("time", "p", "move"):
            abort(400, "unknown writing sort")
        writings = store.user_writings(a["user_id"], a["model_version"])
        chrono = sorted(writings, key=lambda w: (w["writings_seen"], w["created_utc"]))
        model = explainer.model_for(a["model_version"])
        moves = explainer.moves([w["p_user"] for w in chrono], model)
        terms = [t for t, _ in a["top_terms"]]
        alert_index = next((i for i, w in enumerate(chrono)
                            if w["submission_id"] == a["submission_id"]), len(chrono) - 1)
        for i, w in enumerate(chrono):
            w["index"] = i
            w["move"] = moves[i] if i < len(moves) else None
            w["anchor"] = f"w{w['writings_seen']}"
            w["text_stored"] = w["title"] is not None or w["body"] is not None
            title, body = decode(w["title"]), decode(w["body"])
            w["words"] = word_count(body)
            w["long"] = w["words"] > LONG_POST_WORDS
            near = abs(i - alert_index) <= 1
            if model is not None and (near or request.args.get("explain") == "all"
                                      or len(chrono) <= 200):
                tmarks, bmarks = explainer.marks(model, title, body)
            else:
                tmarks, bmarks = term_marks(title, terms), term_marks(body, terms)
            w["title_html"] = render(title, [m for m in tmarks if isinstance(m, Mark)])
            w["body_html"] = render(body, bmarks)
        evidence = chrono[alert_index] if chrono else None
        context = [w for w in chrono if 0 < abs(w["index"] - alert_index) <= 2]
        explanation = None
        stored_explanation = False
        if model is not None and evidence is not None and evidence["text_stored"]:
            explanation = explainer.explain(model, decode(evidence["title"]),
                                            decode(evidence["body"]))
        elif a.get("explanation"):
            # The pipeline's own explanation of the triggering writing (no highlighting:
            # the app has no model of that version to find the spans with).
            explanation = stored(a["explanation"])
            stored_explanation = explanation is not None
        top_moves = sorted((w for w in chrono if w["move"] is not None),
                           key=lambda w: -w["move"])[:5]
        shown = {"time": chrono, "p": sorted(chrono, key=lambda w: (-w["p_text"],
                                                                    w["created_utc"])),
                 "move": sorted(chrono, key=lambda w: -(w["move"] or 0))}[wsort]
        xs_k = [float(w["writings_seen"]) for w in chrono]
        pu = [w["p_user"] for w in chrono]
        pt = [w["p_text"] for w in chrono]
        ids = [w["anchor"] for w in chrono]
        labels_k = [f"writing {w['writings_seen']}" for w in chrono]
        chart_k = probability_chart(xs_k, pu, pt, a["threshold"], float(a["writings_seen"]),
                                    lambda v: f"{v:.0f}", "Probability by writing number (k)",
                                    "chart-writings", integer_x=True, point_ids=ids,
                                    point_labels=labels_k)
        xs_t = [w["created_utc"] for w in chrono]
        chart_t = probability_chart(
            xs_t, pu, pt, a["threshold"], a["created_utc"],
            lambda v: datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d"),
            "Probability over time (UTC)", "chart-time", point_ids=ids,
            point_labels=[f"writing {w['writings_seen']}, {_fmt_time(w['created_utc'])}"
                          for w in chrono])
        tab, sort, flt = _context(back)
        nxt, prev = store.neighbours(tab, sort, flt, _cursor_of(a, sort))
        claims = review.claims([alert_id])
        return render_template(
            "alert.html", a=a, writings=shown, wsort=wsort, chart_k=Markup(chart_k),
            chart_t=Markup(chart_t), history=store.label_history(alert_id), back=back,
            evidence=evidence, context=context, explanation=explanation, model=model,
            stored_explanation=stored_explanation,
            model_note=explainer.note(a["model_version"]), top_moves=top_moves,
            notes=review.notes(a["user_id"]), others=[o for o in store.user_alerts(
                a["user_id"]) if o["alert_id"] != alert_id],
            latest=store.user_latest(a["user_id"]), next_alert=nxt, prev_alert=prev,
            claim=claims.get(alert_id),
            saved=request.args.get("saved"), saved_alert=request.args.get("saved_alert"))

    def _get_alert(alert_id: str) -> dict[str, Any]:
        a = store.alert(alert_id) if _SAFE_ID.match(alert_id) else None
        if a is None:
            abort(404, "no such alert")
        return a

    @app.post("/alerts/<alert_id>/label")
    def label(alert_id: str) -> Any:
        a = _get_alert(alert_id)
        value = request.form.get("label", "")
        if value not in LABEL_VALUES:
            abort(400, "label must be risk, no_risk or undecided")
        comment = request.form.get("comment", "").strip()
        if len(comment) > MAX_COMMENT_CHARS:
            abort(400, f"comment longer than {MAX_COMMENT_CHARS} characters")
        reasons = tuple(r for r in request.form.getlist("reason") if r in REASON_CODES)
        back = safe_target(request.form.get("back"), url_for("alerts"))
        try:
            store.add_label(LabelRecord(alert_id=alert_id, user_id=a["user_id"], label=value,
                                        comment=comment, reviewer=g.user,
                                        labelled_at=time.time()),
                            reasons=reasons, via=g.via or "password")
        except (StoreReadOnlyError, StoreError, ReviewDBError) as e:
            log_event("not_saved", reviewer=g.user, alert_id=alert_id, label=value,
                      error=type(e).__name__)
            return render_template(
                "error.html", code=503, message=str(e),
                not_saved={"alert_id": alert_id, "label": value, "comment": comment,
                           "reasons": reasons, "back": back}), 503
        _audit("verdict", alert_id=alert_id, user_id=a["user_id"], label=value,
               reasons=",".join(reasons), detail={"label": value, "reasons": list(reasons),
                                                  "comment_chars": len(comment)})
        if request.form.get("and_next"):
            target = _unclaimed(_following(a, back))
            if target is None:
                return redirect(_with(back, saved=value, saved_alert=alert_id))
            review.claim(target["alert_id"], g.user)
            return redirect(url_for("alert", alert_id=target["alert_id"], back=back,
                                    saved=value, saved_alert=alert_id))
        return redirect(url_for("alert", alert_id=alert_id, saved=value, back=back))

    def _with(url: str, **params: str) -> str:
        parts = urlsplit(url)
        query = parts.query + ("&" if parts.query else "") + urlencode(params)
        return f"{parts.path}?{query}"

    @app.post("/alerts/<alert_id>/claim")
    def claim(alert_id: str) -> Any:
        a = _get_alert(alert_id)
        back = safe_target(request.form.get("back"), url_for("alerts"))
        if request.form.get("release"):
            review.release(alert_id, g.user)
            _audit("release", alert_id=alert_id, user_id=a["user_id"])
        else:
            holder = review.claim(alert_id, g.user, force=bool(request.form.get("force")))
            if holder == g.user:
                _audit("claim", alert_id=alert_id, user_id=a["user_id"])
        return redirect(url_for("alert", alert_id=alert_id, back=back))

    @app.post("/alerts/<alert_id>/note")
    def note(alert_id: str) -> Any:
        a = _get_alert(alert_id)
        text = request.form.get("note", "").strip()
        if not text:
            abort(400, "empty note")
        if len(text) > MAX_NOTE_CHARS:
            abort(400, f"note longer than {MAX_NOTE_CHARS} characters")
        back = safe_target(request.form.get("back"), url_for("alerts"))
        try:
            review.add_note(a["user_id"], g.user, text)
        except ReviewDBError as e:
            log_event("not_saved", reviewer=g.user, alert_id=alert_id, error="note")
            return render_template("error.html", code=503, message=str(e), not_saved={
                "alert_id": alert_id, "note": text, "back": back}), 503
        _audit("note", alert_id=alert_id, user_id=a["user_id"],
               detail={"chars": len(text)})
        return redirect(url_for("alert", alert_id=alert_id, back=back) + "#notes")

    # -- audit trail -------------------------------------------------------------------
    @app.get("/activity")
    def activity() -> Any:
        mine = request.args.get("mine") == "1"
        kind = request.args.get("kind", "")
        if kind and kind not in EVENT_TITLES:
            abort(400, "unknown kind of activity")
        try:
            before = int(request.args["before"]) if request.args.get("before") else None
        except ValueError:
            abort(400, "bad page cursor")
        rows = review.events(actor=g.user if mine else None, kinds=[kind] if kind else None,
                             before_id=before, limit=PAGE_SIZE + 1)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        params = {k: v for k, v in {"mine": "1" if mine else "", "kind": kind}.items() if v}
        next_link = (url_for("activity", **params, before=rows[-1]["id"]) if more else None)
        return render_template("activity.html", rows=rows, mine=mine, kind=kind,
                               next_link=next_link, back=request.full_path.rstrip("?"))

    # -- datasets ------------------------------------------------------------------------
    @app.get("/datasets")
    def datasets() -> Any:
        return render_template("datasets.html", counts={
            d: len(store.export_truth(d)) if d != "all" else None for d in DATASETS})

    def _wire(rec: dict[str, Any]) -> dict[str, Any]:
        created = rec["created_utc"]
        return {"id": rec["id"], "author": display_name(rec["user_id"]),
                "created_utc": int(created) if created == int(created) else created,
                "kind": rec["kind"], "subreddit": rec["subreddit"], "title": rec["title"],
                "body": rec["body"]}

    def _filename(dataset: str) -> str:
        return f"earlyrisk-{dataset}-{datetime.now(UTC):%Y%m%d}"

    @app.get("/datasets/<any(tp, fp, all):dataset>.truth.txt")
    def download_truth(dataset: str) -> Any:
        rows = store.export_truth(dataset)
        _audit("export", dataset=dataset, format="truth", detail={
            "dataset": dataset, "format": "truth", "users": len(rows)})
        body = "".join(f"{display_name(u)} {lab}\n" for u, lab in rows)
        return Response(body, mimetype="text/plain", headers={
            "Content-Disposition": f'attachment; filename="{_filename(dataset)}-truth.txt"'})

    @app.get("/datasets/<any(tp, fp, all):dataset>.<any(jsonl, csv):fmt>")
    def download(dataset: str, fmt: str) -> Any:
        name = _filename(dataset)
        _audit("export", dataset=dataset, format=fmt, detail={"dataset": dataset,
                                                              "format": fmt})

        def generate() -> Iterator[str]:
            if fmt == "jsonl":
                for rec in store.export_writings(dataset):
                    yield json.dumps(_wire(rec), ensure_ascii=False) + "\n"
                return
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["id", "author", "created_utc", "kind", "subreddit", "title", "body"])
            for rec in store.export_writings(dataset):
                w.writerow([csv_cell(v) for v in _wire(rec).values()])
                if buf.tell() > 65536:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        mimetype = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        return Response(generate(), mimetype=mimetype, headers={
            "Content-Disposition": f'attachment; filename="{name}.{fmt}"'})

    # -- statistics ----------------------------------------------------------------------
    @app.get("/stats")
    def stats() -> Any:
        s = store.stats()
        days = [d.isoformat() for d, *_ in s.per_day]
        charts = {
            "subs": bar_chart(days, [r[1] for r in s.per_day],
                              "Submissions processed per day (event time, UTC)", "chart-subs",
                              unit="submissions per day"),
            "users": bar_chart(days, [r[2] for r in s.per_day],
                               "Users active per day (event time, UTC)", "chart-users",
                               unit="users per day"),
            "alerts": bar_chart(days, [r[3] for r in s.per_day],
                                "Alerts raised per day (event time, UTC)", "chart-alerts",
                                unit="alerts per day"),
            "speed": bar_chart(
                [datetime.fromtimestamp(t, UTC).strftime(
                    "%H:%M:%S" if s.speed_bucket_s < 60 else "%m-%d %H:%M") for t, _ in s.speed],
                [v for _, v in s.speed],
                f"Processing speed per {s.speed_bucket_s} s of processing time (UTC)",
                "chart-speed", value_fmt=lambda v: f"{v:,.1f}",
                unit="submissions scored per second"),
        }
        span_days = None
        if s.totals.get("first_event") is not None:
            span_days = max((s.totals["last_event"] - s.totals["first_event"]) / 86400, 1 / 24)
        return render_template("stats.html", s=s, charts={k: Markup(v) for k, v in
                                                           charts.items()}, span_days=span_days)

    return app
