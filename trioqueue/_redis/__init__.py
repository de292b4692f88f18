"""trioqueue's Redis client: Trio, ``hiredis`` for the protocol, nothing else.

``open_redis(url)`` (``_open.py``) gives a ``Redis`` for one server (``_client.py``),
or a ``ClusterRedis`` for a cluster (``_cluster.py``, routing by ``_slots.py``); its
connections (``_connection.py``) pipeline the commands of many tasks on one socket
and stay in step under cancellation; ``_transport.py`` drives the socket (or TLS
stream); ``_commands.py`` has the typed commands trioqueue uses; errors are
``ReplyError`` (the server said no) and ``ConnectionLost`` (no answer: outcome
unknown). See docs/explanation/architecture.md for why trioqueue has its own client.
"""

from trioqueue._redis._address import Address as Address
from trioqueue._redis._address import is_cluster_url as is_cluster_url
from trioqueue._redis._address import parse_cluster_url as parse_cluster_url
from trioqueue._redis._address import parse_url as parse_url
from trioqueue._redis._client import Redis as Redis
from trioqueue._redis._cluster import ClusterRedis as ClusterRedis
from trioqueue._redis._commands import Entry as Entry
from trioqueue._redis._commands import field_map as field_map
from trioqueue._redis._connection import Arg as Arg
from trioqueue._redis._errors import ConnectionLost as ConnectionLost
from trioqueue._redis._errors import RedisError as RedisError
from trioqueue._redis._errors import ReplyError as ReplyError
from trioqueue._redis._errors import ReplyTimeout as ReplyTimeout
from trioqueue._redis._errors import TLSError as TLSError
from trioqueue._redis._open import AnyRedis as AnyRedis
from trioqueue._redis._open import open_redis as open_redis
from trioqueue._redis._sentinel import PrimaryNotFound as PrimaryNotFound
from trioqueue._redis._sentinel import StalePrimary as StalePrimary
from trioqueue._redis._sentinel import is_sentinel_url as is_sentinel_url
from trioqueue._redis._sentinel import parse_sentinel_url as parse_sentinel_url
