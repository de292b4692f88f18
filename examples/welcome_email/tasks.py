"""The welcome-email app: one message type, one handler, one queue.

``config.toml`` points at ``tasks:app``; the worker (``trioqueue run config.toml``)
imports this module, and so does the web app in ``web.py``, which only sends.
"""

from __future__ import annotations

import logging

import attrs
import trio

import trioqueue

app = trioqueue.App("welcome_email")
log = logging.getLogger("welcome_email")


@attrs.frozen
class SendWelcomeEmail:
    """Ask a worker to send the welcome email to a new user."""

    email: str
    name: str


@app.handler(queue="emails", concurrency=8, retries=2)
async def send_welcome_email(msg: SendWelcomeEmail) -> None:
    job = trioqueue.current_job()
    await trio.sleep(0.1)  # stands in for the conversation with a mail server
    log.info("welcome email sent to %s <%s> (job %s)", msg.name, msg.email, job.job_id)
