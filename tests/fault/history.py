"""Jepsen-style history for the fault tests: append-only recording and a checker.

Every process (producer, each worker process, the nemesis) appends one JSON line per
event to a file of its own, with one ``os.write`` on an ``O_APPEND`` descriptor before
acting on the result. The page cache survives a SIGKILL of the writer and the files
live outside the broker, so neither a killed worker nor a killed server loses them.

Timestamps are ``time.monotonic_ns()``: CLOCK_MONOTONIC is system-wide on Linux, so
events of different processes can be ordered.

Events (``ev``) and their fields:

- ``send.invoke`` / ``send.ok`` / ``send.fail`` / ``send.info`` (``job``, ``kind``):
  attempted / definitely stored / definitely not stored / outcome unknown (the producer
  retries those with the same job id, which the broker deduplicates);
- ``member`` (``member``, ``pid``): a worker process joined under this member id;
- ``start`` / ``finish`` (``job``, ``member``, ``entry``, ``attempt``, ``deliveries``;
  ``outcome`` on finish: ok, error, cancelled): a handler began / returned;
- ``ack.ok`` / ``ack.fenced`` / ``ack.info``, ``retry.ok`` / ``retry.fenced``,
  ``dlq.ok`` / ``dlq.fenced`` (``job``, ``member``, ``entry``): settlement scripts;
- ``reclaim`` (``member``, ``jobs``, ``dead``): recovery took entries over;
- ``fault`` (``kind``, ``target``, ``t0``, ``t1``, ``inflight``): the nemesis injected a
  fault over ``[t0, t1]``; ``inflight`` are the job ids the broker had delivered to the
  affected members and not yet settled when it struck (read from ``XPENDING``).
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import orjson

GROUP = "trioqueue"
WORKER_FAULTS = ("sigkill", "sigstop", "crash")
NS = 1_000_000_000


def now_ns() -> int:
    return time.monotonic_ns()


class Recorder:
    """Appends events of one process to its own JSONL file."""

    def __init__(self, path: str | os.PathLike[str], proc: str) -> None:
        self.proc = proc
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(self, ev: str, **fields: Any) -> None:
        line = orjson.dumps({"t": now_ns(), "p": self.proc, "ev": ev, **fields}) + b"\n"
        # One write per line: a reader never sees half an event of a live writer.
        os.write(self._fd, line)

    def close(self) -> None:
        os.close(self._fd)


def load(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All events of every ``*.jsonl`` file in ``directory``, ordered by time."""
    events: list[dict[str, Any]] = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a line cut by a kill mid-write carries no settled fact
    events.sort(key=lambda e: e["t"])
    return events


# ---------------------------------------------------------------------- final state


@attrs.define
class FinalState:
    """What the broker holds after the run: the ground truth for settlement."""

    stream_len: int
    pending: int
    delayed: int
    results: set[str]
    dead: dict[str, list[str]]

    @property
    def dead_entries(self) -> int:
        return sum(len(v) for v in self.dead.values())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_final_state(redis: Any, prefix: str, queue: str) -> FinalState:
    """Read stream length, pending count, delayed set, stored results and the DLQ."""
    from trioqueue._keys import PartitionKeys

    keys = PartitionKeys(prefix, queue)
    stream_len = await redis.xlen(keys.stream)
    pending = 0
    if stream_len or await redis.exists([keys.stream]):
        summary = await redis.xpending(keys.stream, GROUP)
        pending = int(summary.pending)
    delayed = await redis.zcard(keys.delayed)
    marker = keys.result("")
    names = [_text(k) async for k in redis.scan_iter(match=f"{marker}*", count=1000)]
    # Dead-lettered and cancelled jobs keep an outcome document too; only a
    # "succeeded" one proves an acknowledgement with the handler's result was applied.
    results: set[str] = set()
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for name, doc in zip(chunk, await redis.mget(chunk), strict=True):
            if doc is not None and orjson.loads(doc).get("state") == "succeeded":
                results.add(name[len(marker) :])
    dead: dict[str, list[str]] = defaultdict(list)
    for entry in await redis.xrange(keys.dead, "-", "+"):
        fields = {_text(k): _text(v) for k, v in entry.field_values.items()}
        dead[fields.get("id", "?")].append(fields.get("error_type", "?"))
    return FinalState(stream_len, pending, delayed, results, dict(dead))


async def pending_jobs(redis: Any, prefix: str, queue: str, consumer: str | None) -> list[str]:
    """Job ids of entries pending in the group (only ``consumer``'s if given)."""
    from trioqueue._keys import PartitionKeys

    keys = PartitionKeys(prefix, queue)
    if not await redis.exists([keys.stream]):
        return []
    pend = await redis.xpending(keys.stream, GROUP, "-", "+", 100_000, consumer=consumer)
    jobs = []
    for p in pend:
        entry_id = _text(p.identifier)
        got = await redis.xrange(keys.stream, entry_id, entry_id)
        if got:
            fields = {_text(k): _text(v) for k, v in got[0].field_values.items()}
            jobs.append(fields.get("id", entry_id))
    return jobs


# ---------------------------------------------------------------------- checker


@attrs.define
class Fault:
    kind: str
    target: str
    t0: int
    t1: int
    inflight: list[str]


@attrs.define
class Report:
    jobs_sent: int = 0
    sent_ok: int = 0
    sent_info: int = 0
    info_retried_ok: int = 0
    sent_fail: int = 0
    info_recovered: int = 0
    info_absent: int = 0
    acked: int = 0
    dead_by_type: dict[str, int] = attrs.Factory(dict)
    lost: list[str] = attrs.Factory(list)
    unexpected: list[str] = attrs.Factory(list)
    double_settled: list[str] = attrs.Factory(list)
    double_enqueued: list[str] = attrs.Factory(list)
    wrongly_dead: dict[str, list[str]] = attrs.Factory(dict)
    missing_dead: list[str] = attrs.Factory(list)
    unsettled: dict[str, int] = attrs.Factory(dict)
    duplicates: dict[str, int] = attrs.Factory(dict)
    unexplained_duplicates: list[str] = attrs.Factory(list)
    stolen: list[str] = attrs.Factory(list)
    faults: list[Fault] = attrs.Factory(list)
    fenced: int = 0
    ack_info: int = 0
    reclaimed: int = 0
    resume: dict[str, list[float]] = attrs.Factory(dict)

    @property
    def duplicated(self) -> int:
        """D: extra completed executions."""
        return sum(n - 1 for n in self.duplicates.values())

    @property
    def in_flight_at_faults(self) -> int:
        """F: jobs held by the members a fault hit, summed over faults."""
        return sum(len(f.inflight) for f in self.faults)

    def faults_by_kind(self) -> dict[str, int]:
        return dict(Counter(f.kind for f in self.faults))

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged sends lost: {self.lost[:10]}")
        if self.unexpected:
            out.append(f"{len(self.unexpected)} jobs never sent were seen: {self.unexpected[:10]}")
        if self.double_settled:
            out.append(f"jobs both acked and dead-lettered: {self.double_settled[:10]}")
        if self.double_enqueued:
            out.append(f"jobs enqueued as two stream entries: {self.double_enqueued[:10]}")
        if self.wrongly_dead:
            out.append(
                f"jobs dead-lettered unexpectedly: {dict(list(self.wrongly_dead.items())[:10])}"
            )
        if self.missing_dead:
            out.append(f"jobs expected in the dead-letter stream are not: {self.missing_dead[:10]}")
        if any(self.unsettled.values()):
            out.append(f"not everything settled: {self.unsettled}")
        if self.unexplained_duplicates:
            out.append(
                f"duplicates of jobs no fault had in flight: {self.unexplained_duplicates[:10]}"
            )
        if self.stolen:
            out.append(
                "jobs taken over though no worker holding them was killed or paused "
                f"(live members declared dead): {self.stolen[:10]}"
            )
        if self.duplicated > self.in_flight_at_faults:
            out.append(f"D={self.duplicated} > F={self.in_flight_at_faults}")
        return out

    def summary(self) -> str:
        resume = ", ".join(
            f"{kind} max {max(v):.2f}s" for kind, v in sorted(self.resume.items()) if v
        )
        dead = ", ".join(f"{k} {v}" for k, v in sorted(self.dead_by_type.items())) or "none"
        return "\n".join(
            [
                f"jobs: sent {self.jobs_sent} (ok {self.sent_ok}, fail {self.sent_fail}; "
                f"{self.sent_info} had an unknown outcome: {self.info_retried_ok} confirmed "
                f"by an idempotent retry, {self.info_recovered} seen anyway, "
                f"{self.info_absent} absent); acked {self.acked}; dead-lettered: {dead}",
                f"faults: {self.faults_by_kind() or 'none'}",
                f"lost {len(self.lost)}; unexpected {len(self.unexpected)}; "
                f"duplicated D={self.duplicated} over {len(self.duplicates)} jobs; "
                f"in flight at faults F={self.in_flight_at_faults}; "
                f"fenced settlements {self.fenced}; reclaimed {self.reclaimed}",
                f"time to resume: {resume or 'n/a'}",
            ]
        )


def check(
    events: Iterable[dict[str, Any]],
    final: FinalState,
    *,
    expected_dead: dict[str, str] | None = None,
) -> Report:
    """Check a history against the broker's final state.

    ``expected_dead`` maps job ids that must end in the dead-letter stream to their
    ``error_type``; any other dead-lettered job is reported. ``None`` skips that check.
    """
    events = list(events)
    r = Report()
    invoked: set[str] = set()
    ok: set[str] = set()
    info: set[str] = set()
    seen: set[str] = set()
    completions: Counter[str] = Counter()
    starts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        ev = e["ev"]
        job = e.get("job")
        if ev == "send.invoke":
            invoked.add(job)
        elif ev == "send.ok":
            ok.add(job)
        elif ev == "send.info":
            info.add(job)
        elif ev == "send.fail":
            r.sent_fail += 1
        elif ev == "start":
            seen.add(job)
            starts[job].append(e)
        elif ev == "finish" and e.get("outcome") == "ok":
            completions[job] += 1
        elif ev in ("ack.fenced", "retry.fenced", "dlq.fenced"):
            r.fenced += 1
        elif ev == "ack.info":
            r.ack_info += 1
        elif ev == "reclaim":
            r.reclaimed += len(e.get("jobs", []))
        elif ev == "fault":
            r.faults.append(
                Fault(e["kind"], e.get("target", ""), e["t0"], e["t1"], list(e["inflight"]))
            )
    r.jobs_sent = len(invoked)
    r.sent_ok = len(ok)
    r.sent_info = len(info)
    r.info_retried_ok = len(info & ok)

    dead = final.dead
    settled = final.results | set(dead)
    r.acked = len(final.results)
    for types in dead.values():
        for t in types:
            r.dead_by_type[t] = r.dead_by_type.get(t, 0) + 1
    r.lost = sorted(ok - settled)
    known = invoked | ok | info
    r.unexpected = sorted((seen | settled) - known)
    r.double_settled = sorted(
        [j for j in final.results if j in dead] + [j for j, ts in dead.items() if len(ts) > 1]
    )
    for job in info - ok:
        if job in settled or job in seen:
            r.info_recovered += 1
        else:
            r.info_absent += 1
    if expected_dead is not None:
        r.wrongly_dead = {
            j: ts for j, ts in dead.items() if j not in expected_dead or ts != [expected_dead[j]]
        }
        r.missing_dead = sorted(set(expected_dead) - set(dead))
    r.unsettled = {
        "stream": final.stream_len,
        "pending": final.pending,
        "delayed": final.delayed,
    }
    entries: dict[tuple[str, int], set[str]] = defaultdict(set)
    for job, runs in starts.items():
        for e in runs:
            entries[(job, e.get("attempt", 1))].add(e.get("entry", ""))
    # Each attempt of a job lives in one stream entry; two mean a send or a retry was
    # applied twice.
    r.double_enqueued = sorted({job for (job, _), ids in entries.items() if len(ids) > 1})
    r.duplicates = {j: n for j, n in completions.items() if n > 1}
    hit: set[str] = set()
    for f in r.faults:
        hit.update(f.inflight)
    r.unexplained_duplicates = sorted(set(r.duplicates) - hit)
    # Only a worker that died or stalled past its lease may lose its jobs to a peer; a
    # server-wide fault hits every member alike and must not make them look dead.
    held_by_victims: set[str] = set()
    for f in r.faults:
        if f.kind in WORKER_FAULTS:
            held_by_victims.update(f.inflight)
    taken = {job for e in events if e["ev"] == "reclaim" for job in e.get("jobs", [])}
    r.stolen = sorted(taken - held_by_victims)
    r.resume = _resume_times(events, r.faults)
    return r


def _resume_times(events: list[dict[str, Any]], faults: list[Fault]) -> dict[str, list[float]]:
    """Per fault kind: seconds until work went on.

    For a worker fault, from the fault until another member started one of the jobs
    the victim held (the takeover); for a server-wide fault, from its end until the
    next handler started or acknowledgement applied.
    """
    out: dict[str, list[float]] = defaultdict(list)
    for f in faults:
        if f.kind in WORKER_FAULTS:
            held = set(f.inflight)
            victim = f.target
            t = next(
                (
                    e["t"]
                    for e in events
                    if e["ev"] == "start"
                    and e["t"] > f.t0
                    and e["job"] in held
                    and e.get("member") != victim
                ),
                None,
            )
            if t is not None:
                out[f"{f.kind} takeover"].append((t - f.t0) / NS)
            if f.kind == "sigstop":
                back = next(
                    (
                        e["t"]
                        for e in events
                        if e["ev"] == "start" and e["t"] > f.t1 and e.get("member") == victim
                    ),
                    None,
                )
                if back is not None:
                    out["sigstop rejoin"].append((back - f.t1) / NS)
        else:
            t = next(
                (e["t"] for e in events if e["ev"] in ("start", "ack.ok") and e["t"] > f.t1),
                None,
            )
            if t is not None:
                out[f.kind].append((t - f.t1) / NS)
    return dict(out)
