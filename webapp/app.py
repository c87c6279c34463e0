"""The expert review web app (``earlyrisk serve``): a Flask application.

Pages: alerts (tabs untagged / true positives / false positives, sort, filters,
keyset paging), alert detail (writings with their probabilities, probability
charts, top terms highlighted, tagging), datasets (wire-format downloads),
statistics. Everything but the sign-in page and the stylesheet needs a signed-in
session; every POST needs the session's CSRF token. No JavaScript: charts are
server-side SVG, so the Content-Security-Policy forbids scripts outright.

Build it with :func:`create_app`; :mod:`webapp.server` runs it under waitress.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlparse

from flask import (
    Flask,
    Response,
    abort,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup, escape

from models.records import LabelRecord
from models.wire import Pseudonymizer
from webapp.auth import Credentials, LoginLimiter
from webapp.charts import bar_chart, probability_chart
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
)

SECRET_ENV = "EARLYRISK_REVIEW_SECRET"
RAW_NAMES_ENV = "EARLYRISK_REVIEW_RAW_NAMES"
SECURE_COOKIE_ENV = "EARLYRISK_REVIEW_SECURE_COOKIE"
PSEUDONYM_KEY_ENV = "EARLYRISK_PSEUDONYM_KEY"
SESSION_HOURS = 8
PAGE_SIZE = 50
MAX_COMMENT_CHARS = 2000

TAB_TITLES = {"untagged": "To review", "risk": "True positives", "no_risk": "False positives"}
LABEL_TITLES = {"risk": "Risk", "no_risk": "No risk", "undecided": "Undecided"}
DATASET_TITLES = {"tp": "True positives (tagged risk)", "fp": "False positives (tagged no risk)",
                  "all": "All users"}
_PSEUDONYM = re.compile(r"^u_[0-9a-f]{20}$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


@dataclass(frozen=True)
class AppConfig:
    credentials: Credentials
    secret_key: bytes
    raw_names: bool = False
    secure_cookie: bool = False
    pseudonym_key: bytes | None = None

    @classmethod
    def from_env(cls, raw_names: bool = False, env: dict[str, str] | None = None) -> AppConfig:
        env = dict(os.environ) if env is None else env
        secret = env.get(SECRET_ENV)
        key = env.get(PSEUDONYM_KEY_ENV)
        return cls(
            credentials=Credentials.from_env(env),
            # Random per process when unset: sessions then end with the process.
            secret_key=secret.encode() if secret else secrets.token_bytes(32),
            raw_names=raw_names or env.get(RAW_NAMES_ENV, "") in ("1", "true", "yes"),
            secure_cookie=env.get(SECURE_COOKIE_ENV, "") in ("1", "true", "yes"),
            pseudonym_key=key.encode() if key and len(key.encode()) >= 16 else None,
        )


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        abort(400, f"not a date (YYYY-MM-DD): {text[:20]!r}")


def highlight(text: str, terms: list[str]) -> Markup:
    """``text`` escaped, with whole-word occurrences of ``terms`` in <mark>."""
    if not text:
        return Markup("")
    words = sorted({t for t in terms if t and not t.startswith("_")}, key=len, reverse=True)
    if not words:
        return escape(text)
    pattern = re.compile(r"(?<![\w'])(" + "|".join(re.escape(w) for w in words) + r")(?![\w'])",
                         re.IGNORECASE)
    out: list[Markup | str] = []
    pos = 0
    for m in pattern.finditer(text):
        out.append(escape(text[pos:m.start()]))
        out.append(Markup('<mark class="term">') + escape(m.group(0)) + Markup("</mark>"))
        pos = m.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


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
    limiter = LoginLimiter()
    display_key = config.pseudonym_key or secrets.token_bytes(32)
    pseudonymize = Pseudonymizer(display_key)
    app.extensions["earlyrisk_store"] = store
    app.extensions["earlyrisk_limiter"] = limiter

    def display_name(user_id: str) -> str:
        """user_id as stored if it is a pseudonym or raw names are enabled."""
        if config.raw_names or _PSEUDONYM.match(user_id):
            return user_id
        return pseudonymize(user_id)

    app.jinja_env.filters["when"] = _fmt_time
    app.jinja_env.globals.update(
        TABS=TABS, TAB_TITLES=TAB_TITLES, LABEL_TITLES=LABEL_TITLES, BANDS=BANDS,
        DATASETS=DATASETS, DATASET_TITLES=DATASET_TITLES, display_name=display_name,
        LABEL_VALUES=LABEL_VALUES, raw_names=config.raw_names,
    )

    # -- authentication and CSRF ------------------------------------------------------
    def current_user() -> str | None:
        user = session.get("user")
        if not user:
            return None
        if time.time() - session.get("since", 0) > SESSION_HOURS * 3600:
            session.clear()
            return None
        return user

    def bearer_user() -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and config.credentials.check_token(auth[7:].strip()):
            return config.credentials.token_user
        return None

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.before_request
    def _guard() -> Any:
        g.user = current_user()
        if request.endpoint in ("static", "login"):
            pass
        elif g.user is None:
            if request.method == "GET" and (who := bearer_user()):
                g.user = who  # scripted downloads; no cookie, so no CSRF exposure
            elif request.method == "GET" and request.endpoint not in ("download", "download_truth"):
                return redirect(url_for("login", next=request.full_path.rstrip("?")))
            else:
                return Response("authentication required\n", 401,
                                {"WWW-Authenticate": 'Bearer realm="earlyrisk review"'},
                                mimetype="text/plain")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin and origin != "null" and urlparse(origin).netloc != request.host:
                abort(403, "cross-site request refused")
            sent = request.form.get("csrf_token", "")
            expected = session.get("csrf", "")
            if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                abort(403, "missing or wrong CSRF token; reload the page and try again")
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        if request.endpoint != "static":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(StoreBusyError)
    def _busy(e: StoreBusyError) -> Any:
        return render_template("error.html", code=503, message=(
            "The database is in use by another process (a running 'earlyrisk run' holds "
            "DuckDB's single write lock). Try again when it has finished.")), 503

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(413)
    def _http_error(e: Any) -> Any:
        return render_template("error.html", code=e.code, message=e.description), e.code

    def _safe_next(target: str | None) -> str:
        # Only local paths: no open redirect to another site after sign-in.
        if target and target.startswith("/") and not target.startswith("//") \
                and "\\" not in target:
            return target
        return url_for("alerts")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        status = 200
        if request.method == "POST":
            name = request.form.get("username", "").strip()[:64]
            password = request.form.get("password", "")
            token = request.form.get("token", "")
            keys = [f"ip:{request.remote_addr}"] + ([f"user:{name}"] if name else [])
            wait = limiter.retry_after(keys)
            if wait > 0:
                resp = Response(render_template(
                    "login.html", error=f"Too many failed attempts; try again in "
                    f"{int(wait) + 1} s.", next=request.form.get("next")), 429)
                resp.headers["Retry-After"] = str(int(wait) + 1)
                return resp
            who = None
            if token:
                if config.credentials.check_token(token):
                    who = config.credentials.token_user
            elif name and password and config.credentials.check_password(name, password):
                who = name
            if who:
                limiter.succeeded(keys)
                session.clear()  # new session on sign-in: no fixation
                session["user"] = who
                session["since"] = time.time()
                session["csrf"] = secrets.token_urlsafe(32)
                session.permanent = True
                return redirect(_safe_next(request.form.get("next")))
            limiter.failed(keys)
            error, status = "Wrong user name, password or token.", 401
        return render_template("login.html", error=error,
                               next=request.values.get("next", "")), status

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    # -- alerts ------------------------------------------------------------------------
    def _filters() -> AlertFilter:
        band = request.args.get("band") or None
        if band is not None and band not in BANDS:
            abort(400, "unknown priority band")
        sub = request.args.get("subreddit") or None
        return AlertFilter(date_from=_parse_date(request.args.get("from")),
                           date_to=_parse_date(request.args.get("to")),
                           band=band, subreddit=sub[:200] if sub else None)

    @app.get("/")
    def index() -> Any:
        return redirect(url_for("alerts"))

    @app.get("/alerts")
    def alerts() -> Any:
        tab = request.args.get("tab", "untagged")
        sort = request.args.get("sort", "recent")
        if tab not in TABS or sort not in SORTS:
            abort(400, "unknown tab or sort")
        flt = _filters()
        after = None
        if request.args.get("after"):
            try:
                after = Cursor.decode(request.args["after"], sort)
            except ValueError:
                abort(400, "bad page cursor")
        page = store.list_alerts(tab, sort, flt, after, PAGE_SIZE)
        counts = store.tab_counts(flt)
        base = {k: v for k, v in {
            "tab": tab, "sort": sort, "from": request.args.get("from", ""),
            "to": request.args.get("to", ""), "band": flt.band or "",
            "subreddit": flt.subreddit or ""}.items() if v}

        def link(**changes: str | None) -> str:
            params = {**base, **changes}
            params = {k: v for k, v in params.items() if v}
            return url_for("alerts") + ("?" + urlencode(params) if params else "")

        return render_template(
            "alerts.html", page=page, counts=counts, tab=tab, sort=sort, flt=flt,
            args=request.args, subreddits=store.subreddits(), link=link,
            next_link=link(after=page.next_cursor.encode()) if page.next_cursor else None,
            first_link=link() if after else None, back=request.full_path.rstrip("?"))

    @app.get("/alerts/<alert_id>")
    def alert(alert_id: str) -> Any:
        if not _SAFE_ID.match(alert_id):
            abort(404, "no such alert")
        a = store.alert(alert_id)
        if a is None:
            abort(404, "no such alert")
        writings = store.user_writings(a["user_id"], a["model_version"])
        wsort = request.args.get("wsort", "time")
        if wsort not in ("time", "p"):
            abort(400, "unknown writing sort")
        terms = [t for t, _ in a["top_terms"]]
        for w in writings:
            w["title_html"] = highlight(w["title"] or "", terms)
            w["body_html"] = highlight(w["body"] or "", terms)
            w["text_stored"] = w["title"] is not None or w["body"] is not None
        chrono = sorted(writings, key=lambda w: (w["writings_seen"], w["created_utc"]))
        shown = chrono if wsort == "time" else sorted(
            writings, key=lambda w: (-w["p_text"], w["created_utc"]))
        xs_k = [float(w["writings_seen"]) for w in chrono]
        pu = [w["p_user"] for w in chrono]
        pt = [w["p_text"] for w in chrono]
        chart_k = probability_chart(xs_k, pu, pt, a["threshold"], float(a["writings_seen"]),
                                    lambda v: f"{v:.0f}", "Probability by writing number",
                                    "chart-writings")
        xs_t = [w["created_utc"] for w in chrono]
        chart_t = probability_chart(xs_t, pu, pt, a["threshold"], a["created_utc"],
                                    lambda v: datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d"),
                                    "Probability over time", "chart-time")
        return render_template(
            "alert.html", a=a, writings=shown, wsort=wsort, chart_k=Markup(chart_k),
            chart_t=Markup(chart_t), history=store.label_history(alert_id),
            back=_safe_next(request.args.get("back")))

    @app.post("/alerts/<alert_id>/label")
    def label(alert_id: str) -> Any:
        a = store.alert(alert_id) if _SAFE_ID.match(alert_id) else None
        if a is None:
            abort(404, "no such alert")
        value = request.form.get("label", "")
        if value not in LABEL_VALUES:
            abort(400, "label must be risk, no_risk or undecided")
        comment = request.form.get("comment", "").strip()
        if len(comment) > MAX_COMMENT_CHARS:
            abort(400, f"comment longer than {MAX_COMMENT_CHARS} characters")
        store.add_label(LabelRecord(alert_id=alert_id, user_id=a["user_id"], label=value,
                                    comment=comment, reviewer=g.user, labelled_at=time.time()))
        back = _safe_next(request.form.get("back"))
        return redirect(url_for("alert", alert_id=alert_id, tagged=value, back=back))

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
        body = "".join(f"{display_name(u)} {lab}\n" for u, lab in store.export_truth(dataset))
        return Response(body, mimetype="text/plain", headers={
            "Content-Disposition": f'attachment; filename="{_filename(dataset)}-truth.txt"'})

    @app.get("/datasets/<any(tp, fp, all):dataset>.<any(jsonl, csv):fmt>")
    def download(dataset: str, fmt: str) -> Any:
        name = _filename(dataset)

        def generate() -> Iterator[str]:
            if fmt == "jsonl":
                for rec in store.export_writings(dataset):
                    yield json.dumps(_wire(rec), ensure_ascii=False) + "\n"
                return
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["id", "author", "created_utc", "kind", "subreddit", "title", "body"])
            for rec in store.export_writings(dataset):
                w.writerow(list(_wire(rec).values()))
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
                              "Submissions processed per day (event time)", "chart-subs"),
            "users": bar_chart(days, [r[2] for r in s.per_day],
                               "Users active per day (event time)", "chart-users"),
            "alerts": bar_chart(days, [r[3] for r in s.per_day], "Alerts per day",
                                "chart-alerts"),
            "speed": bar_chart(
                [datetime.fromtimestamp(t, UTC).strftime(
                    "%H:%M:%S" if s.speed_bucket_s < 60 else "%m-%d %H:%M") for t, _ in s.speed],
                [v for _, v in s.speed],
                f"Processing speed: submissions scored per second, per {s.speed_bucket_s} s "
                "of processing time", "chart-speed", value_fmt=lambda v: f"{v:,.1f}"),
        }
        span_days = None
        if s.totals.get("first_event") is not None:
            span_days = max((s.totals["last_event"] - s.totals["first_event"]) / 86400, 1 / 24)
        return render_template("stats.html", s=s, charts={k: Markup(v) for k, v in
                                                           charts.items()}, span_days=span_days)

    return app
