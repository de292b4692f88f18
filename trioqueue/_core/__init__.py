"""The client algorithm without I/O, driven by ``Client`` (Trio) and ``SyncClient``.

Each operation is written once, as a generator of commands (``_commands``): routing,
encoding, partition counts, finding a job by id, which script calls to make (the typed
calls of ``_scripts``) and what to make of their replies all live here, so the two
clients cannot drift apart. A driver only runs each command with its library and turns
that library's errors into trioqueue's (with ``_broker_errors``).
"""
