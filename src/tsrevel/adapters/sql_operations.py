"""The store operations in SQL, written once for SQLite and PostgreSQL: each an ``async def`` over a Db, run in one engine transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tsrevel.adapters.sql_rows import add_timeline, delivery_from_row, flags_from_row, get_delivery, ledger_entry
from tsrevel.adapters.sql_rows import literals, time_or_none
from tsrevel.adapters.store_common import utc, utc_or_none
from tsrevel.domain.deliveries import (
    DONE,
    IGNORED,
    LEDGER_CREATED,
    LEDGER_PENDING,
    PENDING_STATES,
    PROCESSING,
    QUEUED,
    Delivery,
    LedgerEntry,
    NewDelivery,
    TimelineEntry,
    duplicate_by_version,
)
from tsrevel.domain.orders import OrderRef
from tsrevel.domain.verdict import Verdict
from tsrevel.domain.ports import BUSY, EMAIL_PENDING, RESERVED, EmailMessage, FlagOverrides, Reservation
from tsrevel.domain.store_rules import (
    CLAIMABLE_STATES,
    EMAIL_CLAIMABLE_STATES,
    PASS_TO_ME,
    PRUNABLE_STATES,
    SETTLED_EMAIL_STATES,
    discardable,
    intake_note,
    missing_delivery,
    replayable,
    reservation_outcome,
)

if TYPE_CHECKING:
    from tsrevel.adapters.sql_store import Db, Row


def marks(values: Sequence[object]) -> str:
    return ", ".join("%s" for _ in values)


# A missing next_attempt_at or lease_until counts as "due" (store_rules.due); states are literals,
# so that even a generic plan can use PostgreSQL's partial index of pending rows.
_QUEUED, _RETRYING, _PROCESSING = literals(CLAIMABLE_STATES)
CLAIMABLE = f"""
    d.state IN ({_QUEUED}, {_RETRYING}, {_PROCESSING})
    AND (d.state = {_QUEUED}
         OR (d.state = {_RETRYING} AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %(now)s))
         OR (d.state = {_PROCESSING} AND (d.lease_until IS NULL OR d.lease_until < %(now)s)))
    AND NOT EXISTS (
         SELECT 1 FROM deliveries AS other
         WHERE other.event_id = d.event_id AND other.id <> d.id
           AND other.state = {_PROCESSING} AND other.lease_until >= %(now)s)
"""
_EMAIL_PENDING, _EMAIL_RETRYING, _EMAIL_SENDING = literals(EMAIL_CLAIMABLE_STATES)
_PENDING = ", ".join(literals(sorted(PENDING_STATES)))
_PRUNABLE = ", ".join(literals(PRUNABLE_STATES))
_SETTLED = ", ".join(literals(SETTLED_EMAIL_STATES))
PUT_VALUE = ("INSERT INTO kv (name, value, updated_at) VALUES (%s, %s, %s) "
              "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")


async def one_row(db: Db, query: str, params: Any) -> Row | None:
    return await db.one(query, params)


async def all_rows(db: Db, query: str, params: Any) -> list[Row]:
    return await db.all(query, params)


async def execute(db: Db, query: str, params: Any) -> int:
    return await db.run(query, params)


async def beat(db: Db, now: datetime) -> None:
    await db.run("INSERT INTO heartbeat (id, at) VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET at = excluded.at", (now,))


# Intake's insert: RETURNING * gives the new row, or nothing when the key is stored already.
INSERT_DELIVERY = """INSERT INTO deliveries (key, body, correlation_id, received_at, trigger_type, event_id, state,
                                   last_error, updated_at, header_names, source)
           VALUES (%(key)s, %(body)s, %(cid)s, %(at)s, %(trigger)s, %(event)s, %(state)s, %(error)s, %(at)s,
                   %(headers)s::jsonb, %(source)s)
           ON CONFLICT (key) DO NOTHING
           RETURNING *"""
# The same with its first timeline entry, in one statement: atomic without a transaction (PostgreSQL only).
INSERT_NOTED_DELIVERY = f"""WITH inserted AS ({INSERT_DELIVERY}), noted AS (
        INSERT INTO timeline (delivery_id, at, state, note) SELECT id, %(at)s, %(state)s, %(note)s FROM inserted
    )
    SELECT * FROM inserted"""


async def insert_delivery(db: Db, new: NewDelivery, in_one_statement: bool = False) -> tuple[Delivery, bool]:
    """Store a delivery (once per key), and its event version (first one wins), in the caller's transaction.

    in_one_statement: insert the delivery and its timeline entry with INSERT_NOTED_DELIVERY.
    """
    received_at, note = utc(new.received_at), intake_note(new)
    first = False
    if new.event_version is not None:
        first = await db.one(
            "INSERT INTO event_versions (version, source, seen_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (version) DO NOTHING RETURNING version", (new.event_version, new.source, received_at),
        ) is not None
        if not first:
            seen = await db.one(
                "SELECT v.source, d.id FROM event_versions AS v JOIN deliveries AS d ON d.id = v.delivery_id"
                " WHERE v.version = %s", (new.event_version,),
            )
            if seen is not None and duplicate_by_version(new.source, seen["source"]):
                return await get_delivery(db, seen["id"]), False
    row = await db.one(INSERT_NOTED_DELIVERY if in_one_statement else INSERT_DELIVERY, {
        "key": new.key, "body": new.body, "cid": new.correlation_id, "at": received_at, "trigger": new.trigger_type,
        "event": new.event_id, "state": new.state, "error": new.error, "headers": json.dumps(list(new.header_names)),
        "source": new.source, "note": note,
    })
    if row is None:
        existing = await db.one("SELECT id FROM deliveries WHERE key = %s", (new.key,))
        assert existing is not None  # the conflicting row is committed, or we would have inserted
        delivery_id = existing["id"]
    else:
        delivery_id = row["id"]
        if not in_one_statement:
            await add_timeline(db, delivery_id, received_at, new.state, note)
    if first:
        await db.run("UPDATE event_versions SET delivery_id = %s WHERE version = %s", (delivery_id, new.event_version))
    if row is None:
        return await get_delivery(db, delivery_id), False
    return delivery_from_row(row, (TimelineEntry(at=received_at, state=new.state, note=note),)), True


async def list_deliveries(
    db: Db, state: str | None, limit: int, event_id: str | None, before_id: int | None
) -> list[Delivery]:
    where, args = ["1 = 1"], []
    for clause, value in (("state = %s", state), ("event_id = %s", event_id), ("id < %s", before_id)):
        if value is not None:
            where.append(clause)
            args.append(value)
    rows = await db.all(
        f"SELECT * FROM deliveries WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s", (*args, max(limit, 0))
    )
    return [delivery_from_row(row, ()) for row in rows]


async def count_by_state(db: Db) -> dict[str, int]:
    return {row["state"]: row["n"] for row in await db.all("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state")}


async def oldest_pending(db: Db) -> datetime | None:
    row = await db.one(f"SELECT MIN(received_at) AS oldest FROM deliveries WHERE state IN ({_PENDING})")
    return time_or_none(row["oldest"]) if row else None


async def _holds_lease(db: Db, delivery_id: int, token: int) -> bool:
    """The fence for commits: the token is current and nobody moved the delivery on (row locked until commit)."""
    return await db.one("SELECT 1 AS held FROM deliveries WHERE id = %s AND lease_token = %s AND state = %s FOR UPDATE",
                        (delivery_id, token, PROCESSING)) is not None


async def add_note(db: Db, delivery_id: int, token: int, now: datetime, note: str) -> bool:
    # The row lock orders this note against a takeover: it sees either the old lease or the new.
    held = await db.one(
        "SELECT 1 AS held FROM deliveries WHERE id = %s AND lease_token = %s AND state = %s AND lease_until >= %s FOR UPDATE",
        (delivery_id, token, PROCESSING, now),
    )
    if held is None:
        return False
    await add_timeline(db, delivery_id, now, PROCESSING, note)
    return True


async def finish(db: Db, delivery_id: int, token: int, now: datetime, outcome: Verdict) -> bool:
    """Commit the outcome if token still holds the lease: the row, its timeline note, its emails, the slot it releases."""
    changed = await db.run(
        """UPDATE deliveries
           SET state = %(state)s,
               last_error = COALESCE(%(error)s, last_error),
               attempts = COALESCE(%(attempts)s::integer, attempts),
               next_attempt_at = %(next_attempt_at)s,
               result = COALESCE(%(result)s, result),
               order_reference = COALESCE(%(order_reference)s, order_reference),
               updated_at = %(now)s,
               lease_until = NULL
           WHERE id = %(id)s AND lease_token = %(token)s AND state = %(processing)s""",
        {"state": outcome.state, "error": outcome.error, "attempts": outcome.attempts,
         "next_attempt_at": utc_or_none(outcome.next_attempt_at), "result": outcome.result,
         "order_reference": outcome.order_reference, "now": now, "id": delivery_id, "token": token, "processing": PROCESSING},
    )
    if changed != 1:
        return False
    await add_timeline(db, delivery_id, now, outcome.state, outcome.note)
    await _add_emails(db, outcome.emails, now)
    if outcome.release_event_id is not None:
        await db.run("DELETE FROM orders WHERE event_id = %s AND state = %s AND delivery_id = %s",
                     (outcome.release_event_id, LEDGER_PENDING, delivery_id))
    return True


async def get_order(db: Db, event_id: str, lock: bool) -> LedgerEntry | None:
    query = "SELECT * FROM orders WHERE event_id = %s" + (" FOR UPDATE" if lock else "")
    row = await db.one(query, (event_id,))
    return None if row is None else ledger_entry(row)


async def reserve_order(
    db: Db, event_id: str, reference: str, establishment_id: int, delivery_id: int, token: int, now: datetime
) -> Reservation:
    if not await _holds_lease(db, delivery_id, token):
        return Reservation(outcome=BUSY)
    await db.run(
        """INSERT INTO orders (event_id, reference, establishment_id, delivery_id, state, created_at, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (event_id) DO NOTHING""",
        (event_id, reference, establishment_id, delivery_id, LEDGER_PENDING, now, now),
    )
    entry = await get_order(db, event_id, True)
    assert entry is not None  # inserted just now, or there already (and the ledger is never pruned)
    owner_leased = entry.delivery_id != delivery_id and await db.one(
        "SELECT 1 AS leased FROM deliveries WHERE id = %s AND state = %s AND lease_until >= %s",
        (entry.delivery_id, PROCESSING, now),
    ) is not None
    outcome = reservation_outcome(entry, delivery_id=delivery_id, owner_leased=owner_leased)
    if outcome != PASS_TO_ME:
        return Reservation(outcome=outcome, entry=entry)
    await db.run("UPDATE orders SET delivery_id = %s, updated_at = %s WHERE event_id = %s", (delivery_id, now, event_id))
    return Reservation(outcome=RESERVED, entry=await get_order(db, event_id, False))


async def complete_order(
    db: Db, event_id: str, delivery_id: int, token: int, ref: OrderRef, snapshot: str, now: datetime, note: str,
    emails: tuple[EmailMessage, ...],
) -> bool:
    if not await _holds_lease(db, delivery_id, token):
        return False
    entry = await get_order(db, event_id, True)
    if entry is None or entry.delivery_id != delivery_id:
        return False
    await db.run(
        "UPDATE orders SET state = %s, revel_order_id = %s, revel_uri = %s, snapshot = %s, updated_at = %s WHERE event_id = %s",
        (LEDGER_CREATED, ref.order_id, ref.resource_uri, snapshot, now, event_id),
    )
    await db.run("UPDATE deliveries SET state = %s, order_reference = %s, lease_until = NULL, updated_at = %s WHERE id = %s",
                 (DONE, entry.reference, now, delivery_id))
    await add_timeline(db, delivery_id, now, DONE, note)
    await _add_emails(db, emails, now)
    return True


async def _state_of(db: Db, delivery_id: int) -> str:
    row = await db.one("SELECT state FROM deliveries WHERE id = %s FOR UPDATE", (delivery_id,))
    if row is None:
        raise missing_delivery(delivery_id)
    return str(row["state"])


async def replay_delivery(db: Db, delivery_id: int, now: datetime, note: str) -> bool:
    if not replayable(await _state_of(db, delivery_id)):
        return False
    await _requeue(db, [delivery_id], now, note)
    return True


async def replay_state(db: Db, state: str, now: datetime, note: str) -> int:
    ids = [row["id"] for row in await db.all("SELECT id FROM deliveries WHERE state = %s ORDER BY id FOR UPDATE", (state,))]
    await _requeue(db, ids, now, note)
    return len(ids)


async def _requeue(db: Db, ids: list[int], now: datetime, note: str) -> None:
    if not ids:
        return
    await db.many("UPDATE deliveries SET state = %s, attempts = 0, next_attempt_at = NULL, lease_until = NULL, updated_at = %s"
                  " WHERE id = %s", [(QUEUED, now, delivery_id) for delivery_id in ids])
    await db.many("INSERT INTO timeline (delivery_id, at, state, note) VALUES (%s, %s, %s, %s)",
                  [(delivery_id, now, QUEUED, note) for delivery_id in ids])


async def discard_delivery(db: Db, delivery_id: int, now: datetime, note: str) -> bool:
    if not discardable(await _state_of(db, delivery_id)):
        return False
    await db.run("UPDATE deliveries SET state = %s, next_attempt_at = NULL, lease_until = NULL, updated_at = %s WHERE id = %s",
                 (IGNORED, now, delivery_id))
    await add_timeline(db, delivery_id, now, IGNORED, note)
    return True


async def set_flags(
    db: Db, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str, now: datetime
) -> FlagOverrides:
    await db.run(
        """INSERT INTO flags (id, enable_connector, dry_run, actor, reason, updated_at) VALUES (1, %s, %s, %s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET
               enable_connector = COALESCE(excluded.enable_connector, flags.enable_connector),
               dry_run = COALESCE(excluded.dry_run, flags.dry_run),
               actor = excluded.actor, reason = excluded.reason, updated_at = excluded.updated_at""",
        (enable_connector, dry_run, actor, reason, now),
    )
    return flags_from_row(await db.one("SELECT * FROM flags WHERE id = 1"))


CLAIM_EMAIL = f"""UPDATE emails SET state = {_EMAIL_SENDING}, lease_token = lease_token + 1, lease_until = %(lease_until)s
    WHERE id = (
        SELECT id FROM emails
        WHERE state IN ({_EMAIL_PENDING}, {_EMAIL_RETRYING}, {_EMAIL_SENDING})
          AND (state = {_EMAIL_PENDING}
               OR (state = {_EMAIL_RETRYING} AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s))
               OR (state = {_EMAIL_SENDING} AND (lease_until IS NULL OR lease_until < %(now)s)))
        ORDER BY id
        LIMIT 1
        FOR UPDATE SKIP LOCKED)
    RETURNING *"""
FINISH_EMAIL = """UPDATE emails
    SET state = %(state)s,
        last_error = COALESCE(%(error)s, last_error),
        attempts = COALESCE(%(attempts)s::integer, attempts),
        next_attempt_at = %(next_attempt_at)s,
        sent_at = CASE WHEN %(state)s = %(sent)s THEN %(now)s ELSE sent_at END,
        lease_until = NULL
    WHERE id = %(id)s AND lease_token = %(token)s AND state = %(sending)s"""


async def _add_emails(db: Db, emails: Iterable[EmailMessage], now: datetime) -> None:
    rows = [(m.delivery_id, m.correlation_id, m.kind, m.subject, m.text, json.dumps(list(m.to)), EMAIL_PENDING, now)
            for m in emails]
    if rows:
        await db.many("""INSERT INTO emails (delivery_id, correlation_id, kind, subject, text, recipients, state, created_at)
                         VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s)""", rows)


async def end_lease(db: Db, name: str, token: int, now: datetime, value_name: str, value: str) -> bool:
    if await db.run("UPDATE leases SET until = %s WHERE name = %s AND token = %s", (now, name, token)) != 1:
        return False
    await db.run(PUT_VALUE, (value_name, value, now))
    return True


async def prune_batch(db: Db, older_than: datetime, batch: int) -> int:
    # The delivery that owns a ledger row, or has an email still to send, is kept, so the ledger and
    # the outbox always point at a real delivery. Locked rows (PostgreSQL: being replayed) wait for the next prune.
    rows = await db.all(
        f"""SELECT id FROM deliveries AS d WHERE state IN ({_PRUNABLE}) AND updated_at < %s
              AND NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.delivery_id = d.id)
              AND NOT EXISTS (SELECT 1 FROM emails AS e WHERE e.delivery_id = d.id AND e.state NOT IN ({_SETTLED}))
            ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
        (older_than, batch),
    )
    ids = [row["id"] for row in rows]
    if ids:
        await db.run(f"DELETE FROM timeline WHERE delivery_id IN ({marks(ids)})", ids)
        await db.run(f"DELETE FROM emails WHERE delivery_id IN ({marks(ids)}) AND state IN ({_SETTLED})", ids)
        await db.run(f"DELETE FROM deliveries WHERE id IN ({marks(ids)})", ids)
    return len(ids)

