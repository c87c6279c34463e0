"""The review app's HTTP behaviour (Flask test client over the real store)."""

from __future__ import annotations

import json
import re
import time

import pytest

from webapp.app import AppConfig, create_app, highlight
from webapp.store import DuckDBReviewStore

from .conftest import PASSWORD, REVIEWER, TOKEN, review_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def app(review_db):
    return create_app(DuckDBReviewStore(review_db), AppConfig.from_env(env=review_env()))


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _login(client, user=REVIEWER, password=PASSWORD):
    token = _csrf(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": user, "password": password,
                                       "csrf_token": token, "next": "/alerts"})


@pytest.fixture
def client(app):
    c = app.test_client()
    assert _login(c).status_code == 302
    return c


def _alert_ids(html: str) -> list[str]:
    return re.findall(r'data-alert-id="([^"]+)"', html)


def test_nothing_is_readable_without_signing_in(app):
    c = app.test_client()
    for path in ("/", "/alerts", "/alerts?tab=risk", "/stats", "/datasets"):
        r = c.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
    r = c.get("/datasets/all.jsonl")
    assert r.status_code == 401 and b"u_" not in r.data
    assert c.post("/alerts/x/label", data={"label": "risk"}).status_code == 401
    # The stylesheet is not data and the sign-in page needs it.
    assert c.get("/static/style.css").status_code == 200


def test_sign_in_session_cookie_and_sign_out(app):
    c = app.test_client()
    r = _login(c, password="wrong password!!")
    assert r.status_code == 401
    r = _login(c)
    assert r.status_code == 302 and r.headers["Location"].endswith("/alerts")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = c.get("/alerts").get_data(as_text=True)
    assert REVIEWER in page
    c.post("/logout", data={"csrf_token": _csrf(page)})
    assert c.get("/alerts").status_code == 302


def test_token_sign_in_and_bearer_download(app):
    c = app.test_client()
    token = _csrf(c.get("/login").get_data(as_text=True))
    r = c.post("/login", data={"token": TOKEN, "csrf_token": token})
    assert r.status_code == 302
    anon = app.test_client()
    assert anon.get("/datasets/all.truth.txt",
                    headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
    r = anon.get("/datasets/all.jsonl", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.data.count(b"\n") > 1000


def test_failed_sign_ins_are_rate_limited(app):
    c = app.test_client()
    for _ in range(5):
        assert _login(c, password="not the password").status_code == 401
    r = _login(c)  # even the right password waits now
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_post_without_or_with_wrong_csrf_token_is_refused(client):
    aid = _alert_ids(client.get("/alerts").get_data(as_text=True))[0]
    assert client.post(f"/alerts/{aid}/label", data={"label": "risk"}).status_code == 403
    assert client.post(f"/alerts/{aid}/label",
                       data={"label": "risk", "csrf_token": "forged"}).status_code == 403
    page = client.get(f"/alerts/{aid}").get_data(as_text=True)
    r = client.post(f"/alerts/{aid}/label", data={"label": "risk", "csrf_token": _csrf(page)},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert aid in _alert_ids(client.get("/alerts").get_data(as_text=True))


def test_tagging_moves_the_alert_to_the_true_positive_tab(client):
    aid = _alert_ids(client.get("/alerts").get_data(as_text=True))[0]
    page = client.get(f"/alerts/{aid}").get_data(as_text=True)
    r = client.post(f"/alerts/{aid}/label", data={
        "label": "risk", "comment": "<script>alert(1)</script> worrying",
        "csrf_token": _csrf(page), "back": "/alerts"})
    assert r.status_code == 302
    detail = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "now under True positives" in detail
    assert "<script>alert(1)</script>" not in detail and "&lt;script&gt;" in detail
    assert aid not in _alert_ids(client.get("/alerts").get_data(as_text=True))
    assert _alert_ids(client.get("/alerts?tab=risk").get_data(as_text=True)) == [aid]
    truth = client.get("/datasets/tp.truth.txt").get_data(as_text=True).split()
    assert truth[1] == "1" and truth[0].startswith("u_")
    lines = client.get("/datasets/tp.jsonl").get_data(as_text=True).splitlines()
    recs = [json.loads(x) for x in lines]
    assert recs and {r["author"] for r in recs} == {truth[0]}
    assert set(recs[0]) == {"id", "author", "created_utc", "kind", "subreddit", "title", "body"}
    csv_text = client.get("/datasets/tp.csv").get_data(as_text=True)
    assert csv_text.startswith("id,author,created_utc,kind,subreddit,title,body")


def test_alert_detail_has_charts_terms_and_sortable_writings(client):
    aid = _alert_ids(client.get("/alerts?sort=priority").get_data(as_text=True))[0]
    html = client.get(f"/alerts/{aid}").get_data(as_text=True)
    assert 'id="chart-writings"' in html and 'id="chart-time"' in html
    assert 'class="threshold"' in html and 'class="alert-point"' in html
    assert 'id="terms-up"' in html and '<mark class="w up-' in html
    # Evidence first: the alert's writing comes before the charts and the full list.
    assert html.index('id="evidence"') < html.index('id="chart-writings"')
    by_p = client.get(f"/alerts/{aid}?wsort=p").get_data(as_text=True)
    listed = by_p[by_p.index('id="writings"'):]
    ps = [float(x) for x in re.findall(r'data-p-text="([0-9.]+)"', listed)]
    assert len(ps) > 1 and ps == sorted(ps, reverse=True)
    assert client.get("/alerts/nope").status_code == 404
    assert client.get("/alerts/x'--").status_code == 404


@pytest.mark.parametrize("query", [
    "subreddit=' OR 1=1 --", "band=P0' OR '1'='1", "from=2019-01-01' OR 1=1",
    "sort=p_user; DROP TABLE alerts", "tab=risk' OR 1=1 --", "after=1~' OR 1=1 --"])
def test_hostile_query_parameters(client, query):
    r = client.get(f"/alerts?{query}")
    assert r.status_code in (200, 400)
    if r.status_code == 200:
        assert _alert_ids(r.get_data(as_text=True)) == []
    assert len(_alert_ids(client.get("/alerts").get_data(as_text=True))) > 0


def test_paging_links_and_filters_in_the_page(client):
    html = client.get("/alerts").get_data(as_text=True)
    ids = _alert_ids(html)
    m = re.search(r'id="next-page" href="([^"]+)"', html)
    if m:  # more than one page of alerts
        nxt = client.get(m.group(1).replace("&amp;", "&")).get_data(as_text=True)
        assert not set(_alert_ids(nxt)) & set(ids)
    assert client.get("/alerts?band=P9").status_code == 400
    assert client.get("/alerts?from=yesterday").status_code == 400


def test_stats_page(client):
    html = client.get("/stats").get_data(as_text=True)
    assert 'id="stat-submissions"' in html and 'id="chart-subs"' in html


def test_names_are_pseudonymised_unless_the_operator_opts_in(review_db):
    store = DuckDBReviewStore(review_db)
    hidden = create_app(store, AppConfig.from_env(env=review_env()))
    shown = create_app(store, AppConfig.from_env(env=review_env(
        EARLYRISK_REVIEW_RAW_NAMES="1")))
    name = hidden.jinja_env.globals["display_name"]
    assert name("some_reddit_user") != "some_reddit_user"
    assert re.fullmatch(r"u_[0-9a-f]{20}", name("some_reddit_user"))
    assert name("u_0123456789abcdef0123") == "u_0123456789abcdef0123"
    assert shown.jinja_env.globals["display_name"]("some_reddit_user") == "some_reddit_user"


def test_highlight_escapes_and_marks_whole_words():
    out = str(highlight("I feel <b>alone</b>, so alone-ish; lonely", ["alone", "i"]))
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert out.count("<mark class=\"term\"") == 3  # I, alone, alone(-ish); not lonely
    assert "lonely" in out and '<mark class="term">lonely' not in out


def _hold_and_write(db, seconds: float = 30.0):
    """Another process that takes DuckDB's write lock and writes, like a running pipeline."""
    import subprocess
    import sys

    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "c.execute(\"INSERT INTO alerts SELECT * REPLACE ('new-while-held' AS alert_id, "
            "99 AS alert_seq) FROM alerts LIMIT 1\"); c.execute('CHECKPOINT'); "
            f"print('locked', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_pages_and_verdicts_work_while_another_process_holds_the_store(client, review_db):
    """A running pipeline holds DuckDB's write lock: pages come from the snapshot, say so,
    and a verdict is saved (in the review database) all the same."""
    store = client.application.extensions["earlyrisk_store"]
    aid = _alert_ids(client.get("/alerts").get_data(as_text=True))[0]
    holder = _hold_and_write(review_db)
    try:
        deadline = time.monotonic() + 10
        while store.freshness()["busy_since"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        page = client.get("/alerts")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert 'id="busy-banner"' in html and "new-while-held" not in html
        detail = client.get(f"/alerts/{aid}").get_data(as_text=True)
        r = client.post(f"/alerts/{aid}/label", data={"label": "risk", "csrf_token": _csrf(
            detail), "comment": "saved while the pipeline writes"})
        assert r.status_code == 302
        assert "saved while the pipeline writes" in client.get(r.headers["Location"]).get_data(
            as_text=True)
        assert holder.poll() is None  # the lock was held the whole time
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 15
    while store.freshness()["busy_since"] is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    html = client.get("/alerts?tab=untagged&q=new-while-held").get_data(as_text=True)
    assert _alert_ids(html) == ["new-while-held"] and 'id="busy-banner"' not in html
    assert _alert_ids(client.get("/alerts?tab=risk").get_data(as_text=True)) == [aid]


def _immutable(path) -> bool:
    """Make ``path`` unwritable, even for root (chattr +i); False if not possible here."""
    import os
    import subprocess

    if os.geteuid() != 0:
        os.chmod(path, 0o444)
        os.chmod(path.parent, 0o555)
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def _mutable(path) -> None:
    import os
    import subprocess

    if os.geteuid() != 0:
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o644)
    else:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_a_read_only_review_database_says_so_and_keeps_the_verdict_text(review_db, tmp_path):
    from webapp.server import build
    from webapp.store import default_review_db

    DuckDBReviewStore(review_db).close()  # creates the review database
    rdb = default_review_db(review_db)
    if not _immutable(rdb):
        pytest.skip("cannot make a file read-only here (no chattr)")
    try:
        import os

        old = dict(os.environ)
        os.environ.update(review_env())
        try:
            with pytest.raises(ValueError, match="read-only"):
                build(f"duckdb://{review_db}")
        finally:
            os.environ.clear()
            os.environ.update(old)
        app = create_app(DuckDBReviewStore(review_db), AppConfig.from_env(env=review_env()))
        c = app.test_client()
        token = _csrf(c.get("/login").get_data(as_text=True))
        r = c.post("/login", data={"username": REVIEWER, "password": PASSWORD,
                                   "csrf_token": token})
        # Sessions live in the review database too: signing in itself cannot be saved.
        assert r.status_code == 500 and b"read-only" in r.data
    finally:
        _mutable(rdb)


def test_a_verdict_that_cannot_be_saved_says_so_and_keeps_the_text(client, review_db):
    store = client.application.extensions["earlyrisk_store"]
    aid = _alert_ids(client.get("/alerts").get_data(as_text=True))[0]
    page = client.get(f"/alerts/{aid}").get_data(as_text=True)
    from webapp.reviewdb import ReviewDBError

    def refuse(**kw):
        raise ReviewDBError(f"review database {store.review.path}: the file or its "
                            "directory is read-only")

    original = store.review.add_label
    store.review.add_label = refuse
    try:
        r = client.post(f"/alerts/{aid}/label", data={
            "label": "risk", "csrf_token": _csrf(page), "comment": "my careful reasoning"})
    finally:
        store.review.add_label = original
    html = r.get_data(as_text=True)
    assert r.status_code == 503
    assert 'id="not-saved"' in html and "NOT saved" in html and "read-only" in html
    assert "my careful reasoning" in html  # kept in the retry form
    retry = re.search(r'<form method="post" action="([^"]+)" class="retry">', html).group(1)
    r = client.post(retry, data={"label": "risk", "csrf_token": _csrf(html),
                                 "comment": "my careful reasoning"})
    assert r.status_code == 302
    assert _alert_ids(client.get("/alerts?tab=risk").get_data(as_text=True)) == [aid]


def test_audit_trail_my_verdicts_and_the_shared_token_recorded_as_such(app, client):
    aid = _alert_ids(client.get("/alerts").get_data(as_text=True))[0]
    page = client.get(f"/alerts/{aid}").get_data(as_text=True)
    client.post(f"/alerts/{aid}/label", data={"label": "risk", "csrf_token": _csrf(page),
                                              "reason": ["explicit", "bogus"]})
    client.get("/datasets/tp.truth.txt")
    tok = app.test_client()
    r = tok.post("/login", data={"token": TOKEN, "csrf_token": _csrf(
        tok.get("/login").get_data(as_text=True))})
    assert r.status_code == 302
    tpage = tok.get(f"/alerts/{aid}").get_data(as_text=True)
    tok.post(f"/alerts/{aid}/label", data={"label": "undecided", "csrf_token": _csrf(tpage)})
    everything = client.get("/activity").get_data(as_text=True)
    for what in ("signed in", "verdict", "download"):
        assert what in everything, what
    assert "token <span class=\"muted\">(shared token)</span>" in everything
    mine = client.get("/activity?mine=1&kind=verdict").get_data(as_text=True)
    assert mine.count('class="event event-verdict"') == 1 and "Risk" in mine
    assert "explicit" in mine and "bogus" not in mine
    history = client.get(f"/alerts/{aid}").get_data(as_text=True)
    assert "Explicit statements" in history and "(token)" in history
    assert client.get("/activity?kind=nonsense").status_code == 400


def test_notes_claims_other_alerts_and_save_and_next(app, client):
    html = client.get("/alerts?sort=priority").get_data(as_text=True)
    ids = _alert_ids(html)
    back = "/alerts?sort=priority"
    page = client.get(f"/alerts/{ids[0]}", query_string={"back": back}).get_data(as_text=True)
    assert 'id="other-alerts"' in page and 'id="p-now"' in page
    r = client.post(f"/alerts/{ids[0]}/note", data={"note": "<b>call</b> the GP",
                                                    "csrf_token": _csrf(page), "back": back})
    assert r.status_code == 302
    page = client.get(f"/alerts/{ids[0]}").get_data(as_text=True)
    assert "&lt;b&gt;call&lt;/b&gt; the GP" in page
    # Bob claims the second alert: Save and next skips it for alice.
    store = app.extensions["earlyrisk_store"]
    store.review.claim(ids[1], "bob")
    listing = client.get("/alerts?sort=priority").get_data(as_text=True)
    assert "claimed by bob" in listing
    warn = client.get(f"/alerts/{ids[1]}").get_data(as_text=True)
    assert 'id="claim-warning"' in warn and 'id="take-over"' in warn
    r = client.post(f"/alerts/{ids[0]}/label", data={
        "label": "no_risk", "csrf_token": _csrf(page), "and_next": "1", "back": back})
    assert r.status_code == 302 and f"/alerts/{ids[2]}?" in r.headers["Location"]
    assert "saved=no_risk" in r.headers["Location"]
    nxt = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "previous alert" in nxt and 'id="claim-state"' in nxt  # claimed for alice
    assert store.review.claims([ids[2]])[ids[2]][0] == REVIEWER


def test_paging_shows_the_range_and_goes_back(client):
    html = client.get("/alerts?sort=priority").get_data(as_text=True)
    total = int(re.search(r'id="tab-untagged"[^>]*>[^<]*<span class="count">(\d+)', html)
                .group(1))
    assert re.search(rf'id="range">1–{min(50, total)} of {total}', html)
    nxt = re.search(r'id="next-page" rel="next" href="([^"]+)"', html) or re.search(
        r'href="([^"]+)" id="next-page"', html)
    if total <= 50:
        assert nxt is None
        return
    second = client.get(nxt.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.search(rf'id="range">51–{min(100, total)} of {total}', second)
    prev = re.search(r'href="([^"]+)" id="prev-page"', second).group(1).replace("&amp;", "&")
    assert _alert_ids(client.get(prev).get_data(as_text=True)) == _alert_ids(html)


def test_favicon_and_script_are_public_and_the_policy_allows_only_own_scripts(app):
    c = app.test_client()
    r = c.get("/favicon.ico")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    assert c.get("/static/keys.js").status_code == 200
    csp = c.get("/login").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_a_read_only_pipeline_store_is_served_as_usual(review_db, tmp_path_factory):
    """The app never writes the pipeline's file, so a read-only one is no problem."""
    if not _immutable(review_db):
        pytest.skip("cannot make a file read-only here (no chattr)")
    try:
        elsewhere = tmp_path_factory.mktemp("writable") / "r.sqlite"
        app = create_app(DuckDBReviewStore(review_db, review_db=elsewhere),
                         AppConfig.from_env(env=review_env()))
        c = app.test_client()
        assert _login(c).status_code == 302
        aid = _alert_ids(c.get("/alerts").get_data(as_text=True))[0]
        page = c.get(f"/alerts/{aid}").get_data(as_text=True)
        r = c.post(f"/alerts/{aid}/label", data={"label": "risk", "csrf_token": _csrf(page)})
        assert r.status_code == 302
        assert _alert_ids(c.get("/alerts?tab=risk").get_data(as_text=True)) == [aid]
    finally:
        _mutable(review_db)


def test_started_while_a_pipeline_holds_the_store_pages_say_why_and_posts_not_saved(review_db):
    holder = _hold_and_write(review_db)
    try:
        store = DuckDBReviewStore(review_db)  # no snapshot possible yet
        app = create_app(store, AppConfig.from_env(env=review_env()))
        c = app.test_client()
        assert _login(c).status_code == 302
        r = c.get("/alerts")
        assert r.status_code == 503 and b"holds the database" in r.data
        page = c.get("/activity").get_data(as_text=True)  # review pages still work
        r = c.post("/alerts/some-alert/label", data={
            "label": "risk", "comment": "keep this text", "csrf_token": _csrf(page)})
        html = r.get_data(as_text=True)
        assert r.status_code == 503 and "NOT saved" in html and "keep this text" in html
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 15
    while store.freshness()["snapshot_at"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert c.get("/alerts").status_code == 200


def test_without_the_alerts_model_the_page_shows_the_stored_explanation(review_db, tmp_path):
    """The app explains with its own model only for alerts of that model version; otherwise
    it shows what the pipeline stored in alerts.explanation and says why."""
    app = create_app(DuckDBReviewStore(review_db), AppConfig.from_env(
        env=review_env(), model_dir=str(tmp_path / "no-model-here")))
    c = app.test_client()
    assert _login(c).status_code == 302
    aid = _alert_ids(c.get("/alerts?sort=priority").get_data(as_text=True))[0]
    html = c.get(f"/alerts/{aid}").get_data(as_text=True)
    assert "as the pipeline stored it" in html and "no model loaded" in html
    assert 'id="terms-up"' in html and '<mark class="w ' not in html
