"""The Trio client: batching, routing, bounds and broker errors, against a real server."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

import attrs
import orjson
import pytest

import trioqueue
from tests.conftest import Server, free_port, make_config
from tests.raw import connected
from trioqueue._broker_errors import is_connection_error
from trioqueue._core._send import SEND_CHUNK
from trioqueue._keys import PartitionKeys
from trioqueue._redis import ConnectionLost, ReplyError, ReplyTimeout
from trioqueue._worker._partitions import store_queue_bounds


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Mail:
    to: str


@attrs.frozen
class Orphan:
    """A type with no handler: it can only be sent with an explicit queue."""

    tag: str


@attrs.frozen
class Blob:
    data: str


def make_app(**blob_options: Any) -> trioqueue.App:
    app = trioqueue.App("client-tests")

    @app.handler(queue="pings")
    async def ping(msg: Ping) -> None:
        pass

    @app.handler(queue="mails")
    async def mail(msg: Mail) -> None:
        pass

    @app.handler(queue="blobs", **blob_options)
    async def blob(msg: Blob) -> None:
        pass

    return app


def fields_of(entry: Any) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in entry.field_values.items()}


async def stream_entries(redis: Any, prefix: str, queue: str) -> list[dict[str, str]]:
    entries = await redis.xrange(PartitionKeys(prefix, queue).stream)
    return [{"entry_id": e.identifier.decode(), **fields_of(e)} for e in entries]


async def stream_len(redis: Any, prefix: str, queue: str) -> int:
    return int(await redis.xlen(PartitionKeys(prefix, queue).stream))


# ----------------------------------------------------------------------------- send_many


async def test_send_many_returns_jobs_in_input_order(
    server: Server, prefix: str, redis: Any
) -> None:
    """Jobs come back in the order of the messages, even when they go to several queues."""
    app = make_app()
    msgs: list[object] = [Ping(0), Mail("a"), Ping(1), Mail("b"), Ping(2)]
    async with app.connect(server.url, prefix=prefix) as client:
        jobs = await client.send_many(msgs)
    assert [j.queue for j in jobs] == ["pings", "mails", "pings", "mails", "pings"]
    assert len({j.id for j in jobs}) == 5
    pings = await stream_entries(redis, prefix, "pings")
    mails = await stream_entries(redis, prefix, "mails")
    by_job = {e["id"]: e for e in pings + mails}
    for msg, job in zip(msgs, jobs, strict=True):
        entry = by_job[job.id]
        assert entry["entry_id"] == job.entry_id
        assert entry["type"] == type(msg).__name__
        assert orjson.loads(entry["body"]) == attrs.asdict(msg)


async def test_send_many_one_entry_per_message_across_chunks(
    server: Server, prefix: str, redis: Any
) -> None:
    """More than SEND_CHUNK messages are split into chunks yet each lands once, in order."""
    app = make_app()
    count = SEND_CHUNK * 2 + 37
    async with app.connect(server.url, prefix=prefix) as client:
        jobs = await client.send_many(Ping(i) for i in range(count))
    assert len(jobs) == count
    entries = await stream_entries(redis, prefix, "pings")
    assert len(entries) == count
    # Stream order is send order, and each job maps to the entry carrying its body.
    assert [orjson.loads(e["body"])["n"] for e in entries] == list(range(count))
    assert [e["id"] for e in entries] == [j.id for j in jobs]
    assert [e["entry_id"] for e in entries] == [j.entry_id for j in jobs]


async def test_send_many_empty(server: Server, prefix: str, redis: Any) -> None:
    """Sending nothing returns nothing and writes nothing."""
    app = make_app()
    async with app.connect(server.url, prefix=prefix) as client:
        assert await client.send_many([]) == []
    assert await stream_len(redis, prefix, "pings") == 0


async def test_send_many_unroutable_message_sends_nothing(
    server: Server, prefix: str, redis: Any
) -> None:
    """One message without a handler fails the batch before anything reaches the broker."""
    app = make_app()
    async with app.connect(server.url, prefix=prefix) as client:
        with pytest.raises(trioqueue.UnknownMessageType):
            await client.send_many([Ping(1), Orphan("x"), Ping(2)])
    assert await stream_len(redis, prefix, "pings") == 0


# ----------------------------------------------------------------------------- routing


async def test_unregistered_type_needs_a_queue(server: Server, prefix: str, redis: Any) -> None:
    """A type with no handler is refused without queue= and sent by class name with it."""
    app = make_app()
    async with app.connect(server.url, prefix=prefix) as client:
        with pytest.raises(trioqueue.UnknownMessageType, match=r"Orphan.*queue="):
            await client.send(Orphan("x"))
        job = await client.send(Orphan("y"), queue="elsewhere")
    assert job.queue == "elsewhere"
    [entry] = await stream_entries(redis, prefix, "elsewhere")
    assert entry["type"] == "Orphan"
    assert orjson.loads(entry["body"]) == {"tag": "y"}
    assert entry["id"] == job.id


async def test_queue_argument_overrides_handler_queue(
    server: Server, prefix: str, redis: Any
) -> None:
    """queue= sends a registered type to another queue under its registered name."""
    app = make_app()
    async with app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Ping(3), queue="other", job_id="my-own-id")
    assert (job.queue, job.id) == ("other", "my-own-id")
    assert await stream_len(redis, prefix, "pings") == 0
    [entry] = await stream_entries(redis, prefix, "other")
    assert (entry["type"], entry["id"]) == ("Ping", "my-own-id")


async def test_invalid_queue_name_is_refused(server: Server, prefix: str) -> None:
    """A queue name that could break the key layout is refused before sending."""
    app = make_app()
    async with app.connect(server.url, prefix=prefix) as client:
        with pytest.raises(ValueError, match="invalid queue name"):
            await client.send(Orphan("x"), queue="a}b")


# ----------------------------------------------------------------------------- bounds


async def test_message_too_large_client_side(server: Server, prefix: str, redis: Any) -> None:
    """A body over max_message_bytes raises MessageTooLarge with sizes; nothing is sent."""
    app = make_app(max_message_bytes=100)
    async with app.connect(server.url, prefix=prefix) as client:
        with pytest.raises(trioqueue.MessageTooLarge) as info:
            await client.send(Blob("x" * 200))
        with pytest.raises(trioqueue.MessageTooLarge):
            await client.send_many([Blob("ok"), Blob("x" * 200)])
        await client.send(Blob("x" * 10))
    assert (info.value.queue, info.value.limit) == ("blobs", 100)
    assert info.value.size == len(orjson.dumps({"data": "x" * 200}))
    assert "over max_message_bytes=100" in str(info.value)
    assert await stream_len(redis, prefix, "blobs") == 1


async def test_message_too_large_from_stored_bound(server: Server, prefix: str, redis: Any) -> None:
    """A bound written to the meta hash by a worker is enforced for a client that lacks it."""
    config = make_config(server.url, prefix, queues={"blobs": {"max_message_bytes": 50}})
    worker_app = make_app()
    await store_queue_bounds(redis, prefix, worker_app.settings(config).values())
    client_app = make_app()
    async with client_app.connect(server.url, prefix=prefix) as client:
        with pytest.raises(trioqueue.MessageTooLarge) as info:
            await client.send(Blob("x" * 60))
        await client.send(Blob("x" * 10))
    assert (info.value.queue, info.value.limit) == ("blobs", 50)
    assert info.value.size == len(orjson.dumps({"data": "x" * 60}))
    assert await stream_len(redis, prefix, "blobs") == 1


async def test_queue_full_from_decorator(server: Server, prefix: str, redis: Any) -> None:
    """With max_length, the send that would overflow raises QueueFull and adds nothing."""
    app = make_app(max_length=3)
    async with app.connect(server.url, prefix=prefix) as client:
        for i in range(3):
            await client.send(Blob(str(i)))
        with pytest.raises(trioqueue.QueueFull) as info:
            await client.send(Blob("overflow"))
    assert (info.value.queue, info.value.max_length) == ("blobs", 3)
    assert "is full" in str(info.value) and "nothing was enqueued" in str(info.value)
    entries = await stream_entries(redis, prefix, "blobs")
    assert [orjson.loads(e["body"])["data"] for e in entries] == ["0", "1", "2"]


async def test_queue_full_from_config_bound_stored_in_redis(
    server: Server, prefix: str, redis: Any
) -> None:
    """A max_length set only in the worker's config reaches every producer via Redis."""
    config = make_config(server.url, prefix, queues={"blobs": {"max_length": 2}})
    await store_queue_bounds(redis, prefix, make_app().settings(config).values())
    app = make_app()
    assert app.queue_settings("blobs").max_length is None
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Blob("a"))
        await client.send(Blob("b"))
        with pytest.raises(trioqueue.QueueFull) as info:
            await client.send(Blob("c"))
    assert info.value.max_length == 2
    assert await stream_len(redis, prefix, "blobs") == 2


async def test_send_many_chunk_is_all_or_nothing(server: Server, prefix: str, redis: Any) -> None:
    """A batch that does not fit whole is refused whole, even if part of it would fit."""
    app = make_app(max_length=5)
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send_many([Blob("a"), Blob("b"), Blob("c")])
        with pytest.raises(trioqueue.QueueFull):
            await client.send_many([Blob("d"), Blob("e"), Blob("f")])
        assert await stream_len(redis, prefix, "blobs") == 3
        await client.send_many([Blob("d"), Blob("e")])
    assert await stream_len(redis, prefix, "blobs") == 5


async def test_send_many_chunks_are_separate_steps(server: Server, prefix: str, redis: Any) -> None:
    """Only the chunk that does not fit is refused: earlier chunks of the call stay sent."""
    app = make_app(max_length=SEND_CHUNK + SEND_CHUNK // 2)
    async with app.connect(server.url, prefix=prefix) as client:
        with pytest.raises(trioqueue.QueueFull):
            await client.send_many(Blob(str(i)) for i in range(SEND_CHUNK * 2))
    entries = await stream_entries(redis, prefix, "blobs")
    assert [orjson.loads(e["body"])["data"] for e in entries] == [str(i) for i in range(SEND_CHUNK)]


async def test_wrong_key_type_is_a_clear_broker_error(
    server: Server, prefix: str, redis: Any
) -> None:
    """A stream key holding another Redis type is reported as a key-prefix clash."""
    await redis.set(PartitionKeys(prefix, "pings").stream, "not a stream")
    app = make_app()
    async with app.connect(server.url, prefix=prefix) as client:
        with pytest.raises(trioqueue.BrokerError, match="another Redis type"):
            await client.send(Ping(1))


# ----------------------------------------------------------------------------- broker errors


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/0", "127.0.0.1:6380", "mysql://u:p@h/db"])
async def test_bad_url_scheme(url: str) -> None:
    """A URL trioqueue cannot use is refused with the accepted schemes, before connecting."""
    with pytest.raises(trioqueue.BrokerError) as info:
        async with make_app().connect(url):
            pass
    assert type(info.value) is trioqueue.BrokerError
    assert "unsupported broker URL scheme" in str(info.value)
    assert "redis://, rediss:// or unix:// (or redis+cluster://" in str(info.value)
    assert ":p@" not in str(info.value)


async def test_unreachable_host() -> None:
    """Nothing listening on the port is BrokerUnavailable naming the URL."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(trioqueue.BrokerUnavailable) as info:
        async with make_app().connect(url, connect_timeout=1.0):
            pass
    assert str(info.value).startswith(f"cannot reach broker {url}: ")


async def test_missing_unix_socket() -> None:
    """A unix socket path that does not exist is BrokerUnavailable too."""
    with pytest.raises(trioqueue.BrokerUnavailable, match="cannot reach broker unix:///"):
        async with make_app().connect("unix:///nonexistent/trioqueue.sock", connect_timeout=1.0):
            pass


CANARY = "canary-Pw-7f3e9a1b"


@pytest.fixture
async def acl_user(server: Server) -> Iterator[str]:
    """An ACL user on the session server whose password is the canary."""
    name = f"user{free_port()}"
    async with connected(server.url) as admin:
        await admin.acl_setuser(name, "on", f">{CANARY}", "~*", "+@all")
        try:
            yield name
        finally:
            await admin.acl_deluser([name])


def all_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)


async def test_wrong_password_is_auth_error_without_secret(server: Server, acl_user: str) -> None:
    """A wrong password is BrokerAuthError; neither the given nor the real password leaks."""
    wrong = f"{CANARY}-wrong"
    url = f"redis://{acl_user}:{wrong}@127.0.0.1:{server.port}/0"
    with pytest.raises(trioqueue.BrokerAuthError) as info:
        async with make_app().connect(url):
            pass
    text = all_text(info.value)
    assert "rejected the credentials" in str(info.value)
    assert f"redis://{acl_user}:***@127.0.0.1:{server.port}/0" in str(info.value)
    assert CANARY not in text


async def test_right_password_for_acl_user_works(
    server: Server, acl_user: str, prefix: str, redis: Any
) -> None:
    """The canary user can send: the auth test above fails for the password alone."""
    url = f"redis://{acl_user}:{CANARY}@127.0.0.1:{server.port}/0"
    async with make_app().connect(url, prefix=prefix) as client:
        await client.send(Ping(1))
    assert await stream_len(redis, prefix, "pings") == 1


async def test_password_required_but_missing(private_server: Server) -> None:
    """A server that requires a password refuses an anonymous client with BrokerAuthError."""
    async with connected(private_server.url) as admin:
        await admin.config_set({"requirepass": CANARY})
    with pytest.raises(trioqueue.BrokerAuthError) as info:
        async with make_app().connect(private_server.url):
            pass
    assert CANARY not in all_text(info.value)
    bad = private_server.url.replace("//", f"//:{CANARY}x@")
    with pytest.raises(trioqueue.BrokerAuthError) as info:
        async with make_app().connect(bad):
            pass
    assert CANARY not in all_text(info.value)
    assert ":***@" in str(info.value)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ReplyError("TRYAGAIN Multiple keys request during rehashing of slot"), True),
        (ReplyError("CLUSTERDOWN The cluster is down"), True),
        (ReplyError("LOADING Redis is loading the dataset in memory"), True),
        (ReplyError("MASTERDOWN Link with MASTER is down"), True),
        (ReplyError("READONLY You can't write against a read only replica."), True),
        (ReplyError("NOSCRIPT No matching script."), True),
        (ReplyError("NOGROUP No such key 'k' or consumer group 'g'"), False),
        (ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (ReplyError("WRONGPASS invalid username-password pair or user is disabled."), False),
        (ConnectionLost("server closed the connection"), True),
        (ReplyTimeout("no reply within 1.0s"), True),
    ],
)
def test_transient_errors_are_recognised_by_code(exc: Exception, transient: bool) -> None:
    """Error replies keep the server's code as their first word; retryable ones are
    known by it, and a lost connection is always worth a retry."""
    assert is_connection_error(exc) is transient
