"""Checker for the histories of ordered queues (written by ``ordered_worker.py``).

A *run* is one execution of a job by one member: a ``start`` and then an ``end`` (ok
or error), a ``cancelled``, or nothing when SIGKILL cut it off. Faults are what the
test did to a member: ``sigkill`` at ``t0``; ``sigstop`` at ``t0`` with SIGCONT at
``t1``; ``sigterm`` (a graceful stop) at ``t0``. A member's *tenure* of a partition is
its lease under one epoch: it ends released (handed over after draining) or lost (the
lease expired or was taken over: the member was killed, paused, or starved of CPU).

Properties checked, per key (all jobs of a key live in one partition):

- nothing lost: every sent seq has a run that ended ok, and the broker stored the
  result of the *last* such run (a zombie's late acknowledgement would store its own,
  or delete the entry before the re-run);
- order: runs sorted by start never go back in seq, and seq n starts only after a run
  of seq n-1 ended ok;
- exclusion: a run starts only after every earlier run of its key ended. A run without
  an end ends, for this purpose, when its member was killed, or when it was stopped
  if it was cancelled after SIGCONT (a stopped process does nothing). A run cancelled
  because its tenure was lost never ended at all: such fenced runs may overlap later
  ones (a paused handler cannot be un-run) and are counted;
- duplicates (a seq run again after a run of it ended ok) only when that earlier run's
  tenure was lost or its member killed or stopped after it ended;

and per partition:

- fencing epochs: runs sorted by start never go back in epoch, and each epoch belongs
  to one member;
- no zombie: no run of an epoch ends after a run of a later epoch started, and a
  member stopped past its lease records no end for a run in flight when it stopped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import orjson

# Timestamps of different processes are compared: allow for the time between
# reading the clock and acting.
SLACK = 0.005


@attrs.define
class Run:
    run: str
    job: str
    key: str
    seq: int
    member: str
    pid: int
    partition: int
    epoch: int
    deliveries: int
    attempt: int
    start: float
    end: float | None = None
    outcome: str | None = None
    cancelled: float | None = None


@attrs.frozen
class Fault:
    kind: str  # sigkill, sigstop, sigterm
    member: str
    t0: float
    t1: float = 0.0


@attrs.frozen
class LeaseEvent:
    ts: float
    member: str
    partition: int
    what: str  # acquired, released, lost
    epoch: int | None = None


@attrs.define
class Report:
    runs: int = 0
    ok_runs: int = 0
    error_runs: int = 0
    cancelled_runs: int = 0
    killed_runs: int = 0
    fenced_runs: int = 0
    duplicates: int = 0
    tenures_lost: int = 0
    problems: list[str] = attrs.Factory(list)
    # Keys whose jobs ran in more than one partition (after a partition increase).
    moved_keys: int = 0
    moved_out_of_order: int = 0
    moved_overlaps: int = 0

    def summary(self) -> str:
        text = (
            f"runs {self.runs}: ok {self.ok_runs}, failed attempts {self.error_runs}, "
            f"cancelled {self.cancelled_runs} (fenced {self.fenced_runs}), cut off by "
            f"SIGKILL {self.killed_runs}; duplicates {self.duplicates}; leases lost "
            f"{self.tenures_lost}; problems {len(self.problems)}"
        )
        if self.moved_keys:
            text += (
                f"\nkeys that moved partition {self.moved_keys}: of these, out of send "
                f"order {self.moved_out_of_order}, with overlapping runs {self.moved_overlaps}"
            )
        return text


def _events(directory: str | Path) -> Iterable[dict[str, Any]]:
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut by SIGKILL mid-write carries no fact


def load_runs(directory: str | Path) -> list[Run]:
    """Every run recorded in ``directory/*.jsonl``, by start time."""
    runs: dict[str, Run] = {}
    for e in _events(directory):
        if e["ev"] == "start":
            runs[e["run"]] = Run(
                run=e["run"],
                job=e["job"],
                key=e["key"],
                seq=e["seq"],
                member=e["member"],
                pid=e["pid"],
                partition=e["partition"],
                epoch=e["epoch"],
                deliveries=e["deliveries"],
                attempt=e["attempt"],
                start=e["ts"],
            )
        elif e["ev"] == "end":
            r = runs[e["run"]]
            r.end, r.outcome = e["ts"], e["outcome"]
        elif e["ev"] == "cancelled":
            runs[e["run"]].cancelled = e["ts"]
    return sorted(runs.values(), key=lambda r: r.start)


def load_leases(directory: str | Path) -> list[LeaseEvent]:
    """Every lease event recorded in ``directory/*.jsonl``, by time."""
    out = [
        LeaseEvent(e["ts"], e["member"], e["partition"], e["what"], e.get("epoch"))
        for e in _events(directory)
        if e["ev"] == "lease"
    ]
    return sorted(out, key=lambda e: e.ts)


def lost_tenures(leases: Iterable[LeaseEvent]) -> set[tuple[str, int, int]]:
    """(member, partition, epoch) of every tenure that ended lost, not released."""
    current: dict[tuple[str, int], int] = {}
    lost: set[tuple[str, int, int]] = set()
    for e in leases:
        if e.what == "acquired" and e.epoch is not None:
            current[(e.member, e.partition)] = e.epoch
        elif e.what == "lost" and (e.member, e.partition) in current:
            lost.add((e.member, e.partition, current.pop((e.member, e.partition))))
        elif e.what == "released":
            current.pop((e.member, e.partition), None)
    return lost


def check(
    runs: Iterable[Run],
    sent: Mapping[str, int],
    faults: Iterable[Fault],
    *,
    leases: Iterable[LeaseEvent] = (),
    results: Mapping[str, Any] | None = None,
    lease_ttl: float = math.inf,
    across_partitions: bool = True,
) -> Report:
    """Check ``runs`` of the keys in ``sent`` (key -> number of seqs sent, 0..n-1).

    ``results`` maps job ids to the result the broker stored (``None`` if missing);
    omitted, that check is skipped. A SIGSTOP longer than ``lease_ttl`` must have
    cost its member every lease. With ``across_partitions=False`` (the partition
    count grew during the run) order and exclusion are required only among runs of
    one key in one partition; what happened across partitions is counted instead.
    """
    runs = sorted(runs, key=lambda r: r.start)
    faults = list(faults)
    lost = lost_tenures(leases)
    r = Report(runs=len(runs), tenures_lost=len(lost))
    killed = {f.member: f.t0 for f in faults if f.kind == "sigkill"}
    stops: dict[str, list[Fault]] = defaultdict(list)
    for f in faults:
        if f.kind == "sigstop":
            stops[f.member].append(f)

    def effective_end(run: Run) -> float | None:
        """When the run ended for exclusion; None: fenced, it never ended at all."""
        if run.end is not None:
            return run.end
        if run.cancelled is not None:
            for f in stops.get(run.member, []):
                if run.start < f.t0 and run.cancelled >= f.t1:
                    return f.t0
            if (run.member, run.partition, run.epoch) in lost:
                r.fenced_runs += 1
                return None
            return run.cancelled
        t = killed.get(run.member)
        if t is not None and t >= run.start:
            return t
        r.problems.append(f"run {run.run} ({run.key}/{run.seq}) never ended and was not killed")
        return math.inf

    by_key: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.outcome == "ok":
            r.ok_runs += 1
        elif run.outcome == "error":
            r.error_runs += 1
        elif run.cancelled is not None:
            r.cancelled_runs += 1
        else:
            r.killed_runs += 1
        if run.key not in sent or not 0 <= run.seq < sent[run.key]:
            r.problems.append(f"run {run.run} of {run.key}/{run.seq}, which was never sent")
            continue
        by_key[run.key].append(run)
    ends = {run.run: effective_end(run) for run in runs}

    for key, n in sent.items():
        done = {run.seq for run in by_key.get(key, []) if run.outcome == "ok"}
        missing = sorted(set(range(n)) - done)
        if missing:
            r.problems.append(f"lost: {key} seqs {missing[:10]} never completed")

    for key_runs in by_key.values():
        parts: dict[int, list[Run]] = defaultdict(list)
        for run in key_runs:
            parts[run.partition].append(run)
        if len(parts) > 1:
            r.moved_keys += 1
        if len(parts) > 1 and not across_partitions:
            seen = Report()
            _order(key_runs, seen, strict=True)
            _exclusion(key_runs, ends, seen)
            r.moved_out_of_order += any(p.startswith("order") for p in seen.problems)
            r.moved_overlaps += any(p.startswith("overlap") for p in seen.problems)
            for group in parts.values():
                _order(group, r, strict=False)
                _exclusion(group, ends, r)
        else:
            _order(key_runs, r, strict=True)
            _exclusion(key_runs, ends, r)

    for member, member_stops in stops.items():
        for f in member_stops:
            if f.t1 - f.t0 <= lease_ttl:
                continue
            for run in runs:
                if (
                    run.member == member
                    and run.start < f.t0
                    and run.end is not None
                    and run.end > f.t0 + SLACK
                ):
                    r.problems.append(
                        f"zombie: run {run.run} ({run.key}/{run.seq}) of {member} ended at "
                        f"{run.end:.3f}, after it was stopped at {f.t0:.3f} past its lease"
                    )

    by_partition: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        by_partition[run.partition].append(run)
    for partition, part_runs in by_partition.items():
        _epochs(partition, part_runs, r)

    if results is not None:
        last_ok: dict[str, Run] = {}
        for run in runs:
            if run.outcome == "ok":
                last_ok[run.job] = run
        for job, run in last_ok.items():
            doc = results.get(job)
            if doc is None:
                r.problems.append(f"job {job} ({run.key}/{run.seq}): no result stored")
            elif doc.get("run") != run.run:
                r.problems.append(
                    f"job {job} ({run.key}/{run.seq}): the stored result is of run "
                    f"{doc.get('run')} (epoch {doc.get('epoch')}), not of its last run "
                    f"{run.run} (epoch {run.epoch})"
                )
    r.duplicates = _duplicates(by_key, faults, lost, r)
    return r


def _order(runs: list[Run], r: Report, *, strict: bool) -> None:
    highest = -1
    ok_end: dict[int, float] = {}
    for run in runs:
        if run.seq < highest:
            r.problems.append(
                f"order: {run.key}/{run.seq} (run {run.run}) started after seq {highest} had"
            )
        highest = max(highest, run.seq)
        if strict and run.seq > 0:
            prev = ok_end.get(run.seq - 1)
            if prev is None or prev > run.start + SLACK:
                r.problems.append(
                    f"order: {run.key}/{run.seq} (run {run.run}) started at {run.start:.3f} "
                    f"before seq {run.seq - 1} had completed"
                )
        if run.outcome == "ok" and run.end is not None:
            ok_end.setdefault(run.seq, run.end)


def _exclusion(runs: list[Run], ends: Mapping[str, float | None], r: Report) -> None:
    latest: Run | None = None
    latest_end = -math.inf
    for run in runs:
        if latest is not None and latest_end > run.start + SLACK:
            r.problems.append(
                f"overlap: {run.key}/{run.seq} (run {run.run}, {run.member}) started at "
                f"{run.start:.3f} while {latest.key}/{latest.seq} (run {latest.run}, "
                f"{latest.member}) ran until {latest_end:.3f}"
            )
        end = ends[run.run]
        if end is not None and end > latest_end:
            latest, latest_end = run, end


def _epochs(partition: int, runs: list[Run], r: Report) -> None:
    owners: dict[int, str] = {}
    newest = -1
    began: dict[int, float] = {}  # epoch -> first start
    for run in runs:
        if owners.setdefault(run.epoch, run.member) != run.member:
            r.problems.append(
                f"partition {partition} epoch {run.epoch} held by {owners[run.epoch]} "
                f"and {run.member}"
            )
        if run.epoch < newest:
            r.problems.append(
                f"partition {partition}: run {run.run} ({run.key}/{run.seq}) of epoch "
                f"{run.epoch} started after a run of epoch {newest}"
            )
        newest = max(newest, run.epoch)
        began.setdefault(run.epoch, run.start)
    for run in runs:
        if run.end is None:
            continue
        later = [t for epoch, t in began.items() if epoch > run.epoch]
        if later and run.end > min(later) + SLACK:
            r.problems.append(
                f"zombie: run {run.run} ({run.key}/{run.seq}) of epoch {run.epoch} in "
                f"partition {partition} ended at {run.end:.3f}, after a later epoch "
                f"began at {min(later):.3f}"
            )


def _duplicates(
    by_key: Mapping[str, list[Run]],
    faults: list[Fault],
    lost: set[tuple[str, int, int]],
    r: Report,
) -> int:
    count = 0
    for key_runs in by_key.values():
        last_ok: dict[int, Run] = {}
        for run in key_runs:
            prev = last_ok.get(run.seq)
            if prev is not None and prev.end is not None:
                count += 1
                end = prev.end
                explained = (prev.member, prev.partition, prev.epoch) in lost or any(
                    f.member == prev.member
                    and f.kind in ("sigkill", "sigstop")
                    and end - SLACK <= f.t0 <= run.start
                    for f in faults
                )
                if not explained:
                    r.problems.append(
                        f"duplicate: {run.key}/{run.seq} ran again (run {run.run}, "
                        f"{run.member}) after run {prev.run} of {prev.member} had completed, "
                        "and that member neither lost its lease nor was killed or stopped"
                    )
            if run.outcome == "ok":
                last_ok[run.seq] = run
    return count
