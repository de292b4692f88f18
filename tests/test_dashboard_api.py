"""The dashboard's JSON API against the real server, through its ASGI app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

import trioqueue
from tests.conftest import make_config, wait_for
from tests.dashboard_app import Hold, Work, app
from trioqueue.dashboard import Dashboard

TOKEN = "test-token-0123456789"


@pytest.fixture
def dash_config(server: Any, prefix: str) -> trioqueue.Config:
    return make_config(server.url, prefix, dashboard={"interval": 0.1})


@pytest.fixture
async def dash(dash_config: trioqueue.Config) -> AsyncIterator[Dashboard]:
    d = Dashboard(dash_config, app=app)
    async with d.running():
        yield d


def http(d: Dashboard, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=d.asgi), base_url="http://127.0.0.1", headers=headers
    )


async def csrf_of(client: httpx.AsyncClient) -> str:
    page = await client.get("/")
    marker = 'name="csrf-token" content="'
    return page.text.split(marker, 1)[1].split('"', 1)[0]


async def fresh(d: Dashboard) -> None:
    """Wait for a snapshot begun after this call (the one under way may predate it)."""
    for _ in range(2):
        d.snapshots.refresh_soon()
        await d.snapshots.next_snapshot()


async def test_api_status_is_the_status_json_document(dash: Dashboard) -> None:
    """GET /api/status returns what `trioqueue status --json` prints, from the snapshot."""
    from trioqueue._status import collect_status

    async with http(dash) as client:
        got = (await client.get("/api/status")).json()
    want = await collect_status(
        dash.client.redis, dash.config.broker.prefix, dash.queues, ["ordered"]
    )
    # The last minutes' history and rates are read at each call's own time: equal but
    # for the window, which moves if a minute ended between the two reads.
    for doc in (got, want):
        for q in doc["queues"].values():
            assert len(q.pop("history")) == 5 and "succeeded_per_second" in q.pop("rates")
    assert got == want
    assert set(got["queues"]) == {"work", "ordered", "hold"}


async def test_api_counts_sends_runs_and_failures(
    dash: Dashboard, dash_config: trioqueue.Config
) -> None:
    """Backlog after sends; after a worker ran them, no backlog and the failures dead."""
    await dash.client.send_many([Work(f"w{i}") for i in range(5)] + [Work("bad", fail=True)])
    await dash.client.send(Work("later"), delay=60)
    await fresh(dash)
    async with http(dash) as client:
        q = (await client.get("/api/queues/work")).json()
        assert (q["backlog"], q["queued"], q["delayed"], q["dead"]) == (6, 6, 1, 0)
        assert q["state"] == "active"
        assert q["settings"]["retries"] == 0
        assert [j["type"] for j in q["delayed_jobs"]] == ["tests.dashboard_app.Work"] or len(
            q["delayed_jobs"]
        ) == 1
        sup = trioqueue.Supervisor(app, dash_config, queues=["work"])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

            async def drained() -> bool:
                await fresh(dash)
                doc = (await client.get("/api/queues/work")).json()
                return bool(doc["backlog"] == 0 and doc["dead"] == 1)

            await wait_for(drained)
            overview = (await client.get("/api/overview")).json()
            assert len(overview["members"]) == 1
            assert overview["members"][0]["queues"] == ["work"]
            workers = (await client.get("/api/workers")).json()
            assert workers["members"][0]["pid"].isdigit()
            sup.shutdown()
        # The acknowledgements wrote the minute's history the chart shows.
        assert sum(m["succeeded"] for m in overview["queues"][0]["history"]) == 5


async def test_api_job_lookup_by_id(dash: Dashboard, dash_config: trioqueue.Config) -> None:
    """A job is found by id with its state; an unknown id is a 404 with state unknown."""
    job = await dash.client.send(Work("look"))
    async with http(dash) as client:
        doc = (await client.get(f"/api/jobs/{job.id}")).json()
        assert (doc["state"], doc["queue"], doc["progress"]) == ("queued", "work", None)
        sup = trioqueue.Supervisor(app, dash_config, queues=["work"])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert await dash.client.result(job, timeout=10) == "LOOK"
            sup.shutdown()
        doc = (await client.get(f"/api/jobs/{job.id}")).json()
        assert (doc["state"], doc["result"], doc["attempts"]) == ("succeeded", "LOOK", 1)
        missing = await client.get("/api/jobs/no-such-job")
        assert missing.status_code == 404
        assert missing.json()["state"] == "unknown"


async def dead_letters(dash: Dashboard, dash_config: trioqueue.Config, n: int) -> None:
    await dash.client.send_many([Work(f"d{i}", fail=True) for i in range(n)])
    sup = trioqueue.Supervisor(app, dash_config, queues=["work"])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)

        async def all_dead() -> bool:
            return len(await dash.client.dead_letters("work")) == n

        await wait_for(all_dead)
        sup.shutdown()


async def test_api_retries_and_purges_dead_letters(
    dash: Dashboard, dash_config: trioqueue.Config
) -> None:
    """Retry one by id moves it back to the queue; purge all empties the dead letters."""
    await dead_letters(dash, dash_config, 3)
    async with http(dash) as client:
        token = await csrf_of(client)
        page = (await client.get("/api/dead/work?page=1")).json()
        assert len(page["items"]) == 3
        assert page["items"][0]["error_type"] == "ValueError"
        job = (await client.get(f"/api/jobs/{page['items'][0]['job_id']}")).json()
        assert job["state"] == "failed"
        assert "ValueError: failed on purpose" in job["traceback"]
        first = page["items"][0]["id"]
        done = await client.post(
            "/api/dead/work/retry", json={"ids": [first]}, headers={"X-CSRF-Token": token}
        )
        assert done.json() == {"queue": "work", "resent": 1, "skipped": 0}
        await fresh(dash)
        q = (await client.get("/api/queues/work")).json()
        assert (q["queued"], q["dead"]) == (1, 2)
        purged = await client.post(
            "/api/dead/work/purge", json={"all": True}, headers={"X-CSRF-Token": token}
        )
        assert purged.json()["purged"] == 2
        assert (await client.get("/api/dead/work")).json()["items"] == []
        bad = await client.post("/api/dead/work/purge", json={}, headers={"X-CSRF-Token": token})
        assert bad.status_code == 400


async def test_api_pauses_and_resumes_a_queue(dash: Dashboard) -> None:
    """POST pause then resume flips the queue's state in the next snapshot."""
    async with http(dash) as client:
        token = {"X-CSRF-Token": await csrf_of(client)}
        assert (await client.post("/api/queues/work/pause", headers=token)).json()["changed"]
        await fresh(dash)
        assert (await client.get("/api/queues/work")).json()["state"] == "paused"
        assert (await client.get("/api/status")).json()["queues"]["work"]["paused"] is True
        assert (await client.post("/api/queues/work/resume", headers=token)).json()["changed"]
        await fresh(dash)
        assert (await client.get("/api/queues/work")).json()["state"] == "active"
        assert (await client.post("/api/queues/nope/pause", headers=token)).status_code == 404


async def test_api_cancels_a_waiting_job(dash: Dashboard) -> None:
    """POST /api/jobs/{id}/cancel removes a job still waiting."""
    job = await dash.client.send(Work("x"))
    async with http(dash) as client:
        token = {"X-CSRF-Token": await csrf_of(client)}
        done = await client.post(f"/api/jobs/{job.id}/cancel", headers=token)
    assert done.json()["outcome"] == "removed"


async def test_post_without_csrf_token_or_from_another_origin_is_refused(dash: Dashboard) -> None:
    """No CSRF header, a wrong one, or a foreign Origin: 403 and nothing changes."""
    async with http(dash) as client:
        token = await csrf_of(client)
        assert (await client.post("/api/queues/work/pause")).status_code == 403
        wrong = {"X-CSRF-Token": "0" * 64}
        assert (await client.post("/api/queues/work/pause", headers=wrong)).status_code == 403
        foreign = {"X-CSRF-Token": token, "Origin": "http://evil.example"}
        assert (await client.post("/api/queues/work/pause", headers=foreign)).status_code == 403
    assert not await dash.client.resume("work")  # was never paused


async def test_token_guards_every_page_and_api(dash_config: trioqueue.Config) -> None:
    """With a token: 401 from the API and a redirect to login from pages without it;
    a bearer token or the login cookie lets a request through."""
    d = Dashboard(dash_config, app=app, token=TOKEN)
    async with d.running():
        async with http(d) as client:
            for path in ("/api/status", "/api/queues/work", "/api/dead/work", "/api/jobs/x"):
                r = await client.get(path)
                assert r.status_code == 401, path
                assert "queues" not in r.text
            page = await client.get("/")
            assert page.status_code == 303
            assert page.headers["location"] == "/login"
            assert (await client.post("/api/queues/work/pause")).status_code == 401
            form = await client.get("/login")
            csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            wrong = await client.post("/login", data={"token": "nope", "csrf": csrf})
            assert wrong.status_code == 401
            ok = await client.post("/login", data={"token": TOKEN, "csrf": csrf})
            assert ok.status_code == 303
            assert "HttpOnly" in ok.headers["set-cookie"]
            assert "SameSite=Strict" in ok.headers["set-cookie"]
            assert (await client.get("/api/status")).status_code == 200
        async with http(d, Authorization=f"Bearer {TOKEN}") as bearer:
            assert (await bearer.get("/api/status")).status_code == 200
            assert (await bearer.post("/api/queues/work/pause")).status_code == 200


async def test_pages_send_security_headers_and_refuse_foreign_hosts(dash: Dashboard) -> None:
    """A strict CSP (no inline script), nosniff, no framing; no token = loopback only."""
    async with http(dash) as client:
        for path in ("/", "/workers", "/queues/work", "/dead/work", "/jobs", "/api/status"):
            r = await client.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/static/dashboard.js")).status_code == 200
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dash.asgi), base_url="http://dash.example.com"
    ) as foreign:
        assert (await foreign.get("/api/status")).status_code == 403


async def test_dashboard_mounts_inside_another_asgi_app(dash_config: trioqueue.Config) -> None:
    """Mounted under /ops/queues: its API and pages answer there, links and cookies
    carry the prefix, and the host app's lifespan runs the dashboard."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    d = Dashboard(dash_config, app=app)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with d.running():
            yield

    async def home(_: object) -> PlainTextResponse:
        return PlainTextResponse("host app")

    host = Starlette(routes=[Route("/", home), Mount("/ops/queues", app=d.asgi)], lifespan=lifespan)
    async with (
        lifespan(host),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host), base_url="http://localhost"
        ) as client,
    ):
        assert (await client.get("/")).text == "host app"
        page = await client.get("/ops/queues/")
        queues = (await client.get("/ops/queues/api/status")).json()["queues"]
        assert set(queues) == {"work", "ordered", "hold"}
        assert 'href="/ops/queues/queues/work"' in page.text
        assert 'src="/ops/queues/static/dashboard.js"' in page.text
        assert "Path=/ops/queues" in page.headers["set-cookie"]
        token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        r = await client.post("/ops/queues/api/queues/work/pause", headers={"X-CSRF-Token": token})
        assert r.json()["changed"] is True


async def test_api_shows_running_jobs_and_cancels_one(
    dash: Dashboard, dash_config: trioqueue.Config
) -> None:
    """A job running now is on its queue's running list with its worker and progress
    (shown on the page as a percentage), the worker counts it, and cancelling it
    through the API asks the worker to stop it."""
    job = await dash.client.send(Hold(60, progress=0.25))
    sup = trioqueue.Supervisor(app, dash_config, queues=["hold"])
    async with trio.open_nursery() as nursery, http(dash) as client:
        await nursery.start(sup.run)

        async def running() -> bool:
            await fresh(dash)
            jobs = (await client.get("/api/queues/hold")).json()["running_jobs"]
            return jobs != [] and jobs[0]["progress"] is not None  # reported once running

        await wait_for(running)
        q = (await client.get("/api/queues/hold")).json()
        [entry] = q["running_jobs"]
        assert (entry["job_id"], entry["worker"]) == (job.id, sup.member_id)
        assert entry["progress"] == 0.25
        page = (await client.get("/queues/hold")).text
        assert '<span data-f="progress" data-k="progress">25 %</span>' in page
        [member] = (await client.get("/api/workers")).json()["members"]
        assert member["running"] == 1
        token = {"X-CSRF-Token": await csrf_of(client)}
        done = await client.post(f"/api/jobs/{job.id}/cancel", headers=token)
        assert done.json()["outcome"] == "running"

        async def cancelled() -> bool:
            return (await dash.client.status(job)).state == "cancelled"

        await wait_for(cancelled)
        sup.shutdown()


def test_loopback_means_loopback_addresses_and_localhost_only() -> None:
    """A name that merely starts with 127. is not loopback (DNS rebinding)."""
    from trioqueue.dashboard._security import host_name, is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["127.example.com", "0.0.0.0", "10.0.0.1", "example.com"]))
    assert host_name("[::1]:8080") == "::1"
    assert host_name("localhost:8080") == "localhost"


async def test_api_shows_owner_and_lease_epoch_of_ordered_partitions(
    dash: Dashboard, dash_config: trioqueue.Config
) -> None:
    """An ordered queue's partitions show the worker that owns each and the lease epoch."""
    sup = trioqueue.Supervisor(app, dash_config, queues=["ordered"])
    async with trio.open_nursery() as nursery, http(dash) as client:
        await nursery.start(sup.run)

        async def owned() -> bool:
            await fresh(dash)
            parts = (await client.get("/api/queues/ordered")).json()["partitions"]
            return all(p["owner"] == sup.member_id for p in parts)

        await wait_for(owned)
        q = (await client.get("/api/queues/ordered")).json()
        assert q["mode"] == "ordered"
        assert [p["index"] for p in q["partitions"]] == [0, 1]
        assert all(isinstance(p["epoch"], int) and p["epoch"] >= 1 for p in q["partitions"])
        [member] = (await client.get("/api/workers")).json()["members"]
        assert member["owned"] == 2
        sup.shutdown()


def http_from(d: Dashboard, address: str, **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=d.asgi, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers)


async def test_wrong_tokens_from_one_address_are_throttled(dash_config: trioqueue.Config) -> None:
    """Five wrong tokens from an address, by form or bearer header: it gets 429 with
    Retry-After, the right token included, while another address logs in."""
    d = Dashboard(dash_config, app=app, token=TOKEN)
    async with d.running():
        async with http_from(d, "10.0.0.1") as guesser:
            form = await guesser.get("/login")
            csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            for n in range(4):
                wrong = await guesser.post("/login", data={"token": f"guess{n}", "csrf": csrf})
                assert wrong.status_code == 401
            bad = await guesser.get("/api/status", headers={"Authorization": "Bearer guess4"})
            assert bad.status_code == 401
            refused = await guesser.post("/login", data={"token": TOKEN, "csrf": csrf})
            assert refused.status_code == 429
            assert 0 < int(refused.headers["retry-after"]) <= 60
            assert "too many wrong tokens" in refused.text
            assert "tq_auth" not in " ".join(refused.headers.get_list("set-cookie"))
            api = await guesser.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
            assert api.status_code == 429 and "queues" not in api.text
        async with http_from(d, "10.0.0.2", Authorization=f"Bearer {TOKEN}") as other:
            assert (await other.get("/api/status")).status_code == 200


def test_throttle_forgets_after_its_window_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An address may try again once the window of its first failure passed; the
    table keeps at most MAX_ADDRESSES addresses, dropping the oldest."""
    from trioqueue.dashboard import _throttle

    now = [100.0]
    throttle = _throttle.Throttle(limit=2, window=10.0, clock=lambda: now[0])
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    now[0] = 104.2
    throttle.failed("a")
    assert throttle.retry_after("a") == 6  # until 110, counted from the first failure
    now[0] = 110.0
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == 0  # a new window: one failure so far
    monkeypatch.setattr(_throttle, "MAX_ADDRESSES", 3)
    for address in ("b", "c", "d"):
        throttle.failed(address)
        throttle.failed(address)
    assert list(throttle._failures) == ["b", "c", "d"]  # "a", the oldest, was dropped
    assert throttle.retry_after("b") > 0
