"""R10 and R11: hostile and fuzzed requests never give a 5xx, and a bad signature never stores or calls anything.

- schemathesis generates requests for every operation of the app's own OpenAPI document
  (``/schema/openapi.json``), positive and negative, and a signing hook (``sign_webhook``) gives
  each webhook request a valid, missing, wrong or malformed X-Signature over the exact bytes sent;
- hypothesis sends arbitrary header sets (up to a 16 KB value) and one-byte changes of signed bodies;
- one test does the R10 cases against the real server (uvicorn) too.

The CI budget is ``TSREVEL_FUZZ_CASES`` requests in all (default 2,500, a minute or so);
``make fuzz`` runs 10,000. The app runs in-process on a real SQLite file, its worker on the
in-memory fakes (so an accepted delivery is processed, offline).
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import schemathesis
from dependency_injector import providers
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from schemathesis.generation import GenerationMode

from tests.helpers import body, definite
from tests.reliability.conftest import ADMIN_TOKEN, SIGNING_SECRET, production_settings, query_db
from tsrevel.adapters.fakes import FakeMailer, FakeRevel
from tsrevel.domain.signature import sign_body
from tsrevel.entrypoints.container import build_container
from tsrevel.entrypoints.http import create_app
from tsrevel.testing.strategies import DOCUMENTED_TRIGGERS, mutated_payloads, webhook_payloads

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

TOTAL_CASES = int(os.environ.get("TSREVEL_FUZZ_CASES", "2500"))
SCHEMA_CASES = TOTAL_CASES * 6 // 10
HEADER_CASES = TOTAL_CASES * 2 // 10
BODY_CASES = TOTAL_CASES - SCHEMA_CASES - HEADER_CASES

WEBHOOK_PATHS = ("/webhooks/tripleseat", "/webhook")
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@attrs.define
class FuzzApp:
    client: TestClient
    revel: FakeRevel
    mailer: FakeMailer
    db_path: Path

    def stored(self) -> int:
        """How many deliveries the database holds (read beside the app, as another process would)."""
        return query_db(self.db_path, "SELECT COUNT(*) AS n FROM deliveries")[0]["n"]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzApp]:
    tmp = tmp_path_factory.mktemp("fuzz")
    # Revel and the mailer are the in-memory fakes (overridden below); no network at all.
    settings_ = production_settings(tmp, revel_url="http://revel.invalid", sendgrid_url=None)
    container = build_container(settings_)
    revel, mailer = FakeRevel(), FakeMailer()
    container.revel.override(providers.Object(revel))
    container.mailer.override(providers.Object(mailer))
    # raise_server_exceptions: an exception escaping the app fails the test instead of becoming a 500.
    with TestClient(create_app(container, configure_logs=False), raise_server_exceptions=True) as client:
        yield FuzzApp(client=client, revel=revel, mailer=mailer, db_path=tmp / "tsrevel.db")


# ---- schemathesis over the app's own OpenAPI ------------------------------------------------

ENVELOPE = {
    "type": "object",
    "properties": {
        "webhook_trigger_type": {"anyOf": [{"enum": list(DOCUMENTED_TRIGGERS)}, {"type": "string"}]},
        "event": {
            "type": "object",
            "properties": {
                "id": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "status": {"enum": ["PROSPECT", "TENTATIVE", "DEFINITE", "CLOSED", "LOST", "WAITLIST"]},
                "location_id": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                "site_id": {"type": "integer"},
                "event_start": {"type": "string"},
                "documents": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "line_items": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "integer"},
                                        "quantity": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                                        "price": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                                        "display_name": {"type": "string"},
                                        "menu_item_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                                    },
                                },
                            }
                        },
                    },
                },
            },
            "required": ["id"],
        },
    },
    "required": ["webhook_trigger_type"],
}
BODIES = {
    ("post", "/webhooks/tripleseat"): ENVELOPE,
    ("post", "/webhook"): ENVELOPE,
    ("post", "/test/webhook"): ENVELOPE,
    ("post", "/test/preview"): ENVELOPE,
    ("put", "/admin/flags"): {
        "type": "object",
        "properties": {"enable_connector": {"type": "boolean"}, "dry_run": {"type": "boolean"}, "reason": {"type": "string"}},
    },
    ("post", "/admin/replay"): {"type": "object", "properties": {"state": {"enum": ["held", "skipped", "dead", "dry_run"]}}, "required": ["state"]},
}


def described(raw: dict[str, Any]) -> dict[str, Any]:
    """The served document plus what the handlers read by hand (raw bodies), so generation reaches them.

    The handlers take the raw body (the signature is over its bytes), so Litestar cannot infer
    request bodies; they are described here from DESIGN.md, with the X-Correlation-ID header.
    """
    doc = copy.deepcopy(raw)
    for (method, path), schema in BODIES.items():
        doc["paths"][path][method]["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    for operations in doc["paths"].values():
        for operation in operations.values():
            operation.setdefault("parameters", []).append(
                {"name": "X-Correlation-ID", "in": "header", "required": False, "schema": {"type": "string"}}
            )
    doc.setdefault("components", {}).setdefault("securitySchemes", {})["BearerToken"] = {"type": "http", "scheme": "bearer"}
    return doc


@pytest.fixture(scope="module")
def api_cases(fuzz_app: FuzzApp) -> st.SearchStrategy[Any]:
    served = fuzz_app.client.get("/schema/openapi.json")
    assert served.status_code == 200
    schema = schemathesis.openapi.from_dict(described(served.json()))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14, [(o.method, o.path) for o in operations]
    return st.one_of(
        [op.as_strategy(generation_mode=mode) for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    )


SIGNINGS = ("valid", "valid", "missing", "wrong", "malformed", "other-secret")


def sign_webhook(content: bytes, how: str) -> dict[str, str]:
    """The signing hook: an X-Signature for exactly these bytes, or a deliberately bad one."""
    if how == "valid":
        return {"X-Signature": sign_body(content, secret=SIGNING_SECRET)}
    if how == "wrong":
        return {"X-Signature": "0" * 64}
    if how == "malformed":
        return {"X-Signature": "t=,v1=zz" + base64.b64encode(content[:8]).decode()}
    if how == "other-secret":
        return {"X-Signature": sign_body(content, secret="not-" + SIGNING_SECRET)}
    return {}


def as_request(case: Any) -> tuple[str, str, dict[str, str], dict[str, Any], bytes | None]:
    """Method, path, headers, query and body bytes of a schemathesis case, serialized once so the signature covers them."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver.local")
    headers = {k: v for k, v in kwargs.get("headers", {}).items() if k.lower() not in ("x-signature", "authorization")}
    content: bytes | None = None
    if "json" in kwargs:
        content = json.dumps(kwargs["json"]).encode()
        headers["Content-Type"] = "application/json"
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        content = data if isinstance(data, bytes) else str(data).encode()
    path = httpx.URL(kwargs["url"]).raw_path.decode().split("?")[0]
    return kwargs["method"], path, headers, kwargs.get("params") or {}, content


@given(data=st.data())
@settings(FUZZ, max_examples=SCHEMA_CASES)
def test_R11_schemathesis_requests_for_every_operation_never_get_a_5xx(fuzz_app, api_cases, data):
    case = data.draw(api_cases, label="case")
    method, path, headers, params, content = as_request(case)
    signing = None
    if path in WEBHOOK_PATHS and method == "POST":
        signing = data.draw(st.sampled_from(SIGNINGS), label="signing")
        headers.update(sign_webhook(content or b"", signing))
    elif path.startswith(("/admin", "/test")):
        auth = data.draw(st.sampled_from(["token", "token", "token", "none", "wrong"]), label="auth")
        if auth != "none":
            headers["Authorization"] = f"Bearer {ADMIN_TOKEN if auth == 'token' else 'wrong-token-0123456789'}"
    note(f"{method} {path} params={params!r} headers={headers!r} body={content[:2000] if content else content!r}")
    before = fuzz_app.stored() if signing not in (None, "valid") else None
    response = fuzz_app.client.request(method, path, params=params, headers=headers, content=content)
    assert response.status_code < 500, (method, path, response.status_code, response.text[:500])
    assert response.headers.get("x-correlation-id"), "every answer carries X-Correlation-ID"
    if before is not None:  # R10: a bad signature is 401 and stores nothing
        assert response.status_code == 401, (signing, response.status_code, response.text[:300])
        assert fuzz_app.stored() == before
    elif signing == "valid":
        assert response.status_code == 200 and response.json()["status"] in ("accepted", "duplicate", "rejected")


# ---- hypothesis: headers and bodies ---------------------------------------------------------

HEADER_NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40).filter(lambda n: n[0] != "-")
HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200),
    st.integers(1, 16 * 1024).map(lambda n: "x" * n),  # up to a 16 KB value
)
BAD_SIGNATURES = st.one_of(
    st.none(),
    st.text("0123456789abcdef", min_size=0, max_size=128),
    st.binary(min_size=0, max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.builds(lambda t, v: f"t={t},v1={v}", st.integers(0, 2**40), st.text("0123456789abcdef", max_size=64)),
    st.just("s" * 16 * 1024),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300),
)


# The payload does not matter to these checks, only the headers: a few fixed bodies keep generation cheap.
FIXED_BODIES = st.sampled_from([definite(), definite(location_id="202"), {"webhook_trigger_type": "CREATE_LEAD", "lead": {"id": 1}}])


@given(
    payload=FIXED_BODIES,
    extra=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=6),
    signature=BAD_SIGNATURES,
    path=st.sampled_from(WEBHOOK_PATHS),
)
@settings(FUZZ, max_examples=HEADER_CASES)
def test_R10_any_headers_with_a_missing_or_bad_signature_get_401_and_store_nothing(fuzz_app, payload, extra, signature, path):
    raw = body(payload)
    headers = {k: v for k, v in extra.items() if k.lower() not in ("x-signature", "content-length", "host", "transfer-encoding")}
    if signature is not None:
        headers["X-Signature"] = signature
    calls = (len(fuzz_app.revel.calls), len(fuzz_app.mailer.calls))
    before = fuzz_app.stored()
    response = fuzz_app.client.post(path, content=raw, headers=headers)
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert fuzz_app.stored() == before
    assert (len(fuzz_app.revel.calls), len(fuzz_app.mailer.calls)) == calls  # no downstream call either


@st.composite
def one_byte_changes(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A signed body and the same body with one byte replaced, inserted or removed."""
    raw = body(draw(st.one_of(webhook_payloads(), mutated_payloads())))
    index = draw(st.integers(0, len(raw) - 1))
    how = draw(st.sampled_from(["replace", "insert", "delete"]))
    if how == "replace":
        new = draw(st.integers(0, 255).filter(lambda b: b != raw[index]))
        changed = raw[:index] + bytes([new]) + raw[index + 1 :]
    elif how == "insert":
        changed = raw[:index] + bytes([draw(st.integers(0, 255))]) + raw[index:]
    else:
        changed = raw[:index] + raw[index + 1 :]
    return raw, changed


@given(change=one_byte_changes())
@settings(FUZZ, max_examples=BODY_CASES // 2)
def test_R10_a_one_byte_change_of_a_signed_body_is_401_and_stores_nothing(fuzz_app, change):
    raw, changed = change
    before = fuzz_app.stored()
    response = fuzz_app.client.post("/webhooks/tripleseat", content=changed, headers={"X-Signature": sign_body(raw, secret=SIGNING_SECRET)})
    assert response.status_code == 401
    assert fuzz_app.stored() == before


@given(payload=st.one_of(webhook_payloads(), mutated_payloads()), junk=st.integers(0, 16 * 1024))
@settings(FUZZ, max_examples=BODY_CASES - BODY_CASES // 2)
def test_R11_any_signed_body_is_answered_200_never_5xx(fuzz_app, payload, junk):
    raw = body(payload)
    headers = {"X-Signature": sign_body(raw, secret=SIGNING_SECRET), "X-Junk": "j" * junk}
    response = fuzz_app.client.post("/webhooks/tripleseat", content=raw, headers=headers)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["status"] in ("accepted", "duplicate", "rejected")


# ---- hostile JSON: lone surrogates, deep nesting, absurd numbers (issue 11) ---------------------

HOSTILE_CASES = max(100, TOTAL_CASES // 10)
LONE_SURROGATES = st.sampled_from(["\\ud800", "\\udfff", "\\ud83d", "x\\ude00y", "\\udbff\\u0041"])
ABSURD_NUMBERS = st.sampled_from(
    ["1e999999999", "-1e-999999999", "1" * 5000, "-" + "9" * 4400, "1." + "0" * 5000 + "1", "NaN", "Infinity", "-Infinity", "1E+9999", "0e-99999999999"]
)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """Raw JSON text a library would not produce: escapes and literals spliced into a real payload."""
    kind = draw(st.sampled_from(["surrogate", "nesting", "number"]))
    raw = json.dumps(draw(st.one_of(webhook_payloads(), mutated_payloads())))
    if kind == "nesting":
        depth = draw(st.sampled_from([50, 500, 5_000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        deep = opener * depth + "1" + closer * depth
        return (raw[:-1] + f', "deep": {deep}}}' if draw(st.booleans()) else deep).encode()
    # Replace one string or number value of the payload by the hostile token.
    token = f'"{draw(LONE_SURROGATES)}"' if kind == "surrogate" else draw(ABSURD_NUMBERS)
    spots = [i for i, ch in enumerate(raw) if ch == ":"]
    if not spots:
        return raw.encode()
    at = draw(st.sampled_from(spots))
    end = at + 1
    while end < len(raw) and raw[end] not in ",}]":
        if raw[end] in "[{":
            break
        end += 1
    return (raw[: at + 1] + " " + token + raw[end:]).encode()


@given(raw=hostile_bodies(), path=st.sampled_from(["/webhooks/tripleseat", "/test/webhook", "/test/preview"]))
@settings(FUZZ, max_examples=HOSTILE_CASES)
def test_R11_surrogates_deep_nesting_and_absurd_numbers_never_get_a_5xx(fuzz_app, raw, path):
    note(f"{path} body={raw[:500]!r}")
    headers = {"X-Signature": sign_body(raw, secret=SIGNING_SECRET), "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    response = fuzz_app.client.post(path, content=raw, headers=headers)
    assert response.status_code < 500, (path, response.status_code, response.text[:500])
    if path == "/webhooks/tripleseat":
        assert response.status_code == 200 and response.json()["status"] in ("accepted", "duplicate", "rejected"), response.text[:300]


@given(reason=st.one_of(LONE_SURROGATES, ABSURD_NUMBERS.map(lambda n: f'x{n}')))
@settings(FUZZ, max_examples=20)
def test_R11_an_admin_reason_with_hostile_text_is_never_a_5xx(fuzz_app, reason):
    raw = b'{"enable_connector": true, "reason": "' + reason.encode() + b'"}'
    response = fuzz_app.client.put("/admin/flags", content=raw, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text[:300]


# ---- the same R10 cases against the real server --------------------------------------------


@pytest.mark.e2e
def test_R10_on_the_real_server_bad_signatures_one_byte_changes_and_16_KB_headers_are_401_and_store_nothing(
    start_service, service_env, fake_revel, fake_sendgrid
):
    service = start_service(service_env)
    raw = body(definite())
    good = sign_body(raw, secret=SIGNING_SECRET)
    tampered = raw.replace(b'"48"', b'"49"')
    assert tampered != raw
    cases = {
        "missing": (raw, {}),
        "wrong": (raw, {"X-Signature": "0" * 64}),
        "malformed": (raw, {"X-Signature": "not hex at all"}),
        "other secret": (raw, {"X-Signature": sign_body(raw, secret="another-secret")}),
        "one byte changed": (tampered, {"X-Signature": good}),
        "16 KB signature": (raw, {"X-Signature": "f" * 16 * 1024}),
    }
    answers = {
        name: httpx.post(service.url + "/webhooks/tripleseat", content=content, headers=headers, timeout=10).status_code
        for name, (content, headers) in cases.items()
    }
    assert answers == {name: 401 for name in cases}
    assert service.admin("GET", "/admin/deliveries").json()["count"] == 0
    assert fake_revel.requests == [] and fake_sendgrid.requests == []
    # A valid signature beside a 16 KB header of junk: the server reads it, and the delivery is taken.
    junk = httpx.post(service.url + "/webhooks/tripleseat", content=raw, headers={"X-Signature": good, "X-Junk": "j" * 16 * 1024}, timeout=10)
    assert (junk.status_code, junk.json()["status"]) == (200, "accepted")
    assert service.admin("GET", "/admin/deliveries").json()["count"] == 1
    assert service.stop() == 0
    assert "Traceback" not in service.log_path.read_text()
