"""Byte transports for a connection: a plain socket driven directly, or a Trio stream.

TCP and unix sockets are driven without Trio's stream layer: a non-blocking
``send``/``recv`` is tried first and the task waits for the socket only when it would
block. On this path a command costs one wait for the reply and nothing else, and a
write is never left half done: it is not cancellable once started. TLS goes through
``trio.SSLStream`` (certificate and host name checked by the ``ssl`` context).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable

import trio

from trioqueue._redis._errors import ConnectionLost, TLSError

__all__ = ["SocketTransport", "StreamTransport", "Transport", "open_transport"]

READ_SIZE = 1 << 18


class SocketTransport:
    """A connected non-blocking stdlib socket."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False

    async def send_all(self, data: bytes) -> None:
        """Write all of ``data``; waits (shielded) only while the socket is full."""
        sock, view = self._sock, memoryview(data)
        while view:
            if self._closed:
                raise ConnectionLost("connection closed")
            try:
                sent = sock.send(view)
            except BlockingIOError:
                # Shielded: part of a command may be on the wire already. The owner's
                # watchdog closes the socket if the server stops reading.
                with trio.CancelScope(shield=True):
                    await _wait(trio.lowlevel.wait_writable, sock)
                continue
            except OSError as exc:
                raise ConnectionLost(f"write failed: {exc}") from exc
            view = view[sent:]

    async def receive(self) -> bytes:
        """Bytes from the server (waits for some); a cancelled wait takes nothing."""
        sock = self._sock
        while True:
            if self._closed:
                raise ConnectionLost("connection closed")
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:
                await _wait(trio.lowlevel.wait_readable, sock)
                continue
            except OSError as exc:
                raise ConnectionLost(f"read failed: {exc}") from exc
            if not data:
                raise ConnectionLost("server closed the connection")
            return data

    def close(self) -> None:
        """Close now; any task waiting on the socket wakes with an error."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()


async def _wait(wait: Callable[[socket.socket], Awaitable[None]], sock: socket.socket) -> None:
    try:
        await wait(sock)
    except trio.ClosedResourceError as exc:
        raise ConnectionLost("connection closed") from exc


class StreamTransport:
    """A Trio stream (TLS)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._closed = False

    async def send_all(self, data: bytes) -> None:
        """Write all of ``data``, shielded (a cut-off TLS record cannot be resumed)."""
        try:
            with trio.CancelScope(shield=True):
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(f"write failed: {exc}") from exc

    async def receive(self) -> bytes:
        """Bytes from the server (waits for some)."""
        try:
            data = await self._stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(f"read failed: {exc}") from exc
        if not data:
            raise ConnectionLost("server closed the connection")
        return bytes(data)

    def close(self) -> None:
        """Close the socket under the stream now."""
        if self._closed:
            return
        self._closed = True
        inner: object = self._stream
        while isinstance(inner, trio.SSLStream):
            inner = inner.transport_stream
        if isinstance(inner, trio.SocketStream):
            trio.lowlevel.notify_closing(inner.socket)
            inner.socket.close()


Transport = SocketTransport | StreamTransport


async def open_transport(
    *,
    host: str | None,
    port: int,
    path: str | None,
    tls: ssl.SSLContext | None,
) -> Transport:
    """Connect to ``path`` (a unix socket) or ``host:port``, over TLS if ``tls``."""
    if path is not None:
        unix = await trio.open_unix_socket(path)
        return SocketTransport(_detach(unix))
    stream = await trio.open_tcp_stream(host or "127.0.0.1", port)
    if tls is None:
        return SocketTransport(_detach(stream))
    ssl_stream = trio.SSLStream(stream, tls, server_hostname=host, https_compatible=False)
    try:
        await ssl_stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(ssl_stream)
        reason = exc.__cause__ or exc
        if isinstance(reason, ssl.SSLCertVerificationError | ssl.SSLError):
            # A certificate that does not verify will not verify on a retry either.
            raise TLSError(f"TLS handshake with {host}:{port} failed: {reason}") from reason
        raise ConnectionLost(f"TLS handshake with {host}:{port} failed: {reason}") from exc
    except BaseException:
        await trio.aclose_forcefully(ssl_stream)
        raise
    return StreamTransport(ssl_stream)


def _detach(stream: trio.SocketStream) -> socket.socket:
    # The stdlib socket under Trio's (TCP_NODELAY already set by Trio for TCP).
    trio_sock = stream.socket
    fd = trio_sock.detach()
    return socket.socket(trio_sock.family, trio_sock.type, trio_sock.proto, fileno=fd)
