"""The word-count app: a worker counts the words of a file and stores the count.

A plain ``def`` handler runs in a worker thread, so reading a large file does not
block the worker's other jobs. Its return annotation (``int``) makes the worker
store the result, which ``wordcount.py result`` (``client.result``) reads back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs

import trioqueue

app = trioqueue.App("word_count")
log = logging.getLogger("word_count")


@attrs.frozen
class CountWords:
    """Count the words of the file at ``path`` (an absolute path)."""

    path: str


@app.handler(queue="words", concurrency=4, timeout=30, retries=1)
def count_words(msg: CountWords) -> int:
    text = Path(msg.path).read_text(encoding="utf-8", errors="replace")
    count = len(text.split())
    log.info("%s: %d words (job %s)", msg.path, count, trioqueue.current_job().job_id)
    return count
