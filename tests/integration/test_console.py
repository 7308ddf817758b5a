"""The operators' console through Litestar's test client: sign-in, CSRF, every action audited, no secret shown."""

from __future__ import annotations

import base64
import html
import re
import sqlite3
import time
from pathlib import Path

import pytest
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig

from tests.helpers import body, definite, example
from tests.integration.conftest import ADMIN_TOKEN, SIGNING_SECRET, AppHarness
from tests.integration.test_catchup import service_with_missed_event, tripleseat  # noqa: F401 - the loopback TripleSeat
from tsrevel.domain.signature import sign_body
from tsrevel.entrypoints import web_console

pytestmark = pytest.mark.integration

PAGES = ["/console", "/console/deliveries", "/console/deliveries/1", "/console/mapping", "/console/audit", "/console/fragments/overview"]
CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
FLASH = re.compile(r'<p class="flash (ok|error)"[^>]*>\s*([^<]*?)\s*</p>')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(app: AppHarness) -> str:
    """Sign in through the form; answers a CSRF token for the forms that follow."""
    token = csrf_of(app.client.get("/console/login").text)
    answer = app.client.post("/console/login", data={"token": ADMIN_TOKEN, "_csrf_token": token}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/console")
    return token


def act(app: AppHarness, path: str, **fields: str) -> tuple[str, str]:
    """Post a console form (with the CSRF token), follow the redirect; answers the page's flash message."""
    token = csrf_of(app.client.get("/console").text)
    page = app.client.post(path, data={"_csrf_token": token, **fields})
    assert page.status_code == 200, page.text[:500]
    [(kind, text)] = FLASH.findall(page.text)
    return kind, html.unescape(text)


def audit_rows(app: AppHarness) -> list[tuple[str, str, str, str]]:
    path = Path(app.settings.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT actor, action, detail, reason FROM audit ORDER BY id").fetchall()


def post_webhook(app: AppHarness, payload: dict) -> int:
    raw = body(payload)
    headers = {"X-Signature": sign_body(raw, secret=SIGNING_SECRET), "Content-Type": "application/json"}
    return app.client.post("/webhooks/tripleseat", content=raw, headers=headers).json()["delivery_id"]


def done_and_signed_in(app: AppHarness) -> tuple[dict, int]:
    """A definite webhook taken to done (its order created), then a console session; answers the payload and delivery id."""
    payload = definite()
    delivery_id = post_webhook(app, payload)
    app.wait_state(delivery_id, "done")
    sign_in(app)
    return payload, delivery_id


def forged_session(app: AppHarness, data: dict, *, key: bytes) -> str:
    config = CookieBackendConfig(secret=key, key=web_console.SESSION_COOKIE)
    return ClientSideSessionBackend(config=config).dump_data(data)[0].decode()


class TestSignIn:
    @pytest.mark.parametrize("path", PAGES)
    def test_every_console_page_without_a_session_redirects_to_the_sign_in_page(self, app_factory, path):
        app = app_factory()
        answer = app.client.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")

    def test_an_action_without_a_session_changes_nothing(self, app_factory):
        app = app_factory()
        token = csrf_of(app.client.get("/console/login").text)
        answer = app.client.post("/console/flags", data={"_csrf_token": token, "change": "connector-off", "reason": "x"}, follow_redirects=False)
        assert answer.headers["location"].startswith("/console/login")
        assert app.client.get("/health").json()["enable_connector"] is True
        assert audit_rows(app) == []

    def test_the_sign_in_form_has_a_password_field_labelled_admin_token_and_a_sign_in_button(self, app_factory):
        html = app_factory().client.get("/console/login").text
        assert re.search(r'<label for="token">Admin token</label>\s*<input id="token" name="token" type="password"', html)
        assert '<button type="submit" class="primary">Sign in</button>' in html

    def test_a_wrong_token_is_refused_without_saying_why_and_opens_no_session(self, app_factory):
        app = app_factory()
        token = csrf_of(app.client.get("/console/login").text)
        answer = app.client.post("/console/login", data={"token": ADMIN_TOKEN[:-1] + "x", "_csrf_token": token})
        assert answer.status_code == 401
        assert "That token was not accepted." in answer.text
        assert web_console.SESSION_COOKIE not in answer.headers.get("set-cookie", "")
        assert app.client.get("/console", follow_redirects=False).status_code == 303

    def test_the_session_cookie_is_httponly_strict_scoped_to_the_console_and_expires_when_idle(self, app_factory):
        app = app_factory(console_idle_min=7)
        token = csrf_of(app.client.get("/console/login").text)
        answer = app.client.post("/console/login", data={"token": ADMIN_TOKEN, "_csrf_token": token}, follow_redirects=False)
        [cookie] = [c for c in answer.headers.get_list("set-cookie") if c.startswith(web_console.SESSION_COOKIE + "=")]
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= set(attributes)
        assert attributes["samesite"].lower() == "samesite=strict" and attributes["path"] == "Path=/console"
        assert attributes["max-age"] == "Max-Age=420"
        assert "secure" not in attributes  # plain http here; see the https test
        assert ADMIN_TOKEN not in cookie

    def test_over_https_the_console_cookies_are_secure(self, app_factory):
        app = app_factory()
        app.client.base_url = app.client.base_url.copy_with(scheme="https")
        page = app.client.get("/console/login")
        token = csrf_of(page.text)
        assert all("; Secure" in c for c in page.headers.get_list("set-cookie"))
        answer = app.client.post("/console/login", data={"token": ADMIN_TOKEN, "_csrf_token": token}, follow_redirects=False)
        assert answer.headers.get_list("set-cookie") and all("; Secure" in c for c in answer.headers.get_list("set-cookie"))

    def test_a_session_idle_longer_than_the_limit_is_sent_to_sign_in(self, app_factory):
        app = app_factory(console_idle_min=1)
        key = web_console.session_key(ADMIN_TOKEN)
        app.client.cookies.set(web_console.SESSION_COOKIE, forged_session(app, {"who": "console", "seen": int(time.time())}, key=key), path="/console")
        assert app.client.get("/console", follow_redirects=False).status_code == 200
        app.client.cookies.clear()
        app.client.cookies.set(web_console.SESSION_COOKIE, forged_session(app, {"who": "console", "seen": int(time.time()) - 61}, key=key), path="/console")
        assert app.client.get("/console", follow_redirects=False).headers["location"].startswith("/console/login")

    def test_a_session_signed_for_another_admin_token_is_not_accepted(self, app_factory):
        app = app_factory()
        old_key = web_console.session_key("the-previous-admin-token-0123456789")
        app.client.cookies.set(web_console.SESSION_COOKIE, forged_session(app, {"who": "console", "seen": int(time.time())}, key=old_key), path="/console")
        assert app.client.get("/console", follow_redirects=False).status_code == 303

    @pytest.mark.parametrize("value", [
        "garbage",
        base64.b64encode(b"x" * 12 + b"abc" + b"additional_authenticated_data=" + b"{not json").decode(),
        base64.b64encode(b"x" * 12 + b"abc" + b"additional_authenticated_data=" + b"[1]").decode(),
        base64.b64encode(b"x" * 12 + b"abc" + b"additional_authenticated_data=" + b'{"expires_at": 99999999999}').decode(),
    ], ids=["not-base64", "broken-expiry", "expiry-not-an-object", "unsigned"])
    def test_a_forged_session_cookie_is_no_session_and_never_a_5xx(self, app_factory, value):
        app = app_factory()
        app.client.cookies.set(web_console.SESSION_COOKIE, value, path="/console")
        answer = app.client.get("/console", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")

    def test_the_sign_in_page_sends_a_signed_in_operator_on(self, app_factory):
        app = app_factory()
        sign_in(app)
        answer = app.client.get("/console/login?next=/console/audit", follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/audit")

    def test_sign_out_ends_the_session(self, app_factory):
        app = app_factory()
        sign_in(app)
        assert act(app, "/console/logout") == ("ok", "Signed out.")
        assert app.client.get("/console", follow_redirects=False).status_code == 303

    def test_without_an_admin_token_there_is_no_console_and_the_sign_in_page_says_so(self, app_factory):
        app = app_factory(admin_token=None)
        page = app.client.get("/console/login")
        assert "The console is off because TSREVEL_ADMIN_TOKEN is not set" in page.text
        assert 'type="password"' not in page.text
        csrf = app.client.cookies.get(web_console.CSRF_COOKIE)  # the form is not there; its token is the cookie's
        answer = app.client.post("/console/login", data={"token": "", "_csrf_token": csrf})
        assert answer.status_code == 401
        assert app.client.get("/console", follow_redirects=False).status_code == 303

    def test_after_sign_in_the_page_asked_for_is_shown_but_never_another_site(self, app_factory):
        app = app_factory()
        assert app.client.get("/console/audit", follow_redirects=False).headers["location"] == "/console/login?next=/console/audit"
        token = csrf_of(app.client.get("/console/login?next=/console/audit").text)
        for elsewhere in ("//evil.example/x", "https://evil.example/", "/consolefoo", "/console//evil.example", "/console/\r\nSet-Cookie: x=1"):
            answer = app.client.post("/console/login", data={"token": ADMIN_TOKEN, "next": elsewhere, "_csrf_token": token}, follow_redirects=False)
            assert answer.headers["location"] == "/console", elsewhere
        answer = app.client.post("/console/login", data={"token": ADMIN_TOKEN, "next": "/console/deliveries?state=held", "_csrf_token": token}, follow_redirects=False)
        assert answer.headers["location"] == "/console/deliveries?state=held"


class TestCsrf:
    @pytest.mark.parametrize("token", [None, "forged" * 20], ids=["missing", "wrong"])
    def test_a_form_without_the_right_csrf_token_is_refused_and_changes_nothing(self, app_factory, token):
        app = app_factory()
        sign_in(app)
        fields = {"change": "connector-off", "reason": "forged"}
        if token:
            fields["_csrf_token"] = token
        answer = app.client.post("/console/flags", data=fields)
        assert answer.status_code == 403
        assert "Form refused" in answer.text and "Nothing was changed" in answer.text
        assert app.client.get("/health").json()["enable_connector"] is True
        assert audit_rows(app) == []

    def test_the_json_admin_api_and_the_webhook_need_no_csrf_token(self, app_factory):
        app = app_factory()
        assert post_webhook(app, definite()) >= 1
        answer = app.client.put("/admin/flags", json={"enable_connector": False}, headers=app.admin())
        assert answer.status_code == 200


class TestActionsAreAudited:
    def test_turning_the_connector_off_and_back_to_the_environment(self, app_factory):
        app = app_factory()
        sign_in(app)
        assert act(app, "/console/flags", change="connector-off", reason="incident 7") == ("ok", "Connector: OFF, Dry run: OFF.")
        overview = app.client.get("/console").text
        assert "Connector: OFF" in overview and "from the runtime override" in overview
        assert "Turn connector on" in overview and "Turn connector off" not in overview
        assert act(app, "/console/flags/reset", reason="incident 7 over")[0] == "ok"
        assert "Connector: ON" in app.client.get("/console").text
        assert audit_rows(app) == [
            ("console", "flags.set", "enable_connector=False", "incident 7"),
            ("console", "flags.reset", "back to the environment values", "incident 7 over"),
        ]

    def test_dry_run_on_and_off(self, app_factory):
        app = app_factory()
        sign_in(app)
        assert act(app, "/console/flags", change="dry-run-on", reason="rehearse") == ("ok", "Connector: ON, Dry run: ON.")
        assert "Turn dry run off" in app.client.get("/console").text
        assert act(app, "/console/flags", change="dry-run-off", reason="live again") == ("ok", "Connector: ON, Dry run: OFF.")
        assert [r[2:] for r in audit_rows(app)] == [("dry_run=True", "rehearse"), ("dry_run=False", "live again")]

    def test_going_live_on_an_unsigned_service_is_refused_with_the_reason_and_changes_nothing(self, app_factory):
        app = app_factory(signing_secret=None, dry_run=True)
        sign_in(app)
        kind, text = act(app, "/console/flags", change="dry-run-off", reason="go live")
        assert kind == "error" and text.startswith("Refused:") and "TRIPLESEAT_SIGNING_SECRET" in text
        assert "Dry run: ON" in app.client.get("/console").text
        assert [r for r in audit_rows(app) if r[2].startswith("dry_run")] == []

    def test_replay_and_discard_of_held_deliveries_and_replay_all(self, app_factory):
        app = app_factory(enable_connector=False)
        ids = [post_webhook(app, definite()) for _ in range(3)]
        for delivery_id in ids:
            app.wait_state(delivery_id, "held")
        sign_in(app)
        page = app.client.get(f"/console/deliveries/{ids[0]}").text
        assert ">Replay</button>" in page and ">Discard</button>" in page
        listing = app.client.get("/console/deliveries?state=held").text
        assert "re-queues the <strong>3</strong> held" in listing and ">Replay all</button>" in listing
        assert act(app, f"/console/deliveries/{ids[0]}/discard", reason="test booking") == ("ok", f"Delivery {ids[0]} discarded (held -> ignored).")
        app.client.put("/admin/flags", json={"enable_connector": True}, headers=app.admin())
        assert act(app, f"/console/deliveries/{ids[1]}/replay", reason="one first") == ("ok", f"Delivery {ids[1]} re-queued.")
        assert act(app, "/console/replay", state="held", reason="the rest") == ("ok", "Re-queued 1 held delivery, oldest first.")
        for delivery_id in ids[1:]:
            app.wait_state(delivery_id, "done")
        done = app.client.get(f"/console/deliveries/{ids[1]}").text
        assert ">Replay</button>" not in done and ">Discard</button>" not in done
        assert [r for r in audit_rows(app) if r[0] == "console"] == [
            ("console", "discard", f"delivery {ids[0]}: moved to ignored", "test booking"),
            ("console", "replay", f"delivery {ids[1]}: re-queued", "one first"),
            ("console", "replay", "1 held deliveries re-queued", "the rest"),
        ]

    @pytest.mark.parametrize("path, fields", [
        ("/console/flags", {"change": "connector-off"}),
        ("/console/flags/reset", {}),
        ("/console/replay", {"state": "held"}),
        ("/console/deliveries/1/replay", {}),
        ("/console/deliveries/1/discard", {}),
        ("/console/deliveries/1/forget", {}),
        ("/console/mapping/reload", {}),
    ])
    def test_an_action_without_a_reason_changes_nothing(self, app_factory, path, fields):
        app = app_factory(enable_connector=False)
        app.wait_state(post_webhook(app, definite()), "held")  # delivery 1
        sign_in(app)
        kind, text = act(app, path, reason="   ", **fields)
        assert (kind, text) == ("error", "Nothing was changed: give a reason (it goes into the audit log).")
        assert audit_rows(app) == []

    def test_forgetting_an_events_order_after_a_clean_up_in_revel(self, app_factory):
        app = app_factory()
        payload, delivery_id = done_and_signed_in(app)
        assert ">Forget order</button>" in app.client.get(f"/console/deliveries/{delivery_id}").text
        event_id = payload["event"]["id"]
        assert act(app, f"/console/deliveries/{delivery_id}/forget", reason="voided in Revel") == (
            "ok", f"Event {event_id}: ledger entry tripleseat-{event_id} dropped; a later delivery may order it again.")
        assert act(app, f"/console/deliveries/{delivery_id}/forget", reason="again") == (
            "error", f"Event {event_id} has no order in the ledger: nothing to forget.")
        [first, second] = [r for r in audit_rows(app) if r[1] == "forget"]
        assert (first[0], first[3]) == ("console", "voided in Revel") and second[3] == "again"

    def test_reload_mapping_puts_a_fixed_file_in_force_and_refuses_a_broken_one(self, app_factory, tmp_path):
        from tests.integration.conftest import ROOT

        mapping_file = tmp_path / "mapping.toml"
        original = (ROOT / "examples" / "mapping.toml").read_text()
        mapping_file.write_text(original)
        app = app_factory(mapping_file=str(mapping_file))
        app.wait_state(post_webhook(app, example("unmapped")), "dead")
        sign_in(app)
        assert '"menu_item:7777" = <Revel product id>' in html.unescape(app.client.get("/console/mapping").text)
        mapping_file.write_text(original.replace("[products]", '[products]\n"menu_item:7777" = 777', 1))
        kind, text = act(app, "/console/mapping/reload", reason="map the fruit tower")
        assert kind == "ok" and text.startswith(f"Mapping reloaded: {mapping_file}")
        page = html.unescape(app.client.get("/console/mapping").text)
        assert "menu_item:7777" in page and '"menu_item:7777" = <Revel product id>' not in page
        mapping_file.write_text("[products\n")
        kind, text = act(app, "/console/mapping/reload", reason="oops")
        assert kind == "error" and text.startswith("Refused: mapping file not reloaded, the one in force stays:")
        assert "menu_item:7777" in app.client.get("/console/mapping").text
        reloads = [r for r in audit_rows(app) if r[1] == "mapping.reload"]
        assert [(r[0], r[3]) for r in reloads] == [("console", "map the fruit tower"), ("console", "oops")]

    def test_a_delivery_that_is_not_replayable_says_so(self, app_factory):
        app = app_factory()
        delivery_id = post_webhook(app, definite())
        app.wait_state(delivery_id, "done")
        sign_in(app)
        assert act(app, f"/console/deliveries/{delivery_id}/replay", reason="why not") == ("error", f"Delivery {delivery_id} is done: it cannot be replayed.")


class TestPages:
    def test_a_done_delivery_shows_its_order_revel_result_emails_and_timeline(self, app_factory):
        app = app_factory()
        payload, delivery_id = done_and_signed_in(app)
        page = app.client.get(f"/console/deliveries/{delivery_id}").text
        reference = f"tripleseat-{payload['event']['id']}"
        for heading in ("Mapped order", "Revel result", "Timeline", "Emails", "Last error"):
            assert f">{heading}</h2>" in page
        assert reference in page and "order_created" in page and "<caption>Items</caption>" in page
        listing = app.client.get(f"/console/deliveries?event={payload['event']['id']}").text
        assert f'<a href="/console/deliveries/{delivery_id}">{delivery_id}</a>' in listing
        assert "201 Tropicana" in listing

    def test_times_are_on_the_venues_clock_with_utc_on_hover(self, app_factory):
        app = app_factory()
        delivery_id = post_webhook(app, definite())
        sign_in(app)
        page = app.client.get(f"/console/deliveries/{delivery_id}").text
        match = re.search(r'<time datetime="([^"]+)" title="([^"]+) UTC">([^<]+)</time>', page)
        assert match and match.group(1).endswith("+00:00")
        assert match.group(3).endswith(("PST", "PDT"))  # examples/mapping.toml: America/Los_Angeles

    def test_the_mapping_page_lists_unmapped_items_with_their_toml_lines(self, app_factory):
        app = app_factory()
        delivery_id = post_webhook(app, example("unmapped"))
        app.wait_state(delivery_id, "dead")
        sign_in(app)
        page = html.unescape(app.client.get("/console/mapping").text)
        assert '"menu_item:7777" = <Revel product id>' in page
        assert "examples/mapping.toml" in page and "Tropicana" in page

    def test_the_overview_shows_counts_with_links_readiness_and_version(self, app_factory):
        from tsrevel.version import __version__

        app = app_factory(enable_connector=False)
        app.wait_state(post_webhook(app, definite()), "held")
        sign_in(app)
        for path in ("/console", "/console/fragments/overview"):
            page = app.client.get(path).text
            assert '<a href="/console/deliveries?state=held">' in page
            assert "Ready" in page and f"tsrevel {__version__}" in page and "Connector: OFF" in page

    def test_no_secret_appears_in_any_page(self, app_factory):
        app = app_factory(sendgrid_api_key="SG.console-test-key", email_from="tsrevel@example.com")
        delivery_id = post_webhook(app, definite())
        app.wait_state(delivery_id, "done")
        sign_in(app)
        secrets = [ADMIN_TOKEN, SIGNING_SECRET, "revel-key", "revel-secret", "SG.console-test-key"]
        for path in [*PAGES, f"/console/deliveries/{delivery_id}", "/console/login", "/console/deliveries?state=done"]:
            page = app.client.get(path)
            assert [s for s in secrets if s in page.text] == [], path
            assert [s for s in secrets if any(s in c for c in page.headers.get_list("set-cookie"))] == [], path

    def test_pages_load_nothing_from_elsewhere_cannot_be_framed_and_are_not_cached(self, app_factory):
        app = app_factory()
        sign_in(app)
        for path in ("/console", "/console/login", "/console/deliveries/424242"):
            headers = app.client.get(path).headers
            assert "default-src 'self'" in headers["content-security-policy"] and "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
        page = app.client.get("/console").text
        assert not re.search(r'(src|href|action)="(https?:)?//', page)  # every script, style, link and form is on this host
        assert app.client.get("/console/static/console.js").headers.get("cache-control") != "no-store"

    def test_an_unknown_delivery_is_a_404_page(self, app_factory):
        app = app_factory()
        sign_in(app)
        page = app.client.get("/console/deliveries/424242")
        assert page.status_code == 404 and "<h1>Not found</h1>" in page.text


class TestSyncEvent:
    """The "Sync event" form: the same use case as `tsrevel sync EVENT_ID` and POST /admin/sync."""

    def test_a_missed_event_is_fetched_ordered_once_and_audited(self, app_factory, tripleseat):
        app, missed = service_with_missed_event(app_factory, tripleseat, interval_s=0.0)
        sign_in(app)
        assert "Sync event" in app.client.get("/console").text
        kind, text = act(app, "/console/sync", event_id=str(missed["id"]), reason="never reached Revel")
        assert kind == "ok" and f"Event {missed['id']} fetched" in text
        delivery_id = int(re.search(r"delivery (\d+)", text).group(1))
        delivery = app.wait_state(delivery_id, "done")
        assert delivery["source"] == "sync"
        assert ("console", "sync", "never reached Revel") in [(r[0], r[1], r[3]) for r in audit_rows(app)]
        assert [o.local_id for o in app.revel.created] == [f"tripleseat-{missed['id']}"]

    def test_an_unknown_event_or_a_missing_reason_changes_nothing(self, app_factory, tripleseat):
        app, _ = service_with_missed_event(app_factory, tripleseat, interval_s=0.0)
        sign_in(app)
        assert act(app, "/console/sync", event_id="999", reason="typo") == ("error", "Not synced: TripleSeat has no event 999")
        assert act(app, "/console/sync", event_id="999")[0] == "error"
        assert app.client.get("/admin/deliveries", headers=app.admin()).json()["deliveries"] == []

    def test_without_the_tripleseat_api_there_is_no_sync_form(self, app_factory):
        app = app_factory()
        sign_in(app)
        assert "Sync event" not in app.client.get("/console").text
