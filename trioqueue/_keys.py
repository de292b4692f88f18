"""The Redis key layout.

Every key a single script touches shares one hash tag (``{queue:partition}``), so
the same scripts run unchanged on Redis Cluster. Queue names are restricted to
characters that cannot break a hash tag. Scripts never build a key themselves: every
key they touch is made here and passed in ``KEYS`` (Redis Cluster refuses an
undeclared key once its slot has begun to migrate, after the script's earlier writes
were applied).
"""

from __future__ import annotations

import re

import attrs

GROUP = "trioqueue"
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-:]{1,50}$")


def check_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise ``ValueError``."""
    if not _QUEUE_NAME.match(name):
        raise ValueError(f"invalid queue name {name!r}: use 1-100 letters, digits, '_', '.' or '-'")
    return name


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid key prefix, else raise ``ValueError``."""
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"invalid key prefix {prefix!r}: use 1-50 letters, digits, '_', '.', '-' or ':'"
        )
    return prefix


@attrs.frozen
class PartitionKeys:
    """Keys of one partition of one queue."""

    prefix: str
    queue: str
    partition: int = 0
    # Built once: settling a batch derives several keys per job from it.
    tag: str = attrs.field(init=False, eq=False, repr=False)

    @tag.default
    def _tag(self) -> str:
        return f"{self.prefix}:{{{self.queue}:{self.partition}}}"

    @property
    def stream(self) -> str:
        return f"{self.tag}:stream"

    @property
    def delayed(self) -> str:
        return f"{self.tag}:delayed"

    @property
    def dead(self) -> str:
        return f"{self.tag}:dead"

    @property
    def meta(self) -> str:
        return f"{self.tag}:meta"

    def result(self, job_id: str) -> str:
        """The job's outcome document, kept for ``result_ttl``."""
        return f"{self.tag}:result:{job_id}"

    def result_wait(self, job_id: str) -> str:
        """Set by a client waiting for the result; the settling script then notifies."""
        return f"{self.tag}:wait:{job_id}"

    def result_done(self, job_id: str) -> str:
        """List the settling script pushes to, to wake a waiting client (BLPOP)."""
        return f"{self.tag}:done:{job_id}"

    def outcome(self, job_id: str) -> tuple[str, str, str]:
        """The result, wait and done keys: what storing a job's outcome touches."""
        return self.result(job_id), self.result_wait(job_id), self.result_done(job_id)

    @property
    def lease(self) -> str:
        """Owner of an ordered partition: ``<member>:<epoch>``, with a TTL."""
        return f"{self.tag}:lease"

    @property
    def epoch(self) -> str:
        """Counter of lease grants: the partition's fencing epoch."""
        return f"{self.tag}:epoch"

    def unique(self, job_id: str) -> str:
        """Marks a caller-chosen job id as taken (holds its entry id); see send.lua."""
        return f"{self.tag}:unique:{job_id}"

    @property
    def paused(self) -> str:
        """Partition 0's only: ``1`` while the queue is paused (see pause.lua)."""
        return f"{self.tag}:paused"

    def history(self, minute: int) -> str:
        """Job counts and handler time of one minute (epoch minutes), kept
        ``[metrics] history_hours``: summed over partitions when read."""
        return f"{self.tag}:history:{minute}"

    @property
    def events(self) -> str:
        """The partition's capped stream of job events (``[queues.NAME] events``)."""
        return f"{self.tag}:events"

    def progress(self, job_id: str) -> str:
        """The latest progress a running job reported (JSON), kept ``result_ttl``."""
        return f"{self.tag}:progress:{job_id}"

    def cancel_marker(self, job_id: str) -> str:
        """Asks the worker running the job to cancel it (read by its renewal)."""
        return f"{self.tag}:cancel:{job_id}"


def member_key(prefix: str, member_id: str) -> str:
    """Heartbeat key of a live member (expires after the heartbeat TTL)."""
    return f"{prefix}:member:{member_id}"


def control_channel(prefix: str) -> str:
    """Pub/sub channel on which clients ask workers to cancel running jobs and tell
    them of paused and resumed queues."""
    return f"{prefix}:control"


def cron_key(prefix: str, schedule: str) -> str:
    """The last tick a schedule fired (epoch ms), claimed by compare-and-set."""
    return f"{prefix}:cron:{schedule}"


def members_key(prefix: str) -> str:
    """Sorted set of members, scored by the server time their heartbeat expires."""
    return f"{prefix}:members"
