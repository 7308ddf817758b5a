"""Loopback HTTP servers that play Revel, SendGrid and TripleSeat for integration tests, with scriptable faults.

Each server listens on 127.0.0.1 on a port the OS picks, answers from a background thread
(one thread per connection, HTTP/1.1 keep-alive like the real services), records every
request, and stops completely on ``stop()`` or when its ``with`` block ends, waking any
request it was told to hang.

Faults: ``server.script(ServerFault.status(503), ServerFault.reset())`` queues behaviours. Each
request looks at the *head* of the queue only: if the head applies (no ``path``, or the request
path starts with it) the request gets it (one of its ``times``), otherwise the request is
answered normally and the head waits.

The three servers hold one core each (``testing.loopback``, composition, no base class) and
differ only in their app: ``testing.revel_server``, ``testing.sendgrid_server`` and
``testing.tripleseat_server``; what they record, answer and are scripted with is
``testing.exchanges``. Every name is importable from here.
"""

from __future__ import annotations

from tsrevel.testing.exchanges import (
    CREATE_THEN_STALL,
    HANG,
    HTML,
    HTML_LOGIN_PAGE,
    JSON,
    RESET,
    STATUS,
    TRICKLE,
    RecordedRequest,
    Reply,
    ServerFault,
)
from tsrevel.testing.loopback import App
from tsrevel.testing.revel_server import MAX_LIMIT, FakeRevelServer
from tsrevel.testing.sendgrid_server import FakeSendGridServer
from tsrevel.testing.tripleseat_server import FakeTripleSeatServer

__all__ = [
    "CREATE_THEN_STALL",
    "HANG",
    "HTML",
    "HTML_LOGIN_PAGE",
    "JSON",
    "MAX_LIMIT",
    "RESET",
    "STATUS",
    "TRICKLE",
    "App",
    "FakeRevelServer",
    "FakeSendGridServer",
    "FakeTripleSeatServer",
    "RecordedRequest",
    "Reply",
    "ServerFault",
]
