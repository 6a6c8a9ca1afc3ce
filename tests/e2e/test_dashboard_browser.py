"""The ops dashboard in a real headless Chromium (the OS's chromium + chromedriver, driven by
Selenium): a simulated day shows as the API has it, by time left with at-risk marks, queue
health from a real broker, a case page with its timeline and packet index; it refreshes on
its own; a key of another role is refused. A screenshot is written in the run."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from api.app import create_app
from simulator.demo import demo_scenario
from simulator.driver import run_simulation
from simulator.serving import run_in_thread
from tests.conftest import IN_CI, notification
from tests.fakes import bearer, make_container
from worker import services
from worker.actors import lane_queues
from worker.domain.lanes import Lane
from worker.readmodels.queues import queue_health

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser() -> Any:
    if not (os.path.exists(CHROMIUM) and shutil.which("chromedriver")):
        if IN_CI:
            pytest.fail("CI needs chromium and chromium-driver (.ci/run installs them)")
        pytest.skip(
            "chromium / chromedriver not installed (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


_ROWS_JS = """return [...document.querySelectorAll('#cases tbody tr[data-case-id]')]
  .map(r => ({id: r.dataset.caseId, marks: r.dataset.marks, text: r.innerText}))"""


def _rows(browser: Any) -> list[dict[str, str]]:
    """The case rows as shown, read in one script (the page re-renders as it refreshes)."""
    return list(browser.execute_script(_ROWS_JS))


def _wait(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for the page"
        time.sleep(0.1)


def _click(browser: Any, selector: str) -> None:
    """Click ``selector``, found afresh: the page re-renders its tables every refresh, so an
    element found a moment before may be gone (stale) by the click."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt() -> bool:
        try:
            browser.find_element("css selector", selector).click()
        except StaleElementReferenceException:
            return False
        return True

    _wait(attempt)


@pytest.fixture
def day(tmp_path: Path, redis_url: str) -> Iterator[tuple[Any, str, dict[str, str]]]:
    """A simulated day (9 cases, stopped 20 hours in), served by the real API with a broker
    that holds one waiting message; yields (container, API URL, ops key header)."""
    base = demo_scenario(9)
    scenario = replace(base, until=base.start + timedelta(hours=20))
    run = run_simulation(
        scenario, workdir=tmp_path / "run", redis_url=redis_url, stop_when_done=False
    )
    db = f"sqlite:///{tmp_path / 'run' / 'goodfaith.db'}"
    c, _clock, _fax, _d = make_container(tmp_path, scenario.until, db)
    namespace = f"gf-dash-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=redis_url, namespace=namespace)  # type: ignore[no-untyped-call]
    queues = lane_queues(list(Lane))
    for q in queues:
        broker.declare_queue(q)
    broker.enqueue(
        Message(queue_name="goodfaith.standard", actor_name="x", args=(), kwargs={}, options={})
    )
    r = redis.Redis.from_url(redis_url)
    url, stop = run_in_thread(
        create_app(lambda: c, lambda: queue_health(r, namespace, queues, int(time.time() * 1000)))
    )
    assert run.report["summary"]["cases"] == 9
    try:
        yield c, url, bearer(c, "ops")
    finally:
        stop()
        r.delete(*r.keys(f"{namespace}:*"))
        r.close()
        broker.close()
        c.close()


def test_the_dashboard_shows_a_simulated_day(
    day: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    c, url, ops = day
    api = httpx.Client(base_url=url, headers=ops)
    csv_text = (
        "member_id,member_name,birth_date,provider_id,provider_name,fax,request,due_date\n"
        f"M77,Pat Doe,1970-01-01,prov-77,Clinic,+16175550177,Charts,"
        f"{(c.clock.now() + timedelta(days=30)).date().isoformat()}\n"
    )
    loaded = services.load_campaign(c, {"name": "RA charts", "csv": csv_text}, "test")
    expected = api.get("/v1/cases", params={"limit": 500}).json()
    assert expected["active"], "the day should leave cases in progress"
    assert {x["kind"] for x in expected["active"]} == {"review"}  # the campaign's stay out
    campaign_cases = api.get("/v1/cases", params={"limit": 500, "kind": "campaign"}).json()
    assert [x["campaign_id"] for x in campaign_cases["active"]] == [loaded.campaign_id]
    browser = _browser()
    try:
        browser.get(f"{url}/dashboard?refresh=1")
        # the page holds no data: it asks for a key first
        _wait(lambda: browser.find_element("id", "key-panel").is_displayed())
        browser.find_element("id", "key-input").send_keys(
            ops["Authorization"].removeprefix("Bearer ")
        )
        browser.find_element("css selector", "#key-form button").click()
        rows = _wait(lambda: _rows(browser))
        shown = [row["id"] for row in rows]
        assert shown == [x["case_id"] for x in expected["active"]]  # by time left, as the API
        marks = {row["id"]: row["marks"] for row in rows}
        assert marks == {x["case_id"]: " ".join(x["at_risk"]) for x in expected["active"]}
        assert any(marks.values()), "a day in, some case should be marked at risk"
        texts = [row["text"] for row in rows]
        assert all(
            x["notification_id"] in t for x, t in zip(expected["active"], texts, strict=True)
        )
        counts = browser.find_element("id", "counts").text
        assert all(f"{k}: {n}" in counts for k, n in expected["counts"].items())
        queue_text = browser.execute_script(
            "return [document.querySelector('#queue-table tr[data-queue=\"goodfaith.standard\"]')"
            ".innerText, document.querySelector('#workers-alive').innerText]"
        )
        assert queue_text[0].split()[1] == "1"
        assert "workers alive" in queue_text[1]
        campaign = browser.execute_script(
            "return document.querySelector('#campaign-table tbody tr').innerText"
        ).split("\t")
        assert campaign[:4] == ["RA charts", "open", "1", "1"]
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        artifacts = os.environ.get("GOODFAITH_SCREENSHOTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(artifacts) / "dashboard.png")

        # filters: expedited only, then at-risk only
        from selenium.webdriver.support.ui import Select

        Select(browser.find_element("id", "f-review")).select_by_value("expedited")
        expedited = {x["case_id"] for x in expected["active"] if x["review_type"] == "expedited"}
        _wait(lambda: {r["id"] for r in _rows(browser)} == expedited)
        Select(browser.find_element("id", "f-review")).select_by_value("")
        browser.find_element("id", "f-risk").click()
        risky = {x["case_id"] for x in expected["active"] if x["at_risk"]}
        _wait(lambda: {r["id"] for r in _rows(browser)} == risky)
        browser.find_element("id", "f-risk").click()
        # the campaign's case only when asked for: campaign requests, then every case
        campaign_ids = {x["case_id"] for x in campaign_cases["active"]}
        Select(browser.find_element("id", "f-kind")).select_by_value("campaign")
        _wait(lambda: {r["id"] for r in _rows(browser)} == campaign_ids)
        Select(browser.find_element("id", "f-kind")).select_by_value("all")
        _wait(lambda: {r["id"] for r in _rows(browser)} == campaign_ids | set(shown))
        Select(browser.find_element("id", "f-kind")).select_by_value("review")
        _wait(lambda: [r["id"] for r in _rows(browser)] == shown)

        # it refreshes on its own: a case taken in now appears without a reload
        later = c.clock.now()
        new = services.intake(
            c, notification(notification_id="DASH-NEW", received_at=later.isoformat())
        )
        _wait(lambda: new.case_id in {r["id"] for r in _rows(browser)})

        # the case page: timeline of every audit event and the packet index
        first = expected["active"][0]["case_id"]
        browser.execute_script(f"document.querySelector('tr[data-case-id=\"{first}\"]').click()")
        _wait(lambda: browser.find_element("id", "case-view").is_displayed())
        timeline = api.get(f"/v1/cases/{first}/timeline").json()
        items = _wait(
            lambda: browser.execute_script(
                "return [...document.querySelectorAll('#case-timeline li')].map(li => li.innerText)"
            )
        )
        assert len(items) == len(timeline["events"]) > 0
        assert all(e["kind"] in i for i, e in zip(items, timeline["events"], strict=True))
        detail = api.get(f"/v1/cases/{first}").json()
        attempt_rows = browser.execute_script(
            "return document.querySelectorAll('#case-attempts tbody tr').length"
        )
        assert attempt_rows == sum(max(1, len(r["attempts"])) for r in detail["requests"])
        browser.save_screenshot(str(tmp_path / "case.png"))

        # a delivered case shows its packet index
        with_packet = next(
            (x for x in api.get("/v1/cases", params={"status": "delivered"}).json()["active"]), None
        )
        if with_packet is None:  # delivered cases leave the watch list unless flagged
            from sqlalchemy import select

            from storage.db import transaction
            from storage.models import Packet

            with transaction(c.sessions) as s:
                packet_case = s.scalars(select(Packet.case_id)).first()
        else:
            packet_case = with_packet["case_id"]
        assert packet_case is not None
        browser.get(f"{url}/dashboard?refresh=1#/case/{packet_case}")
        parts = _wait(
            lambda: browser.execute_script(
                "return [...document.querySelectorAll('.packet-index li')].map(li => li.innerText)"
            )
        )
        index = api.get(f"/v1/cases/{packet_case}/timeline").json()["packets"][0]["parts"]
        assert len(parts) == len(index) and index[0]["title"] in parts[0]
    finally:
        browser.quit()
        api.close()


def test_a_key_of_another_role_is_refused_in_the_page(day: tuple[Any, str, dict[str, str]]) -> None:
    """An intake key gets the key form back with the 403 named; no case is shown."""
    c, url, _ops = day
    intake = bearer(c, "intake")["Authorization"].removeprefix("Bearer ")
    browser = _browser()
    try:
        browser.get(f"{url}/dashboard")
        _wait(lambda: browser.find_element("id", "key-panel").is_displayed())
        browser.find_element("id", "key-input").send_keys(intake)
        browser.find_element("css selector", "#key-form button").click()
        _wait(lambda: "403" in browser.find_element("id", "key-error").text)
        assert not browser.find_elements("css selector", "#cases tbody tr[data-case-id]")
        assert browser.execute_script("return sessionStorage.getItem('goodfaith.key')") is None
    finally:
        browser.quit()


def test_the_page_is_served_without_data_and_with_a_strict_policy(tmp_path: Path) -> None:
    """GET /dashboard needs no key, carries no case data, and forbids inline script."""
    from simulator.serving import asgi_client
    from tests.conftest import at

    c, _clock, _fax, _d = make_container(tmp_path, at("2026-04-17T09:00:00-04:00"))
    try:
        services.intake(c, notification())
        with asgi_client(create_app(lambda: c)) as http:
            page = http.get("/dashboard")
            script = http.get("/dashboard.js")
    finally:
        c.close()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "OPP-2026-000123" not in page.text and "Jane" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "sessionStorage" in script.text
    _ = datetime  # (imported for the fixtures' types)


def _white_scan() -> bytes:
    """A reply that is a scan of a white sheet: accepted, flagged blank_pages, held."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (850, 1100), 255).save(buffer, "PDF", resolution=100)
    return buffer.getvalue()


def test_the_review_queue_is_on_the_dashboard_and_a_release_is_audited(
    day: tuple[Any, str, dict[str, str]], tmp_path: Path
) -> None:
    """A flagged reply waits in the review queue on the page; the release button, with the
    reviewer's name, takes it out of the queue and is audited under that name."""
    from sqlalchemy import select

    from storage.db import transaction
    from storage.models import AuditEvent, RecordRequest
    from tests.fakes import fax_received

    c, url, ops = day
    with transaction(c.sessions) as s:
        r = s.scalars(select(RecordRequest).where(RecordRequest.status == "open")).first()
        assert r is not None, "a day in, some request should still be open"
        sender = next(ch["destination"] for ch in r.channels if ch.get("kind") == "fax")
    c.fax.media["white"] = _white_scan()  # type: ignore[attr-defined]
    c.dispatcher.enqueue(
        services.record_inbound_fax(c, fax_received("in-white", "white", c.clock.now(), sender))
    )
    queue = services.review_queue(c)
    assert [d.flags for d in queue] == [["blank_pages"]]
    document_id = queue[0].document_id
    browser = _browser()
    try:
        browser.get(f"{url}/dashboard?refresh=1")
        _wait(lambda: browser.find_element("id", "key-panel").is_displayed())
        browser.find_element("id", "key-input").send_keys(
            ops["Authorization"].removeprefix("Bearer ")
        )
        browser.find_element("css selector", "#key-form button").click()
        row = f'#review-table tr[data-document-id="{document_id}"]'
        _wait(lambda: browser.find_elements("css selector", row))
        assert "blank_pages" in browser.find_element("css selector", row).text
        browser.save_screenshot(str(tmp_path / "review.png"))
        release = f'{row} button[data-action="release"]'
        _click(browser, release)  # no name yet: refused
        _wait(lambda: "reviewer" in browser.find_element("id", "review-error").text)
        assert services.review_queue(c)
        browser.find_element("id", "review-by").send_keys("Dana Ops")
        _click(browser, release)
        _wait(lambda: not browser.find_elements("css selector", row))
    finally:
        browser.quit()
    assert services.review_queue(c) == []
    with transaction(c.sessions) as s:
        kinds = [
            (e.kind, e.detail.get("reviewer"))
            for e in s.scalars(select(AuditEvent).where(AuditEvent.kind == "document.released"))
        ]
    assert kinds == [("document.released", "Dana Ops")]
