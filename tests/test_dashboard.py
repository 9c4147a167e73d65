"""The dashboard in a real browser: Debian's chromium, headless, driven
through its chromedriver by selenium, against a live server with a
simulated fleet (boards running the native core). Every number the page
shows is read back and compared with the admin API's; a screenshot is
saved with the test's output (tmp_path/dashboard.png)."""

from __future__ import annotations

import base64
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_util import TOKEN, board, full, models, raw_http, running_server
from modelota.demo.simfleet import SimClock
from modelota.fleet.client import AdminClient, poll, send_quality
from modelota.fleet.rollout import bucket, wave_of
from modelota.sim.faultproxy import Fault, FaultProxy
from modelota.sim.quality import QualityMeter

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/test.sh)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e .[test]")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path / "chromium-profile"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={profile}"):  # fmt: skip
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def summary(version: int, counts: list[int], conf: float, labelled: int) -> bytes:
    m = QualityMeter(len(counts), sum(counts), version)
    k = 0
    for cls, c in enumerate(counts):
        for _ in range(c):
            m.record(cls, conf, cls if k < labelled else (cls + 1) % len(counts))
            k += 1
    return m.json()


def build_fleet(url: str, admin: AdminClient, clock: SimClock) -> dict[str, Any]:
    """Group g (60 boards): a rollout to v2 that completes, then one to v3
    that the quality gate pauses. Group h (10 boards): downloads corrupted
    on the wire (ChunkCrc reports)."""
    ws = models(3)
    for v, w in enumerate(ws, 1):
        admin.upload("m", full(w, v))
    boards = {}
    for i in range(70):
        d = f"24:6F:28:00:00:{i:02X}"
        admin.register(d, group="g" if i < 60 else "h")
        boards[d] = board(ws[0])
    admin.assign("group", "g", "m", 1)
    admin.assign("group", "h", "m", 2)

    def poll_all(through: str = url, only: str = "") -> None:
        for d, b in boards.items():
            if d.startswith(only):
                poll(b, through, d, backoff=0.0)

    def report_quality() -> None:
        for d, b in boards.items():
            if b.version == 3:
                send_quality(url, d, summary(3, [60, 20, 10, 10], 0.55, 40))
            else:
                send_quality(url, d, summary(b.version, [25, 25, 25, 25], 0.93, 40))

    host, port = url.removeprefix("http://").split(":")
    with FaultProxy((host, int(port))) as proxy:
        proxy.plan += [Fault(flip_at=1500) for _ in range(10)]
        for d in list(boards)[60:]:
            poll(boards[d], proxy.url, d, backoff=0.0)
    poll_all()  # group g: current at v1
    report_quality()
    pol = {"waves": [10, 50, 100], "soak": 1800, "min_inferences": 100}
    r1 = admin.create_rollout("m", 2, "g", pol, start=True)
    for _ in range(4):
        clock.advance(600)
        poll_all()
        report_quality()
        clock.advance(1801)
        admin.evaluate()
    assert admin.rollout(r1["id"])["state"] == "done"
    r2 = admin.create_rollout("m", 3, "g", pol, start=True)
    clock.advance(600)
    poll_all()
    report_quality()
    admin.evaluate()
    assert admin.rollout(r2["id"])["state"] == "paused"
    first = [d for d in list(boards)[:60] if wave_of((10, 50, 100), bucket("m", d)) == 0]
    assert all(boards[d].version == 3 for d in first)
    return {"r1": r1["id"], "r2": r2["id"]}


def test_dashboard_shows_what_the_api_says(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    clock = SimClock()
    with running_server(tmp_path / "data", clock=clock) as s:
        ids = build_fleet(s.url, s.admin, clock)

        def until(what: str, cond: Any) -> None:  # waits on the page, bounded
            WebDriverWait(browser, 60).until(cond, f"the page never showed {what}")

        # the token is needed: a login form, a wrong token refused
        browser.get(f"{s.url}/dashboard")
        until("the sign-in form", ec.presence_of_element_located((By.ID, "token")))
        browser.find_element(By.ID, "token").send_keys("wrong")
        browser.find_element(By.ID, "login").click()
        until("'wrong token'", ec.text_to_be_present_in_element((By.TAG_NAME, "body"),
                                                              "wrong token"))  # fmt: skip
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "login").click()
        until("the dashboard", ec.presence_of_element_located((By.ID, "quality")))
        assert 'http-equiv="refresh"' in browser.page_source  # it reloads itself by default
        # read the numbers from a page that does not reload meanwhile (the cookie holds)
        browser.get(f"{s.url}/dashboard?refresh=0")
        until("the whole dashboard", ec.presence_of_element_located((By.ID, "quality")))
        assert 'http-equiv="refresh"' not in browser.page_source

        def shown(key: str) -> str:
            return str(browser.find_element(By.CSS_SELECTOR, f'[data-k="{key}"]').text)

        # devices per version per line
        devices = s.admin.devices()
        per = Counter((d["assigned"]["line"], d["last_version"]) for d in devices)
        assert sum(per.values()) == 70 and per[("m", 3)] > 0 and per[("m", 2)] > 0
        for (line, v), n in per.items():
            assert shown(f"dev:{line}:v{v}") == str(n)
        assert shown("dev:m:total") == str(len(devices))

        # rollouts: state, wave, every wave's numbers, every decision's reason
        for rid in ids.values():
            r = s.admin.rollout(rid)
            assert shown(f"ro:{rid}:state") == r["state"]
            assert shown(f"ro:{rid}:wave") == str(r["wave"])
            for w in r["waves"]:
                for key in ("updated", "devices", "failed"):
                    assert shown(f"ro:{rid}:w{w['wave']}:{key}") == str(w[key])
            assert shown(f"ro:{rid}:events") == str(len(r["events"]))
            auto = [e for e in r["events"] if e["actor"] == "server"]
            assert shown(f"ro:{rid}:auto") == str(len(auto))
            for e in r["events"]:
                assert shown(f"ro:{rid}:e{e['step']}") == e["reason"]
        paused = s.admin.rollout(ids["r2"])
        assert paused["state"] == "paused" and "model worse" in paused["events"][-1]["reason"]

        # failure reports by status
        reports = s.admin.reports(limit=500)
        failures = Counter(r["status_name"] for r in reports if r["status"] is not None
                           and r["status"] < 0)  # fmt: skip
        assert failures == Counter({"ChunkCrc": 10})
        for name, n in failures.items():
            assert shown(f"fail:{name}") == str(n)
        assert shown("fail:total") == str(sum(failures.values()))

        # adoption: the history ends where the devices are
        history = s.admin.history()
        now: dict[str, int] = {}
        for h in history:
            now[h["device"]] = h["version"]
        for v, n in Counter(now.values()).items():
            assert shown(f"adopt:m:v{v}") == str(n)

        # model quality per version
        for q in s.admin.quality():
            k = f"q:{q['line']}:v{q['version']}"
            assert shown(k + ":conf") == f"{q['conf']:.4f}"
            assert shown(k + ":n") == str(q["n"])
            assert shown(k + ":devices") == str(q["devices"])
            assert shown(k + ":acc") == f"{q['accuracy']:.1%}"

        # every chart is there and drawn
        for section in ("versions", "rollouts", "failures", "adoption", "quality"):
            assert browser.find_elements(By.CSS_SELECTOR, f"#{section} svg"), section
        shot = tmp_path / "dashboard.png"  # the whole page, beyond the window
        png = browser.execute_cdp_cmd("Page.captureScreenshot",
                                      {"format": "png", "captureBeyondViewport": True})
        shot.write_bytes(base64.b64decode(png["data"]))
        assert shot.stat().st_size > 20_000
        print(f"screenshot: {shot}")

        # the same page with the bearer token, none without
        bearer = f"Authorization: Bearer {TOKEN}\r\n".encode()
        status, raw = raw_http(s.port, b"GET /dashboard HTTP/1.1\r\nHost: x\r\n" + bearer
                               + b"Connection: close\r\n\r\n")  # fmt: skip
        assert status == 200 and b'data-k="ro:' in raw
        status, raw = raw_http(s.port, b"GET /dashboard HTTP/1.1\r\nHost: x\r\nConnection:"
                               b" close\r\n\r\n")  # fmt: skip
        assert status == 401 and b"data-k" not in raw
        forged = b"Cookie: modelota_dashboard=forged\r\n"
        status, _ = raw_http(s.port, b"GET /dashboard HTTP/1.1\r\nHost: x\r\n" + forged
                             + b"Connection: close\r\n\r\n")  # fmt: skip
        assert status == 401
        big = b"token=" + b"x" * 5000
        status, _ = raw_http(s.port, b"POST /dashboard/login HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(big)
                             + big)  # fmt: skip
        assert status == 413
