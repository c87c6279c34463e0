"""The review app's security properties, each pinned by a test written before its fix.

Open redirects (``next=``, ``back=``), session revocation (sign-out, removal
from the configuration), the sign-in limiter (per account and address, no
reset by a success, bearer guesses, proxies only when configured), CSV formula
neutralisation and the structured server log (events present, secrets absent).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from urllib.parse import urlsplit

import duckdb
import pytest

from webapp.app import AppConfig, create_app
from webapp.store import DuckDBReviewStore

from .conftest import PASSWORD, REVIEWER, TOKEN, review_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "a-fixed-signing-secret-for-these-tests"
HOSTILE_TARGETS = [
    "/\t/evil.example/x", "/%09/evil.example/", "//evil.example/x", "/\\evil.example",
    "\\\\evil.example", "https://evil.example/", "http:evil.example", "/%2F/evil.example",
    "/%5Cevil.example", " //evil.example", "/\r\n/evil.example", "javascript:alert(1)",
    "/\x00/evil.example", "%2F%2Fevil.example", "/%252F/evil.example", "///evil.example",
]


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _app(db, **env):
    env.setdefault("EARLYRISK_REVIEW_SECRET", SECRET)
    return create_app(DuckDBReviewStore(db), AppConfig.from_env(env=review_env(**env)))


def _login(client, user=REVIEWER, password=PASSWORD, next_="/alerts", **kw):
    token = _csrf(client.get("/login", **kw).get_data(as_text=True))
    return client.post("/login", data={"username": user, "password": password,
                                       "csrf_token": token, "next": next_}, **kw)


def _same_site(target: str) -> bool:
    """A browser would resolve ``target`` to a path on this site."""
    if any(ord(c) < 0x21 or c == "\\" for c in target):
        return False
    parts = urlsplit(target)
    return (not parts.scheme and not parts.netloc and target.startswith("/")
            and not target.startswith("//"))


@pytest.fixture
def app(review_db):
    return _app(review_db)


@pytest.fixture
def client(app):
    c = app.test_client()
    assert _login(c).status_code == 302
    return c


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_sign_in_next_never_leaves_the_site(app, target):
    r = _login(app.test_client(), next_=target)
    assert r.status_code == 302
    assert _same_site(r.headers["Location"]), r.headers["Location"]


def _back_href(html: str) -> str:
    tag = re.search(r'<a [^>]*id="back"[^>]*>', html).group(0)
    return re.search(r'href="([^"]*)"', tag).group(1).replace("&amp;", "&")


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_alert_back_link_never_leaves_the_site(client, target):
    aid = re.findall(r'data-alert-id="([^"]+)"', client.get("/alerts").get_data(as_text=True))[0]
    html = client.get(f"/alerts/{aid}", query_string={"back": target}).get_data(as_text=True)
    href = _back_href(html)
    assert _same_site(href), href
    r = client.post(f"/alerts/{aid}/label", data={
        "label": "undecided", "csrf_token": _csrf(html), "back": target})
    assert r.status_code == 302 and _same_site(r.headers["Location"])
    loc = r.headers["Location"]
    assert _same_site(_back_href(client.get(loc).get_data(as_text=True)))


def test_a_same_site_next_is_kept(app):
    r = _login(app.test_client(), next_="/alerts?tab=risk&sort=priority")
    assert r.headers["Location"] == "/alerts?tab=risk&sort=priority"


def test_sign_out_revokes_the_session_cookie(app):
    c = app.test_client()
    _login(c)
    cookie = c.get_cookie("earlyrisk_review").value
    page = c.get("/alerts").get_data(as_text=True)
    aid = re.findall(r'data-alert-id="([^"]+)"', page)[0]
    csrf = _csrf(page)
    c.post("/logout", data={"csrf_token": csrf})
    replay = app.test_client()
    replay.set_cookie("earlyrisk_review", cookie)
    assert replay.get("/alerts").status_code == 302
    r = replay.post(f"/alerts/{aid}/label", data={"label": "risk", "csrf_token": csrf})
    assert r.status_code in (401, 403)
    assert aid in re.findall(r'data-alert-id="([^"]+)"',
                             _fresh(app).get("/alerts").get_data(as_text=True))


def _fresh(app):
    c = app.test_client()
    _login(c)
    return c


def test_removing_a_reviewer_from_the_configuration_revokes_their_sessions(review_db):
    first = _app(review_db)
    c = first.test_client()
    _login(c)
    cookie = c.get_cookie("earlyrisk_review").value
    assert c.get("/alerts").status_code == 200
    # The operator restarts the app with alice removed, same signing secret.
    second = create_app(DuckDBReviewStore(review_db), AppConfig.from_env(env={
        **review_env(EARLYRISK_REVIEW_SECRET=SECRET), "EARLYRISK_REVIEW_USERS": ""}))
    replay = second.test_client()
    replay.set_cookie("earlyrisk_review", cookie)
    assert replay.get("/alerts").status_code == 302


def test_a_limited_reviewer_can_still_sign_in_from_another_address(app):
    attacker = app.test_client()
    for _ in range(8):
        r = _login(attacker, password="guessing wrong", environ_base={"REMOTE_ADDR": "10.9.9.9"})
        assert r.status_code in (401, 429)
    assert _login(attacker, environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 429
    reviewer = app.test_client()
    assert _login(reviewer, environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code == 302


def test_one_success_does_not_reset_an_address_budget(app):
    c = app.test_client()
    where = {"REMOTE_ADDR": "10.7.7.7"}
    statuses = []
    for i in range(30):
        if i % 4 == 3:  # the attacker's own valid account, now and then
            _login(c, environ_base=where)
        statuses.append(_login(c, user=f"guess{i}", password="x" * 12,
                               environ_base=where).status_code)
    assert 429 in statuses


def test_forwarded_for_is_ignored_unless_a_proxy_is_configured(review_db):
    plain = _app(review_db)
    c = plain.test_client()
    for i in range(8):
        _login(c, password="guessing wrong", headers={"X-Forwarded-For": f"10.0.0.{i}"})
    r = _login(c, password="guessing wrong", headers={"X-Forwarded-For": "10.0.0.99"})
    assert r.status_code == 429  # a forged header does not buy a fresh budget
    proxied = _app(review_db, EARLYRISK_REVIEW_PROXY_HOPS="1")
    p = proxied.test_client()
    for _ in range(8):
        _login(p, password="guessing wrong", headers={"X-Forwarded-For": "10.0.0.1"})
    assert _login(p, headers={"X-Forwarded-For": "10.0.0.2"}).status_code == 302


def test_bearer_token_guesses_are_limited(app):
    c = app.test_client()
    codes = [c.get("/datasets/all.truth.txt",
                   headers={"Authorization": f"Bearer wrong-token-guess-{i:04d}"}).status_code
             for i in range(40)]
    assert codes[0] == 401 and codes[-1] == 429
    r = c.get("/datasets/all.truth.txt", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 429  # this address is waiting now
    other = app.test_client()
    ok = other.get("/datasets/all.truth.txt", headers={"Authorization": f"Bearer {TOKEN}"},
                   environ_base={"REMOTE_ADDR": "10.3.3.3"})
    assert ok.status_code == 200


FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1)",
            "\t=1+1", "\r=1+1"]


def test_csv_exports_neutralise_formulas(review_db):
    con = duckdb.connect(str(review_db))
    aid, uid = con.execute("SELECT alert_id, user_id FROM alerts LIMIT 1").fetchone()
    for i, f in enumerate(FORMULAS):
        con.execute("INSERT INTO writings VALUES (?, ?, TIMESTAMP '2019-01-01', 'post', ?, ?, ?,"
                    " 'test')", [uid, f"formula{i}", f, f, f])
    con.close()
    app = _app(review_db)
    c = app.test_client()
    _login(c)
    page = c.get(f"/alerts/{aid}").get_data(as_text=True)
    c.post(f"/alerts/{aid}/label", data={"label": "risk", "csrf_token": _csrf(page)})
    rows = list(csv.reader(io.StringIO(c.get("/datasets/tp.csv").get_data(as_text=True))))
    cells = [cell for row in rows[1:] if row[0].startswith("formula") for cell in row[4:7]]
    assert len(cells) == 3 * len(FORMULAS)
    for cell in cells:
        assert cell[0] not in "=+-@\t\r", repr(cell)
        assert cell.startswith("'")
    # JSONL is data, not a spreadsheet: it keeps the text exactly.
    recs = [json.loads(x) for x in c.get("/datasets/tp.jsonl").get_data(as_text=True).split("\n")
            if x]
    assert {r["body"] for r in recs if r["id"].startswith("formula")} == set(FORMULAS)


def _events(caplog) -> list[dict]:
    out = []
    for rec in caplog.records:
        if rec.name == "earlyrisk.review":
            out.append(json.loads(rec.getMessage()))
    return out


def test_the_server_logs_security_events_without_secrets(review_db, caplog):
    caplog.set_level(logging.INFO, logger="earlyrisk.review")
    app = _app(review_db)
    c = app.test_client()
    _login(c, password="my wrong password")
    for _ in range(6):
        _login(c, password="my wrong password")
    ok = app.test_client()
    _login(ok, environ_base={"REMOTE_ADDR": "10.4.4.4"})
    page = ok.get("/alerts").get_data(as_text=True)
    aid = re.findall(r'data-alert-id="([^"]+)"', page)[0]
    ok.post(f"/alerts/{aid}/label", data={"label": "risk", "csrf_token": _csrf(page),
                                           "comment": "secret clinical observation"})
    ok.get("/datasets/tp.jsonl").get_data()
    app.test_client().get("/datasets/all.jsonl", headers={"Authorization": f"Bearer {TOKEN}"})
    store = app.extensions["earlyrisk_store"]
    original = store.stats
    store.stats = lambda: (_ for _ in ()).throw(RuntimeError("boom at /secret/path"))
    try:
        assert ok.get("/stats").status_code == 500
    finally:
        store.stats = original
    events = _events(caplog)
    kinds = [e["event"] for e in events]
    for kind in ("sign_in", "sign_in_failed", "sign_in_limited", "verdict", "export", "error"):
        assert kind in kinds, kind
    verdict = next(e for e in events if e["event"] == "verdict")
    assert verdict["alert_id"] == aid and verdict["reviewer"] == REVIEWER
    assert verdict["label"] == "risk"
    token_export = [e for e in events if e["event"] == "export" and e.get("via") == "bearer"]
    assert token_export and token_export[0]["reviewer"] == "token"
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PASSWORD, "my wrong password", TOKEN, "secret clinical observation",
                   SECRET):
        assert secret not in text
    assert all("ts" in e and "event" in e for e in events)
