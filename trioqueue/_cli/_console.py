"""Where the command line writes: results on standard output, the rest on standard error.

Results go alone on stdout so that scripts can read them (``trioqueue send`` prints job
ids, ``status --json`` one document); errors and the progress bar of ``run --burst``
go to stderr, as do the logs.
"""

from __future__ import annotations

from rich.console import Console

out = Console()
err = Console(stderr=True)
