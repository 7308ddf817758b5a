"""`tsrevel verify URL`: the runbook's Rollback Verification checklist, run against a live service over HTTP.

Read-only apart from one probe: a lead webhook sent to ``/test/webhook``. A lead carries no
event, so whatever the flags, ORDER_ON_STATUSES or mapping say, it can never become an order;
it is stored as ``ignored`` (or ``held`` while the kill switch is off, and ignored on replay).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import attrs
import httpx

from tsrevel.version import __version__

REQUEST_TIMEOUT = httpx.Timeout(2.0, connect=1.0)  # a healthy service answers in milliseconds; 4 calls stay under 5 s


@attrs.frozen
class Check:
    """One checklist item: passed (True), failed (False) or information only (None), with its evidence."""

    name: str
    ok: bool | None
    evidence: str


@attrs.frozen
class Verification:
    checks: tuple[Check, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)


def probe_body(nonce: str, now: datetime) -> bytes:
    """A harmless webhook: a lead (no event object), unique per run so it is never a duplicate."""
    payload = {
        "webhook_trigger_type": "CREATE_LEAD",
        "lead": {"id": f"tsrevel-verify-{nonce}", "first_name": "tsrevel", "last_name": "verify"},
        "message": f"tsrevel verify probe {nonce} at {now.isoformat(timespec='seconds')}; makes no order",
    }
    return json.dumps(payload).encode()


def verify(
    url: str,
    *,
    token: str | None,
    expect_enabled: bool | None = None,
    expect_dry_run: bool | None = None,
    client: httpx.Client | None = None,
    on_check: Callable[[Check], None] | None = None,
) -> Verification:
    """Run the checklist; every item is reported, and one unreachable service fails the rest at once."""
    started = time.monotonic()
    checks: list[Check] = []

    def record(check: Check) -> None:
        checks.append(check)
        if on_check is not None:
            on_check(check)

    own_client = client is None
    http = client or httpx.Client(base_url=url.rstrip("/"), timeout=REQUEST_TIMEOUT, headers={"User-Agent": f"tsrevel-verify/{__version__}"})
    try:
        health = _health(http)
        record(health.check)
        if health.unreachable:
            for name in ("ENABLE_CONNECTOR", "DRY_RUN", "POST /test/webhook", "GET /ready"):
                record(Check(name, False, "not checked: the service did not answer /health"))
        else:
            record(_flag("ENABLE_CONNECTOR", health.body, "enable_connector", expect_enabled, "--expect-enabled", "--expect-disabled"))
            record(_flag("DRY_RUN", health.body, "dry_run", expect_dry_run, "--expect-dry-run", "--expect-live"))
            record(_test_webhook(http, token))
            record(_ready(http))
    finally:
        if own_client:
            http.close()
    return Verification(checks=tuple(checks), seconds=time.monotonic() - started)


@attrs.frozen
class _Health:
    check: Check
    body: dict[str, Any]
    unreachable: bool


def _ms(response: httpx.Response) -> str:
    """How long the service took to answer, measured by this client (a scripted transport has no elapsed)."""
    try:
        seconds = response.elapsed.total_seconds()
    except RuntimeError:
        return "? ms"
    return f"{seconds * 1000:.0f} ms"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _health(http: httpx.Client) -> _Health:
    name = "GET /health"
    try:
        response = http.get("/health")
    except httpx.HTTPError as exc:
        return _Health(Check(name, False, f"no answer: {type(exc).__name__}: {exc}"), {}, True)
    body = _json(response)
    if response.status_code != 200 or body.get("status") != "ok":
        return _Health(Check(name, False, f"HTTP {response.status_code} in {_ms(response)}: {response.text[:200]}"), body, False)
    source = body.get("flags_source", "store")
    evidence = f"HTTP 200 in {_ms(response)}, version {body.get('version')}, flags read from {source}"
    return _Health(Check(name, True, evidence), body, False)


def _flag(name: str, body: dict[str, Any], key: str, expected: bool | None, on_option: str, off_option: str) -> Check:
    value = body.get(key)
    if not isinstance(value, bool):
        return Check(name, False, f"/health has no boolean {key!r}: {value!r}")
    shown = "true" if value else "false"
    if expected is None:
        return Check(name, None, f"{name}={shown} (not checked: pass {on_option} or {off_option})")
    wanted = "true" if expected else "false"
    if value == expected:
        return Check(name, True, f"{name}={shown}, as expected")
    return Check(name, False, f"{name}={shown}, expected {wanted}")


def _test_webhook(http: httpx.Client, token: str | None) -> Check:
    name = "POST /test/webhook"
    if not token:
        return Check(name, False, "not checked: no admin token (pass --token or set TSREVEL_ADMIN_TOKEN)")
    nonce = uuid.uuid4().hex[:12]
    sent_cid = f"verify-{nonce}"
    try:
        response = http.post(
            "/test/webhook",
            content=probe_body(nonce, datetime.now(timezone.utc)),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Correlation-ID": sent_cid},
        )
    except httpx.HTTPError as exc:
        return Check(name, False, f"no answer: {type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return Check(name, False, f"HTTP {response.status_code} in {_ms(response)}: {response.text[:200]}")
    body = _json(response)
    cid = body.get("correlation_id")
    header_cid = response.headers.get("x-correlation-id")
    delivery = body.get("delivery") if isinstance(body.get("delivery"), dict) else {}
    timeline = delivery.get("timeline") if isinstance(delivery.get("timeline"), list) else []
    decision = body.get("decision")
    problems = []
    if not cid or cid != header_cid or cid != sent_cid:
        problems.append(f"correlation id not carried through (sent {sent_cid}, body {cid!r}, header {header_cid!r})")
    if not decision or not timeline:
        problems.append("no trace in the answer (decision and timeline expected)")
    if body.get("revel") is not None:
        problems.append("the probe reached Revel, which a lead never should")
    steps = " -> ".join(str(t.get("state")) for t in timeline if isinstance(t, dict))
    last_note = timeline[-1].get("note") if timeline and isinstance(timeline[-1], dict) else ""
    evidence = f"HTTP 200 in {_ms(response)}, correlation id {cid}, delivery {delivery.get('id')}: {steps} ({last_note})"
    if problems:
        return Check(name, False, "; ".join(problems) + f" | {evidence}")
    return Check(name, True, evidence)


def _ready(http: httpx.Client) -> Check:
    name = "GET /ready"
    try:
        response = http.get("/ready")
    except httpx.HTTPError as exc:
        return Check(name, False, f"no answer: {type(exc).__name__}: {exc}")
    if response.status_code != 200:
        problems = _json(response).get("problems") or response.text[:200]
        return Check(name, False, f"HTTP {response.status_code}: {problems}")
    return Check(name, True, f"HTTP 200 in {_ms(response)}: store writable, worker running")
