"""The batch-save app: readings arrive one job each and are saved in bulk.

``batch_size``/``flush_interval`` make the worker call ``save_rows`` with up to 200
rows at once, or with fewer once 0.5 s passed since the first of them arrived. Each
call is one SQLite transaction with one ``executemany``. ``save_rows`` is a plain
``def``, so it runs in a worker thread and the blocking database calls do not stall
the worker's Trio loop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from contextlib import closing
from pathlib import Path

import attrs

import trioqueue

app = trioqueue.App("batch_save")
log = logging.getLogger("batch_save")

DATABASE = Path(__file__).resolve().parent / "rows.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id TEXT PRIMARY KEY,     -- chosen by the producer: a redelivered row is not saved twice
    sensor TEXT NOT NULL,
    value REAL NOT NULL,
    batch TEXT NOT NULL      -- which save_rows call wrote it
)
"""


@attrs.frozen
class Row:
    """One sensor reading to save."""

    id: str
    sensor: str
    value: float


# Batches run in threads, several at once: switching the journal mode needs the
# database to itself and fails at once ("database is locked") instead of waiting, so
# the threads of one process set it up one at a time.
_SETUP = threading.Lock()


def connect(path: Path = DATABASE) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    with _SETUP:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)
    return db


@app.handler(queue="rows", batch_size=200, flush_interval=0.5)
def save_rows(rows: list[Row]) -> None:
    batch = uuid.uuid4().hex
    with closing(connect()) as db, db:  # `with db`: one transaction, committed at the end
        db.executemany(
            "INSERT OR IGNORE INTO readings (id, sensor, value, batch) VALUES (?, ?, ?, ?)",
            [(row.id, row.sensor, row.value, batch) for row in rows],
        )
    log.info("saved %d rows in one executemany", len(rows))
