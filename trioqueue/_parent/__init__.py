"""Several worker processes per host: ``trioqueue run --workers N``.

_parent.py    the parent supervisor: spawns, watches, restarts and stops them
_restart.py   restart delays and crash-loop detection (pure)
_link.py      the socket pair between the parent and each child
_child.py     the child's side: a normal supervisor, steered over the link
_metrics.py   one /metrics and /healthz for all the children
"""
