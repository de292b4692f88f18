"""Every Lua script trioqueue runs: its source in ``trioqueue/_lua/<name>.lua``, its
typed call here.

Build a call with the builder of the same name (``send``, ``ack``, ...: named
arguments in, ``KEYS``/``ARGV`` built in one place), then run it with ``run`` (trioqueue's
own client: the Trio client and the workers) or ``run_sync`` (redis-py: ``SyncClient``,
in ``trioqueue/_sync_redis.py``); either returns the reply parsed into a typed value::

    sent = await run(redis, send(keys, items, max_length=0, max_message_bytes=2**20,
                                 unique=False, due=0))

Rules the scripts keep (see docs/explanation/delivery.md):

- each script starts with a ``#!lua`` line so the server applies the safe defaults
  (all keys declared, single slot, refused on read-only replicas);
- every key a script touches comes in ``KEYS``, built by ``_keys.py``; a script never
  derives one from another (``tests/test_lua.py`` checks it);
- scripts that only free memory (acknowledge, renew, purge) declare ``allow-oom`` so
  a full server can still be drained; scripts that add data keep the default and fail
  definitely under OOM;
- anything that settles a delivery first checks that the entry is still pending
  *and owned by this consumer*, because ``XACK`` itself checks no owner: a worker that
  was paused past its heartbeat TTL is fenced instead of acknowledging a job another
  member now runs;
- due times come from the server's ``TIME``, never from a worker's clock;
- error replies carry a code from ``_codes.CODES``, the one place that maps them to
  exceptions.
"""

from trioqueue._scripts._call import Call as Call
from trioqueue._scripts._call import run as run
from trioqueue._scripts._call import run_then as run_then
from trioqueue._scripts._codes import LeaseLost as LeaseLost
from trioqueue._scripts._members import Fetched as Fetched
from trioqueue._scripts._members import cron_claim as cron_claim
from trioqueue._scripts._members import ensure_group as ensure_group
from trioqueue._scripts._members import forget_consumer as forget_consumer
from trioqueue._scripts._members import heartbeat as heartbeat
from trioqueue._scripts._members import lease_acquire as lease_acquire
from trioqueue._scripts._members import lease_release as lease_release
from trioqueue._scripts._members import lease_renew as lease_renew
from trioqueue._scripts._members import members_touch as members_touch
from trioqueue._scripts._members import ordered_fetch as ordered_fetch
from trioqueue._scripts._members import server_time as server_time
from trioqueue._scripts._producer import CancelOutcome as CancelOutcome
from trioqueue._scripts._producer import InDelayed as InDelayed
from trioqueue._scripts._producer import InStream as InStream
from trioqueue._scripts._producer import Resent as Resent
from trioqueue._scripts._producer import SendItem as SendItem
from trioqueue._scripts._producer import Sent as Sent
from trioqueue._scripts._producer import cancel as cancel
from trioqueue._scripts._producer import dlq_retry_ids as dlq_retry_ids
from trioqueue._scripts._producer import dlq_retry_range as dlq_retry_range
from trioqueue._scripts._producer import find as find
from trioqueue._scripts._producer import pause as pause
from trioqueue._scripts._producer import send as send
from trioqueue._scripts._settle import Acked as Acked
from trioqueue._scripts._settle import AckItem as AckItem
from trioqueue._scripts._settle import Claimed as Claimed
from trioqueue._scripts._settle import Promoted as Promoted
from trioqueue._scripts._settle import Reclaimed as Reclaimed
from trioqueue._scripts._settle import ReclaimedDead as ReclaimedDead
from trioqueue._scripts._settle import Signals as Signals
from trioqueue._scripts._settle import Started as Started
from trioqueue._scripts._settle import Tally as Tally
from trioqueue._scripts._settle import Touched as Touched
from trioqueue._scripts._settle import ack as ack
from trioqueue._scripts._settle import dead as dead
from trioqueue._scripts._settle import progress as progress
from trioqueue._scripts._settle import promote as promote
from trioqueue._scripts._settle import reclaim as reclaim
from trioqueue._scripts._settle import reclaim_dead as reclaim_dead
from trioqueue._scripts._settle import retry as retry
from trioqueue._scripts._settle import touch as touch
