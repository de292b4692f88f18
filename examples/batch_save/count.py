"""``python count.py``: how many rows ``rows.db`` holds, and how many batches saved them."""

from __future__ import annotations

from contextlib import closing

from tasks import DATABASE, connect

if __name__ == "__main__":
    if not DATABASE.exists():
        print(f"no database yet at {DATABASE.name}: run a worker first")
    else:
        with closing(connect()) as db:
            rows, batches, largest = db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT batch), "
                "(SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM readings GROUP BY batch)) "
                "FROM readings"
            ).fetchone()
        print(f"{rows} rows in {DATABASE.name}, saved in {batches} batches (largest: {largest})")
