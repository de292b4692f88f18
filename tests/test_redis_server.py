"""Against Redis itself (7.0, Debian's build) when available: TLS and script compatibility.

The embedded Valkey has no TLS support, so these tests need a ``redis-server``:
``TRIOQUEUE_TEST_REDIS_SERVER``, ``.ci/redis/redis-server`` (fetched by
``.ci/fetch-redis``) or one on PATH. Without one they skip, saying so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio
import trustme

import trioqueue
from tests.conftest import Server, free_port, make_config
from trioqueue._connection import connected
from trioqueue._errors import BrokerError

ROOT = Path(__file__).resolve().parent.parent


def redis_server_binary() -> str | None:
    candidates = [
        os.environ.get("TRIOQUEUE_TEST_REDIS_SERVER"),
        str(ROOT / ".ci" / "redis" / "redis-server"),
        shutil.which("redis-server"),
    ]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return None


REDIS = redis_server_binary()
needs_redis = pytest.mark.skipif(
    REDIS is None, reason="no redis-server (run .ci/fetch-redis or put one on PATH)"
)


@attrs.frozen
class Add:
    a: int
    b: int


def make_app() -> trioqueue.App:
    app = trioqueue.App("compat")

    @app.handler(queue="add", retries=1, backoff=trioqueue.Backoff(initial=0.01))
    async def add(msg: Add) -> int:
        if msg.a < 0:
            raise ValueError("negative")
        return msg.a + msg.b

    return app


async def round_trip(url: str, prefix: str, tls_ca_file: str | None = None) -> None:
    app = make_app()
    cfg = make_config(
        url, prefix, broker={"url": url, "prefix": prefix, "tls_ca_file": tls_ca_file}
    )
    sup = trioqueue.Supervisor(app, cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        async with app.connect(url, prefix=prefix, tls_ca_file=tls_ca_file) as client:
            job = await client.send(Add(2, 3))
            assert await client.result(job, timeout=10) == 5
            bad = await client.send(Add(-1, 0))
            with pytest.raises(trioqueue.JobFailed, match="negative"):
                await client.result(bad, timeout=10)
            letters = await client.dead_letters("add")
            assert [d.job_id for d in letters] == [bad.id]
        sup.shutdown()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Server]:
    assert REDIS is not None
    srv = Server(REDIS, free_port(), tmp_path)
    srv.start()
    yield srv
    srv.stop()


@needs_redis
async def test_scripts_and_loops_work_on_redis_7(redis_server: Server, prefix: str) -> None:
    """Send, ack with results, retry and dead-letter on Redis 7.0 as on Valkey."""
    await round_trip(redis_server.url, prefix)


def make_certs(d: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "ext.cnf")  # fmt: skip


@needs_redis
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
async def test_rediss_with_ca_file(tmp_path: Path, prefix: str) -> None:
    """A TLS-only server with a private CA: rediss:// plus broker.tls_ca_file works."""
    assert REDIS is not None
    make_certs(tmp_path)
    port = free_port()
    srv = Server(
        REDIS,
        free_port(),
        tmp_path,
        extra=[
            "--tls-port", str(port),
            "--tls-cert-file", str(tmp_path / "server.crt"),
            "--tls-key-file", str(tmp_path / "server.key"),
            "--tls-ca-cert-file", str(tmp_path / "ca.crt"),
            "--tls-auth-clients", "no",
        ],
    )  # fmt: skip
    srv.start()
    try:
        await round_trip(f"rediss://127.0.0.1:{port}/0", prefix, str(tmp_path / "ca.crt"))
        # Without the CA the certificate cannot be verified: a clear error, no hang.
        with pytest.raises(trioqueue.BrokerError):
            async with make_app().connect(f"rediss://127.0.0.1:{port}/0", connect_timeout=3):
                pass
    finally:
        srv.stop()


@pytest.fixture
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A server speaking TLS only, its certificate for ``localhost`` from a private CA."""
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-auth-clients", "no"]
    tls += ["--tls-cert-file", str(d / "cert.pem"), "--tls-key-file", str(d / "key.pem")]
    tls += ["--tls-ca-cert-file", str(d / "ca.pem")]
    # The plain port only tells the fixture the server is up.
    assert REDIS is not None
    srv = Server(REDIS, free_port(), d, extra=tls)
    srv.start()
    yield tls_port, d / "ca.pem"
    srv.stop()


@needs_redis
async def test_tls_checks_the_certificate_and_the_host_name(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    async with connected(f"rediss://localhost:{port}/0", tls_ca_file=str(ca)) as redis:
        await redis.set("tls", "yes")
        assert await redis.get("tls") == b"yes"
    # Not signed by a CA the client trusts.
    with pytest.raises(BrokerError, match="CERTIFICATE_VERIFY_FAILED"):
        async with connected(f"rediss://localhost:{port}/0", connect_timeout=2.0):
            pass
    # Signed, but for another name.
    with pytest.raises(BrokerError, match="CERTIFICATE_VERIFY_FAILED"):
        async with connected(f"rediss://127.0.0.1:{port}/0", tls_ca_file=str(ca)):
            pass


@pytest.fixture
def tls_sentinel(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A sentinel and a primary that both speak TLS only: (``rediss+sentinel://`` URL,
    CA file). The sentinel is reached by name, the primary at the address it gives."""
    assert REDIS is not None
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    files = {"cert-file": "cert.pem", "key-file": "key.pem", "ca-cert-file": "ca.pem"}
    tls = [arg for k, v in files.items() for arg in (f"--tls-{k}", str(tmp_path / v))]
    primary_tls = free_port()
    (tmp_path / "primary").mkdir()
    # The plain port only tells the fixture the server is up; the sentinel uses TLS.
    primary = Server(REDIS, free_port(), tmp_path / "primary", extra=[
        "--tls-port", str(primary_tls), "--tls-auth-clients", "no", *tls,
    ])  # fmt: skip
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port 0\ntls-port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        + "".join(f"tls-{k} {tmp_path / v}\n" for k, v in files.items())
        + "tls-auth-clients no\ntls-replication yes\n"
        f"sentinel monitor mymaster 127.0.0.1 {primary_tls} 1\n"
    )
    primary.start()
    sentinel = subprocess.Popen(
        [REDIS, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", sentinel_port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the TLS sentinel did not start"
                time.sleep(0.05)
        yield f"rediss+sentinel://localhost:{sentinel_port}/mymaster", str(tmp_path / "ca.pem")
    finally:
        sentinel.kill()
        sentinel.wait()
        primary.stop()


@needs_redis
async def test_rediss_sentinel_asks_and_reaches_the_primary_over_tls(
    tls_sentinel: tuple[str, str], prefix: str
) -> None:
    """``rediss+sentinel://``: the Trio client, a worker and the sync client find the
    primary through a TLS-only sentinel, checking both certificates against the CA
    file; without it, they refuse."""
    url, ca_file = tls_sentinel
    app = make_app()

    def sync_send() -> trioqueue.Job:
        with app.connect_sync(url, prefix=prefix, tls_ca_file=ca_file) as sync:
            return sync.send(Add(20, 22))

    early = await trio.to_thread.run_sync(sync_send)
    await round_trip(url, prefix, tls_ca_file=ca_file)

    def sync_result() -> object:
        with app.connect_sync(url, prefix=prefix, tls_ca_file=ca_file) as sync:
            return sync.result(early, timeout=10)

    assert await trio.to_thread.run_sync(sync_result) == 42
    with pytest.raises(BrokerError, match="CERTIFICATE_VERIFY_FAILED"):
        async with app.connect(url, prefix=prefix, connect_timeout=2.0):
            pass
