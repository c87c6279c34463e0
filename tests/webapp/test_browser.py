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
    assert d.find_elements(By.CSS_SELECTOR, "#writings mark.term")
    user = d.find_element(By.ID, "user-name").text
    assert re.fullmatch(r"u_[0-9a-f]{20}", user)
    d.find_element(By.ID, "sort-p").click()
    ps = [float(li.get_attribute("data-p-text"))
          for li in d.find_elements(By.CSS_SELECTOR, "#writings li.writing")]
    assert ps == sorted(ps, reverse=True)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": 1500, "deviceScaleFactor": 1, "mobile": False})
    shot(d, "alert")

    # Tag it as risk, with a comment; it leaves "To review" for "True positives".
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
