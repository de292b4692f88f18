"""On a Redis Cluster (three primaries, three replicas): partitions spread over the
shards, ordered queues, the sync client, and a slot migrated and a primary failed
over while jobs run. The broker-behaviour tests parametrised by ``any_config`` run
here too; these are what only a cluster has."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import attrs
import pytest
import redis as redis_py
import trio

import trioqueue
from tests.cluster import Cluster
from tests.conftest import make_config, wait_for
from trioqueue._connection import connected
from trioqueue._keys import PartitionKeys
from trioqueue._redis import ClusterRedis
from trioqueue._redis._slots import key_slot
from trioqueue._status import collect_status

pytestmark = pytest.mark.cluster


@attrs.frozen
class Step:
    key: str
    seq: int


def make_app(
    queue: str, ran: list[tuple[str, int]], *, ordered: bool = False, partitions: int = 6
) -> trioqueue.App:
    app = trioqueue.App("cluster")

    @app.handler(queue=queue, partitions=partitions, ordered=ordered, concurrency=8)
    async def step(msg: Step) -> int:
        ran.append((msg.key, msg.seq))
        await trio.sleep(0.001)
        return msg.seq

    return app


def shard_of(cluster: Cluster, slot: int) -> int:
    """Which primary holds ``slot``, by asking a node (0, 1, 2 in slot order)."""
    node = cluster.nodes[0]
    client = redis_py.Redis(port=node.port)
    try:
        ranges = sorted((int(r[0]), int(r[1])) for r in client.execute_command("CLUSTER SLOTS"))
    finally:
        client.close()
    return next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot <= hi)


async def test_partitions_spread_over_the_shards_and_status_names_their_nodes(
    cluster: Cluster, prefix: str
) -> None:
    slots = [key_slot(PartitionKeys(prefix, "spread", p).stream) for p in range(6)]
    assert len({shard_of(cluster, s) for s in slots}) == 3  # the queue name spreads
    ran: list[tuple[str, int]] = []
    app = make_app("spread", ran)
    config = make_config(cluster.url, prefix)
    async with app.connect(cluster.url, prefix=prefix) as client:
        jobs = await client.send_many([Step(f"k{i}", i) for i in range(120)], key=lambda m: m.key)
        assert {j.partition for j in jobs} == set(range(6))
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await wait_for(lambda: len(ran) == 120, timeout=20)
            assert await client.result(jobs[7], timeout=5) == 7
            sup.shutdown()
    assert sorted(seq for _, seq in ran) == list(range(120))
    async with connected(cluster.url) as redis:
        assert isinstance(redis, ClusterRedis)
        doc = await collect_status(redis, prefix, ["spread"])
    nodes = [p["node"] for p in doc["queues"]["spread"]["partitions"]]
    assert len(set(nodes)) == 3
    assert nodes == [redis.node_of(PartitionKeys(prefix, "spread", p).stream) for p in range(6)]


async def test_ordered_queue_keeps_key_order_on_a_cluster(cluster: Cluster, prefix: str) -> None:
    ran: list[tuple[str, int]] = []
    app = make_app("ledger", ran, ordered=True)
    keys = [f"acct{i}" for i in range(12)]
    async with app.connect(cluster.url, prefix=prefix) as client:
        await client.send_many([Step(k, s) for s in range(10) for k in keys], key=lambda m: m.key)
    sup = trioqueue.Supervisor(app, make_config(cluster.url, prefix))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: len(ran) == 120, timeout=20)
        sup.shutdown()
    for k in keys:
        assert [s for key, s in ran if key == k] == list(range(10))


async def test_sync_client_on_a_cluster(cluster: Cluster, prefix: str) -> None:
    ran: list[tuple[str, int]] = []
    app = make_app("syncq", ran)

    def produce() -> list[trioqueue.Job]:
        with app.connect_sync(cluster.url, prefix=prefix) as sync:
            one = sync.send(Step("a", 1), key="a")
            rest = sync.send_many([Step(f"k{i}", i) for i in range(2, 20)], key=lambda m: m.key)
            return [one, *rest]

    jobs = await trio.to_thread.run_sync(produce)
    assert len({j.partition for j in jobs}) > 1
    sup = trioqueue.Supervisor(app, make_config(cluster.url, prefix))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: len(ran) == 19, timeout=20)
        sup.shutdown()

    def look() -> Any:
        with app.connect_sync(cluster.url, prefix=prefix) as sync:
            return sync.status(jobs[3]), sync.result(jobs[3], timeout=5)

    status, result = await trio.to_thread.run_sync(look)
    assert status.state == "succeeded" and result == 4  # jobs[3] is Step("k4", 4)


def node_id(port: int) -> str:
    client = redis_py.Redis(port=port, decode_responses=True)
    try:
        return str(client.execute_command("CLUSTER MYID"))
    finally:
        client.close()


def migrate_slot(cluster: Cluster, slot: int, source: int, target: int) -> None:
    """Move ``slot`` from the primary on port ``source`` to the one on ``target`` the
    way ``valkey-cli --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE the keys,
    then SETSLOT NODE on the target, the source and every other node."""
    src, dst = node_id(source), node_id(target)
    s, t = redis_py.Redis(port=source), redis_py.Redis(port=target)
    try:
        t.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src)
        s.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst)
        while keys := s.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            s.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        t.execute_command("CLUSTER SETSLOT", slot, "NODE", dst)
        s.execute_command("CLUSTER SETSLOT", slot, "NODE", dst)
        for node in cluster.nodes:
            if node.proc is not None and node.port not in (source, target):
                # A replica refuses: it learns from its primary.
                with redis_py.Redis(port=node.port) as other, suppress(redis_py.ResponseError):
                    other.execute_command("CLUSTER SETSLOT", slot, "NODE", dst)
    finally:
        s.close()
        t.close()


def primary_port(cluster: Cluster, slot: int) -> int:
    with redis_py.Redis(port=cluster.nodes[0].port) as client:
        for lo, hi, primary, *_ in client.execute_command("CLUSTER SLOTS"):
            if int(lo) <= slot <= int(hi):
                return int(primary[1])
    raise AssertionError(f"slot {slot} has no primary")


@pytest.fixture
def settled(cluster: Cluster) -> Iterator[None]:
    """After a test that changes the topology: the cluster is ok again."""
    yield
    cluster.wait_ok()


async def test_a_slot_migrated_while_jobs_run_loses_nothing(
    cluster: Cluster, prefix: str, settled: None
) -> None:
    ran: list[tuple[str, int]] = []
    app = make_app("moving", ran, partitions=1)
    slot = key_slot(PartitionKeys(prefix, "moving", 0).stream)
    source = primary_port(cluster, slot)
    target = next(
        primary_port(cluster, s) for s in (0, 8000, 16000) if primary_port(cluster, s) != source
    )
    sup = trioqueue.Supervisor(app, make_config(cluster.url, prefix))
    async with app.connect(cluster.url, prefix=prefix) as client, trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        if True:
            sent = [await client.send(Step("a", i), queue="moving") for i in range(100)]
            await trio.to_thread.run_sync(migrate_slot, cluster, slot, source, target)
            sent += [await client.send(Step("b", i), queue="moving") for i in range(100, 200)]
            await wait_for(lambda: len({s for _, s in ran}) == 200, timeout=30)
            sup.shutdown()
    assert primary_port(cluster, slot) == target
    assert {j.partition for j in sent} == {0}
    assert sorted({s for _, s in ran}) == list(range(200))


async def test_a_primary_failed_over_while_jobs_run_loses_nothing(
    cluster: Cluster, prefix: str, settled: None
) -> None:
    ran: list[tuple[str, int]] = []
    app = make_app("failover", ran, partitions=1)
    slot = key_slot(PartitionKeys(prefix, "failover", 0).stream)
    old = primary_port(cluster, slot)
    with redis_py.Redis(port=old, decode_responses=True) as primary:
        replica_info = primary.execute_command("INFO", "replication")
    replica_port = int(replica_info["slave0"]["port"])
    sup = trioqueue.Supervisor(app, make_config(cluster.url, prefix))
    async with app.connect(cluster.url, prefix=prefix) as client, trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        if True:
            sent = [await client.send(Step("a", i), queue="failover") for i in range(100)]
            with redis_py.Redis(port=replica_port) as replica:
                replica.execute_command("CLUSTER FAILOVER")
            await wait_for(lambda: primary_port(cluster, slot) == replica_port, timeout=15)
            for i in range(100, 200):
                while True:
                    try:
                        sent.append(
                            await client.send(Step("b", i), queue="failover", job_id=f"b{i}")
                        )
                        break
                    except trioqueue.BrokerUnavailable:
                        await trio.sleep(0.1)  # the outcome is unknown: resend by id
            await wait_for(lambda: len({s for _, s in ran}) == 200, timeout=30)
            sup.shutdown()
    assert sorted({s for _, s in ran}) == list(range(200))


async def test_a_primary_killed_mid_run_loses_nothing_silently(
    cluster: Cluster, prefix: str, settled: None
) -> None:
    """kill -9 of the primary holding a busy partition: its replica takes over (the
    cluster answers CLUSTERDOWN meanwhile); every job whose send returned either runs
    or is counted as lost by the rollback watch: never lost silently."""
    ran: set[int] = set()
    resumed: list[float] = []
    app = trioqueue.App("killed")

    @app.handler(queue="killed", partitions=1, concurrency=8)
    async def step(msg: Step) -> None:
        ran.add(msg.seq)
        if msg.seq >= 100 and not resumed:
            resumed.append(trio.current_time())

    slot = key_slot(PartitionKeys(prefix, "killed", 0).stream)
    victim = primary_port(cluster, slot)
    config = make_config(cluster.url, prefix, broker={"url": cluster.url, "prefix": prefix,
                                                      "connect_timeout": 1.0})  # fmt: skip
    sup = trioqueue.Supervisor(app, config)
    confirmed: list[int] = []
    async with app.connect(cluster.url, prefix=prefix, connect_timeout=1.0) as client:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

            async def send(i: int) -> None:
                while True:
                    try:
                        await client.send(Step("k", i), queue="killed", job_id=f"j{i}")
                        confirmed.append(i)
                        return
                    except trioqueue.BrokerError:
                        await trio.sleep(0.1)  # unknown outcome: resend by id

            for i in range(100):
                await send(i)
            killed = cluster.kill(victim)
            killed_at = trio.current_time()
            for i in range(100, 200):
                await send(i)
            with suppress(AssertionError):  # some lost: they must be accounted for below
                await wait_for(lambda: ran >= set(confirmed), timeout=20)
            sup.shutdown()
        lost = sup.statistics().lost_entries
    await trio.to_thread.run_sync(cluster.revive, killed)
    missing = set(confirmed) - ran
    print(
        f"\ncluster kill -9 of a primary: first job after it ran "
        f"{resumed[0] - killed_at:.2f}s later; lost {len(missing)} of 200, "
        f"rollback watch counted {lost}"
    )
    assert len(confirmed) == 200
    assert len(missing) <= lost, f"{len(missing)} jobs lost silently (watch saw {lost})"


async def test_a_running_job_is_cancelled_through_any_node(cluster: Cluster, prefix: str) -> None:
    """The worker listens for cancel requests on one primary, picked at random, and the
    client publishes through whichever node it picks (a PUBLISH reaches every node of
    a cluster); the job settles as cancelled."""
    started = trio.Event()
    app = trioqueue.App("cancelling")

    @app.handler(queue="slow", partitions=3)
    async def slow(msg: Step) -> None:
        started.set()
        await trio.sleep(30)

    sup = trioqueue.Supervisor(app, make_config(cluster.url, prefix))
    async with app.connect(cluster.url, prefix=prefix) as client, trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        job = await client.send(Step("s", 1), key="s")
        with trio.fail_after(10):
            await started.wait()
        assert await client.cancel(job) == "running"

        async def cancelled() -> bool:
            return (await client.status(job)).state == "cancelled"

        await wait_for(cancelled, timeout=10)
        sup.shutdown()


async def test_a_primary_killed_with_replica_acknowledged_sends_loses_nothing(
    cluster: Cluster, prefix: str, settled: None
) -> None:
    """The same kill -9 with ``wait_replicas = 1``: a send returns only once the
    replica has the job, so every send that returned survives the failover."""
    ran: set[int] = set()
    app = trioqueue.App("replicated")

    @app.handler(queue="replicated", partitions=1, concurrency=8)
    async def step(msg: Step) -> None:
        ran.add(msg.seq)

    slot = key_slot(PartitionKeys(prefix, "replicated", 0).stream)
    victim = primary_port(cluster, slot)
    config = make_config(cluster.url, prefix, broker={"url": cluster.url, "prefix": prefix,
                                                      "connect_timeout": 1.0})  # fmt: skip
    sup = trioqueue.Supervisor(app, config)
    confirmed: list[int] = []
    connect = app.connect(cluster.url, prefix=prefix, connect_timeout=1.0, wait_replicas=1)
    async with connect as client, trio.open_nursery() as nursery:
        await nursery.start(sup.run)

        async def send(i: int) -> None:
            while True:
                try:
                    await client.send(Step("k", i), queue="replicated", job_id=f"r{i}")
                    confirmed.append(i)
                    return
                except trioqueue.BrokerError:  # NotReplicated, or unknown: resend by id
                    await trio.sleep(0.1)

        for i in range(50):
            await send(i)
        killed = cluster.kill(victim)
        # Until the old primary rejoins as the new one's replica, no send can be
        # acknowledged by a replica: they wait and retry.
        nursery.start_soon(trio.to_thread.run_sync, cluster.revive, killed)
        for i in range(50, 100):
            await send(i)
        await wait_for(lambda: ran >= set(confirmed), timeout=30)
        sup.shutdown()
    assert sorted(confirmed) == list(range(100))
    assert ran >= set(confirmed)
