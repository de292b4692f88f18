"""Security: least-privilege ACL users, no secrets in output, nothing imported by name."""

from __future__ import annotations

import logging
import secrets
import traceback

import attrs
import pytest
import trio
from coredis.exceptions import ResponseError

import trioqueue
from tests.conftest import Server, free_port, make_config, wait_for
from trioqueue._redact import chainable, redact_url

# What a worker needs: the stream/script commands its loops and Lua scripts run.
# Documented in docs/how-to/security.md; keep both in sync.
WORKER_COMMANDS = (
    "+ping +hello +client|setname +client|setinfo +info +time +evalsha +eval +script|load "
    "+xgroup|create +xreadgroup +xinfo|consumers +xlen +zcard +exists +set +get +del "
    "+zadd +zrem +zremrangebyscore +hset +hget +hsetnx +subscribe +unsubscribe +xread +incr "
    "+xrevrange "
    # called from inside the scripts (ACL applies there too)
    "+xadd +xack +xdel +xpending +xclaim +xrange +xgroup|delconsumer +zrangebyscore "
    "+zrange +hmget +rpush +pexpire +publish +hincrby"
)
PRODUCER_COMMANDS = (
    "+ping +hello +client|setname +client|setinfo +evalsha +eval +script|load +set +get "
    "+del +exists +blpop +xadd +xdel +xlen +hget +hmget +xrange +xpending +zrange +zrem +rpush "
    "+pexpire +publish +time +zadd +xrevrange"
)


@attrs.frozen
class Echo:
    text: str


def make_app(seen: list[str]) -> trioqueue.App:
    app = trioqueue.App("secure")

    @app.handler(queue="echo")
    async def echo(msg: Echo) -> str:
        seen.append(msg.text)
        return msg.text.upper()

    return app


async def acl_user(admin: object, name: str, password: str, prefix: str, commands: str) -> None:
    rules = ["reset", "on", f">{password}", f"~{prefix}:*", f"&{prefix}:*", "-@all"]
    rules += commands.split()
    await admin.acl_setuser(name, *rules)  # type: ignore[attr-defined]


async def test_worker_and_producer_run_as_least_privilege_acl_users(
    server: Server, prefix: str, redis: object
) -> None:
    """A worker and a producer limited to their key prefix and commands do their jobs."""
    worker_pw, producer_pw = secrets.token_hex(8), secrets.token_hex(8)
    await acl_user(redis, f"{prefix}-worker", worker_pw, prefix, WORKER_COMMANDS)
    await acl_user(redis, f"{prefix}-producer", producer_pw, prefix, PRODUCER_COMMANDS)
    worker_url = f"redis://{prefix}-worker:{worker_pw}@127.0.0.1:{server.port}/0"
    producer_url = f"redis://{prefix}-producer:{producer_pw}@127.0.0.1:{server.port}/0"
    seen: list[str] = []
    app = make_app(seen)
    sup = trioqueue.Supervisor(app, make_config(worker_url, prefix))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        async with app.connect(producer_url, prefix=prefix) as client:
            job = await client.send(Echo("hi"))
            assert await client.result(job, timeout=10) == "HI"
            slow = await client.send(Echo("x"), queue="unused")
            assert await client.cancel(slow) == "removed"
            later = await client.send(Echo("later"), delay=30)
            assert (await client.status(later)).state == "scheduled"
            assert await client.retry_dead_letters("echo") == (0, 0)
        sup.shutdown()
    assert seen == ["hi"]


async def test_acl_user_cannot_touch_keys_outside_its_prefix(
    server: Server, prefix: str, redis: object
) -> None:
    """The producer ACL confines a client to the prefix: another prefix is refused."""
    pw = secrets.token_hex(8)
    await acl_user(redis, f"{prefix}-p", pw, prefix, PRODUCER_COMMANDS)
    url = f"redis://{prefix}-p:{pw}@127.0.0.1:{server.port}/0"
    app = make_app([])
    async with app.connect(url, prefix=f"{prefix}x") as client:
        with pytest.raises(trioqueue.BrokerAuthError):
            await client.send(Echo("no"))


async def test_password_never_appears_in_logs_or_errors(
    server: Server, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A canary password in the URL is absent from log lines and error messages."""
    canary = "CanaryPw" + secrets.token_hex(6)
    caplog.set_level(logging.DEBUG)
    bad_url = f"redis://someone:{canary}@127.0.0.1:{server.port}/0"
    app = make_app([])
    with pytest.raises(trioqueue.BrokerAuthError) as info:
        async with app.connect(bad_url, prefix=prefix):
            pass
    assert canary not in str(info.value)
    assert "***" in str(info.value) or "someone" in str(info.value)
    # A worker whose broker vanishes logs the outage: the URL it logs is redacted.
    unreachable = f"redis://someone:{canary}@127.0.0.1:1/0"
    with pytest.raises(trioqueue.BrokerUnavailable) as info2:
        await trioqueue.Supervisor(app, make_config(unreachable, prefix)).run()
    assert canary not in str(info2.value)
    assert canary not in caplog.text


async def test_message_naming_a_callable_is_dead_lettered_not_imported(
    config: trioqueue.Config, redis: object
) -> None:
    """A type name like os.system is never resolved: the entry goes to the dead letters."""
    from trioqueue._keys import PartitionKeys

    keys = PartitionKeys(config.broker.prefix, "echo")
    await redis.xadd(keys.stream, {"id": "evil", "type": "os.system", "body": '"touch /tmp/x"'})  # type: ignore[attr-defined]
    seen: list[str] = []
    app = make_app(seen)
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: sup.statistics().consumers["echo"].dead == 1)
        sup.shutdown()
    letters = await redis.xrange(keys.dead)  # type: ignore[attr-defined]
    fields = {k.decode(): v.decode() for k, v in letters[0].field_values.items()}
    assert fields["error_type"] == "UnknownMessageType"
    assert fields["type"] == "os.system"
    assert seen == []


async def test_broker_error_chains_the_original_error() -> None:
    """The error behind a ``BrokerError`` stays attached for the operator's traceback,
    and the traceback shows no password."""
    canary = "CanaryPw" + secrets.token_hex(6)
    url = f"redis://someone:{canary}@127.0.0.1:{free_port()}/0"
    with pytest.raises(trioqueue.BrokerUnavailable) as info:
        async with make_app([]).connect(url, connect_timeout=1.0):
            pass
    assert info.value.__cause__ is not None
    assert canary not in "".join(traceback.format_exception(info.value))


def test_an_error_showing_the_password_is_not_chained() -> None:
    """A reply that echoes the AUTH arguments, even deep in a chain, is dropped."""
    url = "redis://someone:s3cret@127.0.0.1:1/0"
    refused = ConnectionRefusedError("connection refused")
    assert chainable(refused, url) is refused
    echoed = ResponseError("ERR unknown command 'AUTH', with args beginning with: 's3cret'")
    assert chainable(echoed, url) is None
    wrapper = OSError("lost")
    wrapper.__context__ = echoed
    assert chainable(wrapper, url) is None
    assert chainable(echoed, "redis://127.0.0.1:1/0") is echoed


def test_redact_url_survives_a_bad_port() -> None:
    """An unparseable port makes the URL unshowable, not the redaction crash."""
    assert redact_url("redis://someone:s3cret@127.0.0.1:notaport/0") == "<unparseable url>"
    with pytest.raises(trioqueue.BrokerError, match="invalid broker URL <unparseable url>"):
        make_app([]).connect_sync("redis://someone:s3cret@127.0.0.1:notaport/0")
