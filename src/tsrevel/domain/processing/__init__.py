"""The use cases (accept a webhook, process a delivery, send an email, replay), written against ports only.

``Processor`` (processor.py) is the one object the entrypoints share; each use case lives in the
module named for what it does: intake, worker_step and delivery_pass, outbox, operator_actions,
flags, mapping_reload. Every name importable from ``tsrevel.domain.processing`` before the split
still is, from here.
"""

from tsrevel.domain.processing.delivery_pass import BUSY_RECHECK_S, STORE_RECHECK_S, WITHDRAWN_VALUE, DeliveryPass
from tsrevel.domain.processing.flags import resolve_flags
from tsrevel.domain.processing.intake import IntakeResult, Trace
from tsrevel.domain.processing.mapping_reload import MAPPING_RELOAD_VALUE, MappingStatus
from tsrevel.domain.processing.processor import CRASH_POINTS, ProcessingSettings, Processor, no_crash

__all__ = [
    "BUSY_RECHECK_S",
    "CRASH_POINTS",
    "MAPPING_RELOAD_VALUE",
    "STORE_RECHECK_S",
    "WITHDRAWN_VALUE",
    "DeliveryPass",
    "IntakeResult",
    "MappingStatus",
    "ProcessingSettings",
    "Processor",
    "Trace",
    "no_crash",
    "resolve_flags",
]
