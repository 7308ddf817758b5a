"""tsrevel: a TripleSeat -> Revel connector that creates each catering order exactly once.

The public library API (docs/library.md)::

    import tsrevel

    async with tsrevel.Connector.from_env() as connector:
        outcome = await connector.handle(body, headers)   # verify, store, process now
        preview = connector.map(payload)                  # RevelOrder | MappingFailure, no side effect

Importing tsrevel performs no I/O and reads no environment; fakes and a connector wired on them
are in ``tsrevel.testing``.
"""

import logging

from tsrevel.entrypoints.connector import Connector, Outcome
from tsrevel.domain.errors import ConfigError, GatewayError, PayloadError, SignatureError, TsrevelError
from tsrevel.domain.events import TripleSeatEvent, WebhookEnvelope
from tsrevel.domain.mapping import MappingConfig, MappingFailure
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.ports import EmailMessage
from tsrevel.entrypoints.settings import Settings
from tsrevel.version import __version__

__all__ = [
    "ConfigError",
    "Connector",
    "EmailMessage",
    "GatewayError",
    "MappingConfig",
    "MappingFailure",
    "Outcome",
    "PayloadError",
    "RevelOrder",
    "Settings",
    "SignatureError",
    "TripleSeatEvent",
    "TsrevelError",
    "WebhookEnvelope",
    "__version__",
]

# A library leaves logging to its host: without this, warnings would go to stderr via logging.lastResort.
logging.getLogger("tsrevel").addHandler(logging.NullHandler())
