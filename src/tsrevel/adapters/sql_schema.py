"""The one schema definition of both SQL stores: each migration once, with the few type words in which SQLite and PostgreSQL differ.

A database created by any earlier tsrevel upgrades through the same numbered migrations, so each
one keeps the effect it always had on each database (history is never edited): migration 1 gave
SQLite foreign keys from the ledger and the outbox to deliveries, PostgreSQL none (``{REF}``), and
migration 4 gives PostgreSQL the same. Statements marked ``PG_ONLY`` exist on PostgreSQL alone.
"""

from __future__ import annotations

import re

from tsrevel.adapters.sql_rows import literals
from tsrevel.domain.deliveries import PROCESSING, QUEUED, RETRYING
from tsrevel.domain.ports import EMAIL_PENDING, EMAIL_RETRYING, EMAIL_SENDING

PG_ONLY = "postgresql only: "
SQLITE_ONLY = "sqlite only: "

_WORDS = {
    "sqlite": {"ID": "INTEGER PRIMARY KEY AUTOINCREMENT", "BIG": "INTEGER", "BLOB": "BLOB", "TIME": "TEXT",
               "JSON": "TEXT", "REF": " REFERENCES deliveries (id)"},
    "postgresql": {"ID": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BIG": "BIGINT", "BLOB": "BYTEA",
                   "TIME": "TIMESTAMPTZ", "JSON": "JSONB", "REF": ""},
}
_BOOL = {"sqlite": r"INTEGER CHECK (\1 IN (0, 1))", "postgresql": "BOOLEAN"}

_PENDING_DELIVERY = ", ".join(literals((QUEUED, RETRYING, PROCESSING)))
_PENDING_EMAIL = ", ".join(literals((EMAIL_PENDING, EMAIL_RETRYING, EMAIL_SENDING)))

_SCHEMA: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE deliveries (
            id {ID},
            key TEXT NOT NULL UNIQUE,
            body {BLOB} NOT NULL,
            correlation_id TEXT NOT NULL,
            received_at {TIME} NOT NULL,
            trigger_type TEXT,
            event_id TEXT,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {TIME},
            last_error TEXT,
            order_reference TEXT,
            result TEXT,
            lease_token {BIG} NOT NULL DEFAULT 0,
            lease_until {TIME},
            updated_at {TIME} NOT NULL,
            header_names {JSON} NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX deliveries_by_state ON deliveries (state, id)",
        "CREATE INDEX deliveries_by_event ON deliveries (event_id, state)",
        # Only pending rows, in arrival order: a claim walks it instead of sorting the whole backlog.
        PG_ONLY + f"CREATE INDEX deliveries_claimable ON deliveries (id) WHERE state IN ({_PENDING_DELIVERY})",
        """CREATE TABLE timeline (
            id {ID},
            delivery_id {BIG} NOT NULL REFERENCES deliveries (id),
            at {TIME} NOT NULL,
            state TEXT NOT NULL,
            note TEXT NOT NULL
        )""",
        "CREATE INDEX timeline_by_delivery ON timeline (delivery_id, id)",
        """CREATE TABLE orders (
            id {ID},
            event_id TEXT NOT NULL UNIQUE,
            reference TEXT NOT NULL,
            establishment_id {BIG} NOT NULL,
            delivery_id {BIG} NOT NULL{REF},
            state TEXT NOT NULL CHECK (state IN ('pending', 'created')),
            revel_order_id {BIG},
            revel_uri TEXT,
            snapshot TEXT,
            created_at {TIME} NOT NULL,
            updated_at {TIME} NOT NULL
        )""",
        """CREATE TABLE flags (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            enable_connector BOOL(enable_connector),
            dry_run BOOL(dry_run),
            actor TEXT,
            reason TEXT,
            updated_at {TIME}
        )""",
        """CREATE TABLE emails (
            id {ID},
            delivery_id {BIG}{REF},
            correlation_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            recipients {JSON} NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {TIME},
            last_error TEXT,
            created_at {TIME} NOT NULL,
            sent_at {TIME},
            lease_token {BIG} NOT NULL DEFAULT 0,
            lease_until {TIME}
        )""",
        "CREATE INDEX emails_by_state ON emails (state, id)",
        PG_ONLY + f"CREATE INDEX emails_claimable ON emails (id) WHERE state IN ({_PENDING_EMAIL})",
        "CREATE INDEX emails_by_delivery ON emails (delivery_id, id)",
        """CREATE TABLE audit (
            id {ID},
            at {TIME} NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at {TIME} NOT NULL)",
    ),
    (
        # Small named values that must survive restarts (e.g. a rotated OAuth refresh token).
        "CREATE TABLE kv (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at {TIME} NOT NULL)",
        "CREATE INDEX deliveries_by_updated ON deliveries (updated_at)",
    ),
    (
        # Catch-up sync: how each delivery came, the event versions seen, and named leases (one poll at a time).
        "ALTER TABLE deliveries ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook'",
        """CREATE TABLE event_versions (
            version TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            delivery_id {BIG},
            seen_at {TIME} NOT NULL
        )""",
        "CREATE TABLE leases (name TEXT PRIMARY KEY, token {BIG} NOT NULL, holder TEXT NOT NULL, until {TIME} NOT NULL)",
    ),
    (
        # PostgreSQL gets the foreign keys SQLite has had since migration 1: the ledger and the outbox
        # point at real deliveries. NOT VALID checks new and changed rows only, so it is instant on a
        # big table (no scan of the rows already there).
        PG_ONLY + "ALTER TABLE orders ADD CONSTRAINT orders_delivery_fk FOREIGN KEY (delivery_id) REFERENCES deliveries (id) NOT VALID",
        PG_ONLY + "ALTER TABLE emails ADD CONSTRAINT emails_delivery_fk FOREIGN KEY (delivery_id) REFERENCES deliveries (id) NOT VALID",
        # Each pruned delivery is looked up in the ledger (by prune and by the key's check): an index, not a scan.
        "CREATE INDEX orders_by_delivery ON orders (delivery_id)",
    ),
)


def migrations(dialect: str) -> tuple[tuple[str, ...], ...]:
    """Every migration's statements in the dialect's words ("sqlite" or "postgresql")."""
    words, other = _WORDS[dialect], PG_ONLY if dialect == "sqlite" else SQLITE_ONLY
    return tuple(
        tuple(
            re.sub(r"BOOL\((\w+)\)", _BOOL[dialect], statement.removeprefix(PG_ONLY).removeprefix(SQLITE_ONLY))
            .format(**words)
            for statement in migration if not statement.startswith(other)
        )
        for migration in _SCHEMA
    )


def next_migration(known: tuple[tuple[str, ...], ...], current: int) -> tuple[str, ...] | None:
    """The statements that bring a database at version current one step on; None when it is current."""
    if current > len(known):
        raise RuntimeError(f"database schema version {current} is newer than this tsrevel knows ({len(known)}); upgrade tsrevel")
    return None if current == len(known) else known[current]
