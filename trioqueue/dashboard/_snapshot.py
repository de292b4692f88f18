"""One snapshot of the broker per interval, shared by every page and API call.

``Snapshotter.run`` is the only loop of the dashboard: it takes a ``Snapshot`` (the
``trioqueue status --json`` document plus what the pages need besides: per-queue totals,
members' heartbeat times, ordered partitions' lease epochs, the next delayed jobs and
the per-minute history), then sleeps for the interval, or less when an action asked for
a fresh one (``refresh_soon``). However many browsers are open, the broker sees one
snapshot's commands per interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import orjson
import trio

from trioqueue import _scripts as scripts
from trioqueue._connection import Redis, as_text
from trioqueue._keys import GROUP, PartitionKeys, members_key
from trioqueue._redact import redact
from trioqueue._status import collect_status
from trioqueue.dashboard._history import HistoryReader, read_history

__all__ = ["Snapshot", "Snapshotter", "take_snapshot"]

log = logging.getLogger("trioqueue.dashboard")
# Delayed jobs shown per partition on a queue's page, soonest first.
DELAYED_SHOWN = 10
# Running jobs shown per partition on a queue's page, longest running first.
RUNNING_SHOWN = 20

History = Callable[[Redis, str, str, int, int], Awaitable[list[dict[str, Any]] | None]]


@attrs.frozen
class Snapshot:
    """What the broker looked like at ``taken_at`` (epoch seconds, server clock).

    ``status`` is exactly the ``trioqueue status --json`` document; ``queues`` adds
    per-queue totals, ``delayed`` (the next jobs due) and ``history`` (None: no history
    yet); ``members`` adds host, pid and heartbeat expiry to the status' members.
    ``took`` is how long taking it took, in seconds.
    """

    taken_at: float
    took: float
    status: dict[str, Any]
    queues: dict[str, dict[str, Any]]
    members: list[dict[str, Any]]


async def take_snapshot(
    redis: Redis,
    prefix: str,
    queues: Sequence[str],
    ordered: Sequence[str],
    history: History = read_history,
) -> Snapshot:
    """Read one ``Snapshot`` of ``queues`` from the broker."""
    started = time.perf_counter()
    now_ms = await scripts.run(redis, scripts.server_time()) // 1000
    status = await collect_status(redis, prefix, queues, ordered)
    scores = await redis.execute("ZRANGEBYSCORE", members_key(prefix), now_ms, "+inf", "WITHSCORES")
    expiry = {as_text(scores[i]): float(scores[i + 1]) for i in range(0, len(scores or ()), 2)}
    running: dict[str, int] = {}
    for q in status["queues"].values():
        for p in q["partitions"]:
            for c in p["consumers"]:
                running[c["name"]] = running.get(c["name"], 0) + c["pending"]
    members = [
        {**_member(m, expiry.get(m["id"]), now_ms), "running": running.get(m["id"], 0)}
        for m in status["members"]
    ]
    out: dict[str, dict[str, Any]] = {}
    for name, q in status["queues"].items():
        parts = q["partitions"]
        keys = [PartitionKeys(prefix, name, p["index"]) for p in parts]
        epochs: list[Any] = [None] * len(keys)
        if q["mode"] == "ordered" and keys:
            epochs = await redis.pipeline([("GET", k.epoch) for k in keys])
        due = await redis.pipeline(
            [("ZRANGE", k.delayed, 0, DELAYED_SHOWN - 1, "WITHSCORES") for k in keys]
        )
        out[name] = {
            "name": name,
            "mode": q["mode"],
            "paused": q["paused"],
            "state": "paused" if q["paused"] else "active",
            "partitions": [
                {**p, "epoch": int(e) if e is not None else None}
                for p, e in zip(parts, epochs, strict=True)
            ],
            **_totals(parts),
            "delayed_jobs": _delayed(due, [p["index"] for p in parts]),
            "running_jobs": await _running(redis, keys, now_ms),
            "history": await history(redis, prefix, name, len(parts), now_ms),
        }
    return Snapshot(
        taken_at=now_ms / 1000,
        took=time.perf_counter() - started,
        status=status,
        queues=out,
        members=members,
    )


def _totals(parts: list[dict[str, Any]]) -> dict[str, int]:
    sums = {f: sum(p[f] for p in parts) for f in ("backlog", "pending", "queued", "delayed")}
    return {**sums, "running": sums["pending"], "dead": sum(p["dead"] for p in parts)}


def _delayed(replies: list[Any], indexes: list[int]) -> list[dict[str, Any]]:
    jobs = []
    for index, reply in zip(indexes, replies, strict=True):
        if not isinstance(reply, list):
            continue
        for i in range(0, len(reply), 2):
            try:
                doc = orjson.loads(reply[i])
            except orjson.JSONDecodeError:
                doc = {}
            jobs.append(
                {
                    "job_id": str(doc.get("id", "")),
                    "type": str(doc.get("type", "")),
                    "attempt": doc.get("attempt", 1),
                    "due_at": float(reply[i + 1]) / 1000,
                    "partition": index,
                }
            )
    jobs.sort(key=lambda j: j["due_at"])
    return jobs[:DELAYED_SHOWN]


async def _running(redis: Redis, keys: list[PartitionKeys], now_ms: int) -> list[dict[str, Any]]:
    """The jobs delivered and not yet acknowledged (up to ``RUNNING_SHOWN`` per
    partition), oldest delivery first, with their progress: three pipelined round trips
    per queue with running jobs, one per queue without."""
    pending = await redis.pipeline(
        [("XPENDING", k.stream, GROUP, "-", "+", RUNNING_SHOWN) for k in keys]
    )
    found: list[tuple[PartitionKeys, list[Any]]] = [
        (k, row)
        for k, rows in zip(keys, pending, strict=True)
        if isinstance(rows, list)
        for row in rows
    ]
    if not found:
        return []
    entries = await redis.pipeline([("XRANGE", k.stream, row[0], row[0]) for k, row in found])
    jobs: list[dict[str, Any]] = []
    for (k, row), entry in zip(found, entries, strict=True):
        fields: dict[str, str] = {}
        if isinstance(entry, list) and entry:
            flat = entry[0][1] or []
            fields = {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat), 2)}
        jobs.append(
            {
                "job_id": fields.get("id", ""),
                "type": fields.get("type", ""),
                "worker": as_text(row[1]),
                "running_for": round(int(row[2]) / 1000, 1),
                "deliveries": int(row[3]),
                "partition": k.partition,
                "started_at": (now_ms - int(row[2])) / 1000,
            }
        )
    jobs.sort(key=lambda j: float(j["running_for"]), reverse=True)
    jobs = jobs[:RUNNING_SHOWN]
    # Their latest report_progress() values: a third round trip, only for jobs shown.
    keyed = {k.partition: k for k in keys}
    reports = await redis.pipeline(
        [("GET", keyed[j["partition"]].progress(j["job_id"])) for j in jobs]
    )
    for j, report in zip(jobs, reports, strict=True):
        j["progress"] = _progress(report)
    return jobs


def _progress(report: Any) -> Any:
    """A stored progress value (JSON), or its text if it is not JSON; None if none."""
    if not isinstance(report, bytes | str):
        return None
    try:
        return orjson.loads(report)
    except orjson.JSONDecodeError:
        return as_text(report)


def _member(doc: dict[str, Any], expires_ms: float | None, now_ms: int) -> dict[str, Any]:
    host, _, rest = doc["id"].partition(":")
    pid = rest.partition(":")[0]
    owned = sum(len(v) for v in doc["partitions"].values())
    return {
        **doc,
        "host": host,
        "pid": pid,
        "owned": owned,
        "expires_in": None if expires_ms is None else round((expires_ms - now_ms) / 1000, 1),
    }


class Snapshotter:
    """Keeps the latest ``Snapshot``; ``run`` is its loop (owned by the dashboard)."""

    def __init__(
        self,
        prefix: str,
        queues: Sequence[str],
        ordered: Sequence[str],
        *,
        interval: float,
        url: str = "",
        history: History | None = None,
    ) -> None:
        self.prefix, self.queues, self.ordered = prefix, list(queues), list(ordered)
        self.interval = interval
        self.latest: Snapshot | None = None
        self.error: str | None = None
        self.url = url
        self._history = history if history is not None else HistoryReader()
        self._wake = trio.Event()
        self._changed = trio.Event()

    def refresh_soon(self) -> None:
        """Take the next snapshot now (after an action), not at the end of the interval."""
        self._wake.set()

    async def next_snapshot(self) -> Snapshot | None:
        """Wait for the snapshot after the current one (tests and actions use it)."""
        await self._changed.wait()
        return self.latest

    async def run(
        self, redis: Redis, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Take a snapshot, report ready, then one per interval until cancelled. A
        failed snapshot keeps the last good one and records the error for the pages."""
        await self._refresh(redis)
        task_status.started()
        while True:
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._refresh(redis)

    async def _refresh(self, redis: Redis) -> None:
        try:
            snap = await take_snapshot(redis, self.prefix, self.queues, self.ordered, self._history)
        except Exception as exc:  # any broker failure: keep serving the last snapshot
            error = redact(f"{type(exc).__name__}: {exc}", self.url)
            if self.error is None:
                log.warning(
                    "dashboard snapshot failed: %s; retrying in %.1f s", error, self.interval
                )
            self.error = error
        else:
            if self.error is not None:
                log.info("dashboard snapshot works again")
            self.latest, self.error = snap, None
        changed, self._changed = self._changed, trio.Event()
        changed.set()
