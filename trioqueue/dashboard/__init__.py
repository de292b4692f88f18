"""The web dashboard: ``trioqueue dashboard CONFIG``, or mounted in your own ASGI app.

Needs the ``dashboard`` extra (``pip install 'trioqueue[dashboard]'``): Starlette, served
on Trio by Hypercorn's Trio worker. See docs/how-to/dashboard.md.
"""

from trioqueue.dashboard._app import TOKEN_ENV, Dashboard, create_app
from trioqueue.dashboard._snapshot import Snapshot

__all__ = ["TOKEN_ENV", "Dashboard", "Snapshot", "create_app"]
