"""Checker for the histories of ordered queues (written by ``ordered_worker.py``).

A *run* is one execution of a job by one member: a ``start`` and then an ``end`` (ok
or error), a ``cancelled``, or nothing when SIGKILL cut it off. Faults are what the
test did to a member: ``sigkill`` at ``t0``; ``sigstop`` at ``t0`` with SIGCONT at
``t1``; ``sigterm`` (a graceful stop) at ``t0``.

Properties checked, per key (all jobs of a key live in one partition):

- nothing lost: every sent seq has a run that ended ok, and the broker stored the
  result of the *last* such run (a zombie's late acknowledgement would store its own,
  or delete the entry before the re-run);
- order: runs sorted by start never go back in seq, and seq n starts only after a run
  of seq n-1 ended ok;
- exclusion: a run starts only after every earlier run of its key ended. A run without
  an end ends, for this purpose, when its member was killed, or when it was stopped
  if it was cancelled after SIGCONT (a frozen process does nothing);
- no zombie: a member stopped past its lease records no end for a run that was in
  flight when it stopped;
- duplicates (a seq run again after a run of it ended ok) only after a fault of the
  member of that earlier run, between its end and the re-run;
- fencing epochs: per partition, runs sorted by start never go back in epoch, and
  each epoch belongs to one member.
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
# reading the clock and acting (a record is written right after the stamp).
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


@attrs.define
class Report:
    runs: int = 0
    ok_runs: int = 0
    error_runs: int = 0
    cancelled_runs: int = 0
    killed_runs: int = 0
    duplicates: int = 0
    problems: list[str] = attrs.Factory(list)
    # Keys whose jobs ran in more than one partition (after a partition increase).
    moved_keys: int = 0
    moved_out_of_order: int = 0
    moved_overlaps: int = 0

    def summary(self) -> str:
        text = (
            f"runs {self.runs}: ok {self.ok_runs}, failed attempts {self.error_runs}, "
            f"cancelled {self.cancelled_runs}, cut off by SIGKILL {self.killed_runs}; "
            f"duplicates {self.duplicates}; problems {len(self.problems)}"
        )
        if self.moved_keys:
            text += (
                f"\nkeys that moved partition {self.moved_keys}: out of send order "
                f"{self.moved_out_of_order}, overlapping runs {self.moved_overlaps}"
            )
        return text


def load_runs(directory: str | Path) -> list[Run]:
    """Every run recorded in ``directory/*.jsonl``, by start time."""
    runs: dict[str, Run] = {}
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut by SIGKILL mid-write carries no fact
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


def check(
    runs: Iterable[Run],
    sent: Mapping[str, int],
    faults: Iterable[Fault],
    *,
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
    r = Report(runs=len(runs))
    killed = {f.member: f.t0 for f in faults if f.kind == "sigkill"}
    stops: dict[str, list[Fault]] = defaultdict(list)
    for f in faults:
        if f.kind == "sigstop":
            stops[f.member].append(f)

    def effective_end(run: Run) -> float:
        if run.end is not None:
            return run.end
        if run.cancelled is not None:
            for f in stops.get(run.member, []):
                if run.start < f.t0 and run.cancelled >= f.t1:
                    return f.t0
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
        owners: dict[int, str] = {}
        newest = -1
        for run in part_runs:
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
    r.duplicates = _duplicates(by_key, faults, r)
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


def _exclusion(runs: list[Run], ends: Mapping[str, float], r: Report) -> None:
    latest: Run | None = None
    for run in runs:
        if latest is not None and ends[latest.run] > run.start + SLACK:
            r.problems.append(
                f"overlap: {run.key}/{run.seq} (run {run.run}, {run.member}) started at "
                f"{run.start:.3f} while {latest.key}/{latest.seq} (run {latest.run}, "
                f"{latest.member}) ran until {ends[latest.run]:.3f}"
            )
        if latest is None or ends[run.run] > ends[latest.run]:
            latest = run


def _duplicates(by_key: Mapping[str, list[Run]], faults: list[Fault], r: Report) -> int:
    count = 0
    for key_runs in by_key.values():
        last_ok: dict[int, Run] = {}
        for run in key_runs:
            prev = last_ok.get(run.seq)
            if prev is not None and prev.end is not None:
                count += 1
                end = prev.end
                if not any(
                    f.member == prev.member
                    and f.kind in ("sigkill", "sigstop")
                    and end - SLACK <= f.t0 <= run.start
                    for f in faults
                ):
                    r.problems.append(
                        f"duplicate: {run.key}/{run.seq} ran again (run {run.run}, "
                        f"{run.member}) after run {prev.run} of {prev.member} had completed, "
                        "with no fault in between"
                    )
            if run.outcome == "ok":
                last_ok[run.seq] = run
    return count
