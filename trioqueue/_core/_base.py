"""What every operation of the client core starts from: the App, the key prefix, the
queues' settings and their partition counts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import orjson

from trioqueue._core._commands import HGet, Op, Pipeline
from trioqueue._keys import PartitionKeys

if TYPE_CHECKING:
    from trioqueue._app import App
    from trioqueue._config import Config, QueueSettings

# How long a client trusts the partition count it read from Redis: a count only grows
# (``trioqueue partitions``), and a send to a partition that still exists is not lost.
PARTITIONS_CACHE = 10.0


@attrs.frozen
class Durability:
    """How a send is confirmed: by the primary alone (the default), or only once
    ``replicas`` replicas (and, with ``local_fsync``, the primary's AOF on disk) have
    it, waiting up to ``timeout`` seconds (``[broker] wait_*``)."""

    replicas: int = 0
    timeout: float = 1.0
    local_fsync: bool = False

    @property
    def waits(self) -> bool:
        """True if a send must wait for a confirmation."""
        return self.replicas > 0 or self.local_fsync


@attrs.define(eq=False)
class Core:
    """A client's state apart from its connection, shared by every operation."""

    app: App
    prefix: str
    config: Config | None = None
    durability: Durability = Durability()
    _settings: dict[str, QueueSettings] = attrs.field(factory=dict, init=False)
    _partitions: dict[str, tuple[int, float]] = attrs.field(factory=dict, init=False)

    def queue_settings(self, queue: str) -> QueueSettings:
        """The settings this client applies to ``queue`` (bounds, result TTL)."""
        got = self._settings.get(queue)
        if got is None:
            got = self._settings[queue] = self.app.queue_settings(queue, self.config)
        return got

    def encode(self, msg: object) -> bytes:
        """The JSON body of ``msg`` as it goes on the wire."""
        return orjson.dumps(self.app.converter.unstructure(msg))

    def keys(self, queue: str, partition: int = 0) -> PartitionKeys:
        """The keys of one partition of ``queue``."""
        return PartitionKeys(self.prefix, queue, partition)

    def _cached_partitions(self, queue: str) -> int | None:
        got = self._partitions.get(queue)
        if got is not None and time.monotonic() - got[1] < PARTITIONS_CACHE:
            return got[0]
        return None

    def partitions(self, queue: str) -> Op[int]:
        """The queue's partition count (the one stored in Redis wins; cached briefly)."""
        n = self._cached_partitions(queue)
        if n is None:
            counts = yield from self.partition_counts([queue])
            n = counts[queue]
        return n

    def partition_counts(self, queues: Sequence[str]) -> Op[dict[str, int]]:
        """The partition counts of ``queues``, reading the ones not cached in one round."""
        counts: dict[str, int] = {}
        for queue in queues:
            n = self._cached_partitions(queue)
            if n is not None:
                counts[queue] = n
        missing = [q for q in dict.fromkeys(queues) if q not in counts]
        if missing:
            stored = yield Pipeline(tuple(HGet(self.keys(q).meta, "partitions") for q in missing))
            for queue, raw in zip(missing, stored, strict=True):
                # The count stored in Redis wins over the local setting.
                n = int(raw) if raw is not None else self.queue_settings(queue).partitions
                self._partitions[queue] = (n, time.monotonic())
                counts[queue] = n
        return counts


class ClientBase:
    """What ``Client`` and ``SyncClient`` share apart from how they talk to Redis."""

    def __init__(
        self,
        app: App,
        *,
        prefix: str,
        config: Config | None,
        url: str,
        durability: Durability | None = None,
    ) -> None:
        self.app = app
        self.prefix = prefix
        self._url = url
        self._core = Core(app, prefix, config, durability or Durability())

    def queue_settings(self, queue: str) -> QueueSettings:
        """The settings this client applies to ``queue`` (bounds, result TTL)."""
        return self._core.queue_settings(queue)

    def encode(self, msg: object) -> bytes:
        """The JSON body of ``msg`` as it goes on the wire."""
        return self._core.encode(msg)
