"""The review app in a real browser: Debian Chromium (headless) via chromedriver.

Drives ``earlyrisk serve`` (a subprocess) over the real pipeline's DuckDB:
sign in, open an alert, see the chart, tag it, see it move tabs, download a
dataset. Screenshots go to ``tests/artifacts/`` (or ``$EARLYRISK_TEST_ARTIFACTS``)
for CI to keep. Needs deploy/local/install-chromium.sh.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import PASSWORD, REVIEWER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("EARLYRISK_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "artifacts")

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip("Debian chromium/chromium-driver missing: run deploy/local/install-chromium.sh",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--window-size=1280,1800",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.implicitly_wait(5)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"review-{name}.png"
    driver.save_screenshot(str(path))
    return path


def _alert_ids(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [r.get_attribute("data-alert-id")
            for r in driver.find_elements(By.CSS_SELECTOR, "tr.alert-row")]


def test_unauthenticated_requests_are_refused(live_server):
    for path in ("/datasets/all.jsonl", "/datasets/tp.csv"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(live_server.url + path, timeout=10)
        assert e.value.code == 401
    req = urllib.request.Request(live_server.url + "/alerts/x/label", data=b"label=risk")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(live_server.url + "/alerts", timeout=10)
    assert e.value.code == 302 and "/login" in e.value.headers["Location"]


def test_review_flow_in_chromium(live_server, browser):
    from selenium.webdriver.common.by import By

    d, url = browser, live_server.url
    d.get(url + "/alerts")
    assert "/login" in d.current_url  # nothing without signing in
    d.find_element(By.ID, "username").send_keys(REVIEWER)
    d.find_element(By.ID, "password").send_keys("wrong password")
    d.find_element(By.ID, "sign-in").click()
    assert "Wrong user name" in d.find_element(By.ID, "login-error").text
    d.find_element(By.ID, "username").send_keys(REVIEWER)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "sign-in").click()
    assert d.find_element(By.ID, "who").text == REVIEWER

    # Alerts, highest priority first.
    d.get(url + "/alerts?sort=priority")
    ids = _alert_ids(d)
    assert len(ids) > 10
    untagged_before = int(d.find_element(By.CSS_SELECTOR, "#tab-untagged .count").text)
    shot(d, "alerts")

    # Open the top alert: chart with threshold and alert point, highlighted terms.
    target = ids[0]
    d.find_element(By.CSS_SELECTOR, f'tr[data-alert-id="{target}"] a.alert-link').click()
    chart = d.find_element(By.ID, "chart-writings")
    assert chart.is_displayed() and chart.size["width"] > 300
    assert chart.find_elements(By.CSS_SELECTOR, "polyline.p-user")
    assert chart.find_elements(By.CSS_SELECTOR, ".threshold")
    assert chart.find_elements(By.CSS_SELECTOR, ".alert-point")
    assert d.find_element(By.ID, "chart-time").is_displayed()
    assert d.find_elements(By.CSS_SELECTOR, "#writings mark.w")  # graded by weight
    user = d.find_element(By.ID, "user-name").text
    assert re.fullmatch(r"u_[0-9a-f]{20}", user)
    d.find_element(By.ID, "sort-p").click()
    ps = [float(li.get_attribute("data-p-text"))
          for li in d.find_elements(By.CSS_SELECTOR, "#writings article.writing")]
    assert ps == sorted(ps, reverse=True)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": 1500, "deviceScaleFactor": 1, "mobile": False})
    shot(d, "alert")

    # Tag it as risk, with a comment; it leaves "To review" for "True positives".
    d.execute_script("window.scrollTo(0, 0)")
    d.find_element(By.ID, "label-risk").click()
    d.find_element(By.ID, "comment").send_keys("several explicit statements; follow up")
    d.find_element(By.ID, "save-label").click()
    assert "True positives" in d.find_element(By.ID, "tagged-notice").text
    assert "Risk" in d.find_element(By.ID, "verdict").text
    assert "follow up" in d.find_element(By.ID, "history").text
    d.find_element(By.ID, "back").click()
    assert target not in _alert_ids(d)
    assert int(d.find_element(By.CSS_SELECTOR, "#tab-untagged .count").text) == \
        untagged_before - 1
    d.find_element(By.ID, "tab-risk").click()
    assert _alert_ids(d) == [target]
    shot(d, "true-positives")

    # Download the true positives as JSONL: the wire format, authored by the user.
    d.find_element(By.ID, "nav-datasets").click()
    d.find_element(By.ID, "dl-tp-jsonl").click()
    deadline = time.monotonic() + 20
    files: list[Path] = []
    while time.monotonic() < deadline:
        files = [p for p in d.downloads.glob("*.jsonl") if p.stat().st_size > 0]
        if files:
            break
        time.sleep(0.2)
    assert files, "no download arrived"
    time.sleep(0.3)  # let Chromium finish renaming the .crdownload
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert records and {r["author"] for r in records} == {user}
    assert {"id", "author", "created_utc", "kind", "subreddit", "title", "body"} <= set(records[0])

    d.find_element(By.ID, "nav-stats").click()
    assert int(d.find_element(By.ID, "stat-submissions").text.replace(",", "")) > 1000
    assert d.find_element(By.ID, "chart-subs").is_displayed()
    speed = d.find_element(By.ID, "chart-speed")
    assert speed.is_displayed() and speed.find_elements(By.CSS_SELECTOR, "rect")
    shot(d, "stats")

    d.find_element(By.CSS_SELECTOR, "form.logout button").click()
    d.get(url + "/alerts")
    assert "/login" in d.current_url


def _sign_in(d, url):
    from selenium.webdriver.common.by import By

    d.get(url + "/login")
    d.find_element(By.ID, "username").send_keys(REVIEWER)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "sign-in").click()
    assert d.find_element(By.ID, "who").text == REVIEWER


def _keys(d, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(d).send_keys(keys).perform()


def _text(d, element_id: str) -> str:
    """An element's text, or '' while the page is being replaced."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return d.find_element(By.ID, element_id).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _wait(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_triage_with_the_keyboard_evidence_first(live_server, browser):
    """Open an alert, read the evidence, tag it with the keyboard, land on the next one."""
    from selenium.webdriver.common.by import By

    d, url = browser, live_server.url
    _sign_in(d, url)
    d.get(url + "/alerts?sort=priority")
    ids = _alert_ids(d)
    assert d.find_element(By.ID, "range").text.startswith("1–")
    d.find_element(By.CSS_SELECTOR, f'tr[data-alert-id="{ids[0]}"] a.alert-link').click()
    # Evidence first: the writing that raised the alert at the top, the verdict beside it.
    evidence = d.find_element(By.ID, "evidence")
    panel = d.find_element(By.ID, "verdict-panel")
    writing = d.find_element(By.CSS_SELECTOR, "#evidence .evidence-writing")
    assert writing.is_displayed() and writing.location["y"] < 400
    assert "alert raised here" in writing.text
    assert panel.location["x"] > evidence.location["x"] + evidence.size["width"] - 5
    assert abs(panel.location["y"] - evidence.location["y"]) < 80
    assert d.find_element(By.ID, "chart-writings").location["y"] > writing.location["y"]
    assert d.find_element(By.ID, "terms-up").is_displayed()
    shot(d, "triage-alert")
    # r chooses Risk, s saves and moves on to the next alert of the same list.
    _keys(d, "r")
    assert d.find_element(By.ID, "label-risk").is_selected()
    _keys(d, "s")
    _wait(lambda: f"/alerts/{ids[1]}" in d.current_url, what="the next alert")
    notice = d.find_element(By.ID, "tagged-notice").text
    assert "Risk" in notice and "previous alert" in notice
    assert d.find_element(By.ID, "claim-state").text == "Claimed by you."
    # j / k move between alerts without tagging.
    _keys(d, "j")
    _wait(lambda: f"/alerts/{ids[2]}" in d.current_url, what="j to the next alert")
    _keys(d, "k")
    _wait(lambda: f"/alerts/{ids[1]}" in d.current_url, what="k to the previous alert")
    d.find_element(By.ID, "nav-mine").click()
    mine = d.find_element(By.ID, "activity-table").text
    assert "verdict: Risk" in mine
    d.find_element(By.ID, "nav-alerts").click()
    assert ids[0] not in _alert_ids(d)


def test_search_by_pseudonym_and_text_in_chromium(live_server, browser):
    from selenium.webdriver.common.by import By

    d, url = browser, live_server.url
    d.get(url + "/alerts?sort=priority")
    first = d.find_element(By.CSS_SELECTOR, "tr.alert-row a.alert-link")
    name = first.text
    box = d.find_element(By.ID, "q")
    box.send_keys(name)
    d.find_element(By.ID, "search").click()
    _wait(lambda: "q=" in d.current_url and "matching" in _text(d, "range"),
          what="the search results")
    rows = d.find_elements(By.CSS_SELECTOR, "tr.alert-row a.alert-link")
    assert rows and {r.text for r in rows} == {name}
    rows[0].click()
    body = d.find_element(By.CSS_SELECTOR, "#evidence .evidence-writing .body").text
    words = [w for w in re.findall(r"[A-Za-z]{4,}", body)][:3]
    assert len(words) == 3
    d.get(url + "/alerts?sort=priority")
    _keys(d, "/")  # focuses the search box
    _keys(d, " ".join(words) if " ".join(words) in body else words[0])
    d.find_element(By.ID, "search").click()
    _wait(lambda: "q=" in d.current_url and "matching" in _text(d, "range"),
          what="the search results")
    assert name in [r.text for r in d.find_elements(By.CSS_SELECTOR,
                                                      "tr.alert-row a.alert-link")]
    d.find_element(By.ID, "clear-search").click()
    _wait(lambda: "q=" not in d.current_url, what="the cleared search")
    assert len(_alert_ids(d)) > 10


def _long_stream(tmp_path: Path, copies: int = 3) -> Path:
    """The bundled train stream, ``copies`` times with fresh ids: new users, new alerts."""
    import gzip

    src = Path(__file__).resolve().parents[2] / "data" / "simulated" / "train.jsonl.gz"
    lines = gzip.open(src, "rt", encoding="utf-8").read().splitlines()
    out = tmp_path / "long.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for c in range(copies):
            for line in lines:
                rec = json.loads(line)
                rec["id"] = f"{rec['id']}-c{c}"
                rec["author"] = f"{rec['author']}-c{c}"
                f.write(json.dumps(rec) + "\n")
    return out


def test_a_verdict_is_saved_while_a_real_pipeline_writes_the_same_store(
        live_server, browser, tmp_path):
    """``earlyrisk run`` holds DuckDB's write lock on the very file the app serves: the
    reviewer keeps working from the snapshot, the verdict is saved, the run is undisturbed."""
    import subprocess
    import sys

    from selenium.webdriver.common.by import By

    from .conftest import review_env

    d, url = browser, live_server.url
    stream = _long_stream(tmp_path, copies=20)  # ~64k writings: tens of seconds
    d.get(url + "/alerts")
    if "/login" in d.current_url:
        _sign_in(d, url)
    log = tmp_path / "pipeline.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", "--input", f"file://{stream}",
             "--output", f"duckdb://{live_server.db}"], env=review_env(), stdout=out,
            stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    try:
        def busy():
            d.get(url + "/alerts?sort=priority")
            assert run.poll() is None, (f"the pipeline ended first: {log.read_text()[-800:]}; "
                                        f"server: {live_server.log.read_text()[-1500:]}")
            return d.find_elements(By.ID, "busy-banner")

        banner = _wait(busy, timeout=90, what="the app to see the pipeline holding the store")
        assert "running pipeline" in banner[0].text
        shot(d, "busy")
        before = int(d.find_element(By.CSS_SELECTOR, "#tab-untagged .count").text)
        target = _alert_ids(d)[0]
        d.find_element(By.CSS_SELECTOR, f'tr[data-alert-id="{target}"] a.alert-link').click()
        _keys(d, "n")
        d.find_element(By.ID, "comment").send_keys("saved while the pipeline writes")
        d.find_element(By.ID, "save-label").click()
        notice = d.find_element(By.ID, "tagged-notice").text
        assert "No risk" in notice and "False positives" in notice
        assert "saved while the pipeline writes" in d.find_element(By.ID, "history").text
        assert run.poll() is None, "the pipeline must still hold the store after the save"
    finally:
        try:
            rc = run.wait(timeout=300)
        except subprocess.TimeoutExpired:
            run.kill()
            raise
    assert rc == 0, log.read_text()[-2000:]

    def caught_up():
        d.get(url + "/alerts")
        if d.find_elements(By.ID, "busy-banner"):
            return False
        return int(d.find_element(By.CSS_SELECTOR, "#tab-untagged .count").text) > before - 1

    _wait(caught_up, timeout=30, what="the app to pick up the pipeline's new alerts")
    assert int(d.find_element(By.CSS_SELECTOR, "#tab-untagged .count").text) > before
    d.find_element(By.ID, "tab-no_risk").click()
    assert target in _alert_ids(d)
