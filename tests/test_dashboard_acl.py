"""The dashboard as least-privilege ACL users: read-only, and one that may act.

The command lists are documented in docs/how-to/dashboard.md; keep both in step.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import trio

import trioqueue
from tests.conftest import Server, make_config, wait_for
from tests.dashboard_app import Work, app
from tests.test_security import acl_user
from trioqueue.dashboard import Dashboard

DASHBOARD_READ_COMMANDS = (
    "+ping +hello +client|setname +client|setinfo +evalsha +script|load +time +get +hget "
    "+hmget +exists +xlen +xrange +xrevrange +xpending +xinfo|consumers +zcard +zrange "
    "+zrangebyscore +hgetall"
)
# Retry and purge dead letters, pause and resume queues, cancel jobs.
DASHBOARD_ACT_COMMANDS = "+xadd +xdel +del +set +zrem +publish +pexpire +rpush"


async def test_dashboard_runs_read_only_and_acts_with_the_act_commands(
    server: Server, prefix: str, redis: Any
) -> None:
    """A read-only ACL user serves every read; its actions are refused (403); the act
    commands let retry, purge, pause, resume and cancel work."""
    config = make_config(server.url, prefix, dashboard={"interval": 0.1})
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Work("dead", fail=True))
        sup = trioqueue.Supervisor(app, config, queues=["work"])
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

            async def dead() -> bool:
                return len(await client.dead_letters("work")) == 1

            await wait_for(dead)
            sup.shutdown()
        waiting = await client.send(Work("waiting"))
    for name, commands, may_act in (
        ("ro", DASHBOARD_READ_COMMANDS, False),
        ("rw", f"{DASHBOARD_READ_COMMANDS} {DASHBOARD_ACT_COMMANDS}", True),
    ):
        password = secrets.token_hex(8)
        await acl_user(redis, f"{prefix}-{name}", password, prefix, commands)
        url = f"redis://{prefix}-{name}:{password}@127.0.0.1:{server.port}/0"
        cfg = make_config(url, prefix, dashboard={"interval": 0.1})
        d = Dashboard(cfg, app=app, token="t" * 20)
        async with (
            d.running(),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=d.asgi),
                base_url="http://127.0.0.1",
                headers={"Authorization": "Bearer " + "t" * 20},
            ) as http,
        ):
            assert d.snapshots.error is None
            for path in ("/api/status", "/api/overview", "/api/queues/work", "/api/workers"):
                assert (await http.get(path)).status_code == 200, (name, path)
            letters = (await http.get("/api/dead/work")).json()["items"]
            assert len(letters) == 1
            job = (await http.get(f"/api/jobs/{waiting.id}")).json()
            assert job["state"] == "queued"
            actions = [
                ("/api/queues/work/pause", None),
                ("/api/queues/work/resume", None),
                (f"/api/jobs/{waiting.id}/cancel", None),
                ("/api/dead/work/retry", {"ids": [letters[0]["id"]]}),
                ("/api/dead/work/purge", {"all": True}),
            ]
            for path, body in actions:
                r = await http.post(path, json=body)
                assert r.status_code == (200 if may_act else 403), (name, path, r.text)
