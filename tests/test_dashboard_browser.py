"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against ``trioqueue dashboard`` and ``trioqueue run`` as child processes.

Plain sync tests: Playwright's sync API blocks, so nothing here runs on the test's Trio
loop. One browser and one dashboard (with a token, on loopback) serve the whole module;
each test opens its own browser context. Screenshots of every page go to
``<tmp>/screenshots/``; with ``TRIOQUEUE_SCREENSHOTS=DIR`` set they are also written to
DIR (docs/images/dashboard/ holds the committed ones).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, free_port
from tests.dashboard_app import Step, Work, app
from trioqueue._keys import PartitionKeys
from trioqueue.dashboard._history import history_key

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium; .ci/run does)"
)
TRIOQUEUE = shutil.which("trioqueue", path=str(Path(sys.executable).parent)) or "trioqueue"
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "browser-token-" + secrets.token_hex(8)
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2;alert(1)">'


class Project:
    """The config file, the dashboard process and the means to run a worker."""

    def __init__(self, server: Server, tmp: Path) -> None:
        self.prefix = f"b{secrets.token_hex(4)}"
        self.url = server.url
        self.dir = tmp
        self.config = tmp / "config.toml"
        self.config.write_text(
            'app = "tests.dashboard_app:app"\n'
            f'[broker]\nurl = "{server.url}"\nprefix = "{self.prefix}"\n'
            "[worker]\nblock = 0.1\nheartbeat_interval = 0.2\nheartbeat_ttl = 1.0\n"
            "shutdown_grace = 2.0\n",
            encoding="utf-8",
        )
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.shots = tmp / "screenshots"
        self.shots.mkdir()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("TRIOQUEUE_BROKER_URL", None)
        env.pop("TRIOQUEUE_DASHBOARD_TOKEN", None)
        return env

    def start_dashboard(self) -> subprocess.Popen[bytes]:
        args = [TRIOQUEUE, "dashboard", str(self.config), "--port", str(self.port)]
        args += ["--token", TOKEN, "--interval", "0.3"]
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env(), stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/login", timeout=1) as r:
                    if r.status == 200:
                        return proc
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "") from None
                time.sleep(0.1)
        proc.kill()
        raise RuntimeError("the dashboard did not start")

    def worker(self, *extra: str) -> subprocess.Popen[bytes]:
        args = [TRIOQUEUE, "run", str(self.config), *extra]
        return subprocess.Popen(args, cwd=ROOT, env=self.env(), stderr=subprocess.DEVNULL)

    def fake_history(self, queue: str) -> None:
        """Per-minute history for the last half hour, as workers will write it."""
        import redis

        with redis.Redis.from_url(self.url) as r:
            minute = int(r.time()[0]) // 60
            for ago in range(30):
                key = history_key(PartitionKeys(self.prefix, queue, 0), minute - ago)
                r.hset(key, mapping={"succeeded": 40 + (ago * 7) % 25, "failed": ago % 4})
                r.expire(key, 3600)

    def client(self) -> Any:
        return app.connect_sync(self.url, prefix=self.prefix)

    def shot(self, page: Any, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        docs = os.environ.get("TRIOQUEUE_SCREENSHOTS")
        if docs:
            Path(docs).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.shots / f"{name}.png", Path(docs) / f"{name}.png")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def project(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = Project(server, tmp_path_factory.mktemp("dashboard"))
    proc = p.start_dashboard()
    try:
        yield p
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, project: Project) -> Iterator[Any]:
    """A logged-in page, recording every dialog it was shown."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    pg = context.new_page()
    pg.dialogs = []

    def on_dialog(dialog: Any) -> None:
        pg.dialogs.append(dialog.message)
        dialog.accept()

    pg.on("dialog", on_dialog)
    pg.goto(f"{project.base}/login")
    pg.fill("#token", TOKEN)
    pg.click("text=Log in")
    pg.wait_for_url(f"{project.base}/")
    try:
        yield pg
    finally:
        context.close()


def queue_cell(page: Any, queue: str, field: str) -> Any:
    name = page.locator(f"a:text-is('{queue}')")
    row = page.locator("table[data-rows=queues] tbody tr", has=name)
    return row.first.locator(f'[data-f="{field}"]')


def test_overview_shows_backlog_and_updates_when_a_worker_drains_it(
    page: Any, project: Project
) -> None:
    """Jobs sent show as queued; a worker draining them brings it to 0 without a reload."""
    with project.client() as client:
        client.send_many([Work(f"job {i}") for i in range(7)])
        client.send(Step(1), key="customer-42", delay=3600)
    project.fake_history("work")
    page.reload()
    expect = playwright_api.expect
    expect(queue_cell(page, "work", "queued")).to_have_text("7", timeout=10_000)
    expect(queue_cell(page, "work", "state")).to_have_text("active")
    expect(page.locator("#chart svg rect.ok").first).to_be_attached(timeout=10_000)
    project.shot(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    project.shot(page, "overview-phone")
    page.set_viewport_size({"width": 1200, "height": 800})
    worker = project.worker()
    try:
        expect(queue_cell(page, "work", "queued")).to_have_text("0", timeout=20_000)
        expect(page.locator("table[data-rows=members] tbody tr").first).to_contain_text(
            "work", timeout=10_000
        )
        page.goto(f"{project.base}/workers")
        expect(page.locator("table[data-rows=members] tbody tr").first).to_contain_text("work")
        project.shot(page, "workers")
        page.goto(f"{project.base}/queues/ordered")
        parts = page.locator("table[data-rows=partitions] tbody tr")
        expect(parts).to_have_count(2)
        expect(parts.first.locator('[data-f="owner"]')).not_to_have_text("-", timeout=10_000)
        expect(page.locator("table[data-rows=delayed_jobs] tbody tr")).to_contain_text("Step")
        project.shot(page, "queue")
    finally:
        stop(worker)
    assert page.dialogs == []


def dead_letter(project: Project, text: str) -> str:
    """Send a job that fails at once; run a worker until it is dead; its job id."""
    with project.client() as client:
        job = client.send(Work(text, fail=True))
        subprocess.run(
            [TRIOQUEUE, "run", str(project.config), "-q", "work", "--burst"],
            cwd=ROOT, env=project.env(), check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        assert client.status(job).state == "failed"
        return str(job.id)


def test_retrying_a_dead_letter_from_its_page_moves_the_job_back(
    page: Any, project: Project
) -> None:
    """The Retry button of a dead letter re-sends it: it leaves the page, the job queues."""
    job_id = dead_letter(project, "retry me")
    page.goto(f"{project.base}/dead/work")
    row = page.locator("table[data-rows=items] tbody tr", has=page.locator(f"text={job_id}"))
    playwright_api.expect(row).to_have_count(1)
    project.shot(page, "dead-letters")
    row.locator("button[data-act=retry-one]").click()
    playwright_api.expect(row).to_have_count(0, timeout=10_000)
    page.goto(f"{project.base}/")
    playwright_api.expect(queue_cell(page, "work", "queued")).to_have_text("1", timeout=10_000)
    assert page.dialogs == []


def test_message_payloads_are_shown_as_text_and_run_nothing(page: Any, project: Project) -> None:
    """<script> and <img onerror> in a body and an error show as text on the dead-letter
    and job pages; no dialog opens and the payload's global flag stays undefined."""
    job_id = dead_letter(project, XSS)
    page.goto(f"{project.base}/dead/work")
    cell = page.locator("table[data-rows=items] td.k-text", has_text="window.__pwned=1").first
    playwright_api.expect(cell).to_be_visible()
    assert "<script>window.__pwned=1</script>" in page.inner_text("table[data-rows=items]")
    tracebacks = page.locator("table[data-rows=items] details pre").all_text_contents()
    assert any("<img src=x onerror=" in t for t in tracebacks)
    page.goto(f"{project.base}/jobs/{job_id}")
    playwright_api.expect(page.locator("pre[data-f=error]")).to_contain_text("<img src=x onerror=")
    project.shot(page, "job")
    page.wait_for_timeout(700)  # two polls: re-rendered from the API too
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main img, main script").count() == 0
    assert page.dialogs == []


def test_without_the_token_no_page_or_api_returns_data(browser: Any, project: Project) -> None:
    """A browser that never logged in gets the login form for pages, 401 from the API."""
    context = browser.new_context()
    try:
        pg = context.new_page()
        for path in ("/", "/queues/work", "/workers", "/dead/work", "/jobs/x"):
            pg.goto(project.base + path)
            assert pg.url == f"{project.base}/login", path
            assert "work" not in pg.content()
        for path in ("/api/status", "/api/overview", "/api/queues/work", "/api/dead/work"):
            r = context.request.get(project.base + path)
            assert r.status == 401, path
            assert "work" not in r.text()
        r = context.request.post(f"{project.base}/api/dead/work/purge", data={"all": True})
        assert r.status == 401
    finally:
        context.close()


def test_post_without_the_csrf_token_is_refused(page: Any, project: Project) -> None:
    """A logged-in browser's POST without the X-CSRF-Token header is refused (403)."""
    status = page.evaluate(
        """() => fetch('/api/queues/work/pause', {method: 'POST'}).then(r => r.status)"""
    )
    assert status == 403
    with project.client() as client:
        assert client.resume("work") is False  # it was never paused
