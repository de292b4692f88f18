"""The quickstart app: two message types, two handlers, two queues.

`config.toml` points at this module (``app = "tasks:app"``); `trioqueue run`
imports it, and so does `send.py`.
"""

from __future__ import annotations

import attrs
import trio

import trioqueue

app = trioqueue.App("quickstart")


@attrs.frozen
class SendWelcomeEmail:
    email: str
    name: str


@attrs.frozen
class CountWords:
    text: str


@app.handler(queue="emails", concurrency=8)
async def send_welcome_email(msg: SendWelcomeEmail) -> None:
    if msg.email.endswith(".invalid"):
        # Any exception fails this attempt; the job is retried, then dead-lettered.
        raise ValueError(f"cannot deliver to {msg.email}")
    await trio.sleep(0.1)  # stands in for talking to a mail server
    print(f"welcome mail sent to {msg.name} <{msg.email}>")


@app.handler(queue="words")
async def count_words(msg: CountWords) -> int:
    # The return value is kept as the job's result; client.result() gives it back as an int.
    return len(msg.text.split())
