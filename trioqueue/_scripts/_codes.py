"""The error codes scripts reply with, and the exception each one becomes.

A script refuses with ``redis.error_reply('<CODE> <detail>...')``; its header lists
the codes it may return. This table is the only place that reads them. A call
translates only the codes its builder declares (``Call.errors``); any other error
reply reaches the caller as the client library raised it, for the callers' own
broker-error handling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from trioqueue._errors import BrokerError, MessageTooLarge, QueueFull


class LeaseLost(Exception):
    """An ordered partition's lease is no longer the caller's (reply ``FENCED``).

    A worker-internal signal: the consumer of that partition stops.
    """

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r}: the partition's lease is held by another member")


def _wrong_type(queue: str, _: Sequence[str]) -> Exception:
    return BrokerError(
        f"queue {queue!r}: its stream key holds another Redis type; "
        "another program uses the same key prefix"
    )


# code -> exception, from the queue's name and the words after the code.
CODES: dict[str, Callable[[str, Sequence[str]], Exception]] = {
    "QUEUEFULL": lambda queue, detail: QueueFull(queue, int(detail[0])),
    "TOOLARGE": lambda queue, detail: MessageTooLarge(queue, int(detail[0]), int(detail[1])),
    "FENCED": lambda queue, _: LeaseLost(queue),
    # Not a script's own code: Redis refuses a command on a key of another type.
    "WRONGTYPE": _wrong_type,
}

# Some clients strip the code from the message; the text still identifies it.
_WRONG_TYPE_TEXT = "Operation against a key holding the wrong kind"


def reply_error(message: str, *, queue: str, accepted: frozenset[str]) -> Exception | None:
    """The exception for the error reply ``message``, if its code is in ``accepted``."""
    code, _, rest = message.partition(" ")
    if _WRONG_TYPE_TEXT in message:
        code = "WRONGTYPE"
    if code not in accepted:
        return None
    return CODES[code](queue, rest.split())
