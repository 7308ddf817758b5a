"""Hypothesis strategies for valid, realistic TripleSeat payloads, mapping configs and flags; needs the dev extra.

Payloads are plain dicts shaped like TripleSeat's JSON (ids as int or numeric string, money as
int, string or float with an exact repr) so they keep their meaning through ``json.dumps``.
Every strategy is importable from here; they are written by what they build:
``testing.value_strategies`` (ids, money, quantities), ``testing.payload_strategies`` (line
items, documents, events, invoices, webhooks), ``testing.json_strategies`` (arbitrary and
spoiled JSON) and ``testing.config_strategies`` (mappings, flags, policies).
"""

from __future__ import annotations

from tsrevel.testing.config_strategies import (
    mapping_configs,
    mapping_for,
    order_policies,
    safety_flags,
)
from tsrevel.testing.json_strategies import (
    TRICKY_JSON_SCALARS,
    json_scalars,
    json_values,
    mutated_payloads,
)
from tsrevel.testing.payload_strategies import (
    BILLING_TABLE,
    CATALOG,
    DOCUMENTED_TRIGGERS,
    EVENT_TRIGGERS,
    LEAD_TRIGGERS,
    LOCATION_IDS,
    SITE_ID,
    SITE_ZONE,
    documents,
    event_payloads,
    invoice_payloads,
    lead_payloads,
    line_items,
    refresh_financials,
    webhook_payloads,
)
from tsrevel.testing.value_strategies import (
    as_decimal,
    money,
    quantities,
    unknown_keys,
    wire_ids,
)

__all__ = [
    "BILLING_TABLE",
    "CATALOG",
    "DOCUMENTED_TRIGGERS",
    "EVENT_TRIGGERS",
    "LEAD_TRIGGERS",
    "LOCATION_IDS",
    "SITE_ID",
    "SITE_ZONE",
    "TRICKY_JSON_SCALARS",
    "as_decimal",
    "documents",
    "event_payloads",
    "invoice_payloads",
    "json_scalars",
    "json_values",
    "lead_payloads",
    "line_items",
    "mapping_configs",
    "mapping_for",
    "money",
    "mutated_payloads",
    "order_policies",
    "quantities",
    "refresh_financials",
    "safety_flags",
    "unknown_keys",
    "webhook_payloads",
    "wire_ids",
]
