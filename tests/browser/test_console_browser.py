"""The operators' console in a real browser: sign in, hold, replay, see the order; forged and wrong input refused."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ADMIN_TOKEN
from tests.helpers import body, definite, example

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}


def shoot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"console-{name}.png"), full_page=True)


def sign_in(page, url: str, token: str = ADMIN_TOKEN) -> None:
    page.goto(url + "/console")
    assert page.url.startswith(url + "/console/login"), page.url
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def flags(service) -> dict:
    return httpx.get(service.url + "/health", timeout=10).json()


@pytest.fixture
def signed_in(chromium, start_service, service_env):
    """The service, and a desktop browser page signed in to its console."""
    service = start_service(service_env)
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, service.url)
    yield service, page
    context.close()


class TestConsoleInABrowser:
    def test_hold_a_webhook_then_replay_it_into_an_order(self, chromium, start_service, service_env, screenshots):
        service = start_service(service_env)
        context = chromium.new_context(viewport=DESKTOP)
        page = context.new_page()

        sign_in(page, service.url, token="not-the-admin-token-at-all")
        assert page.get_by_text("That token was not accepted.").is_visible()
        shoot(page, screenshots, "login")
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        assert page.url == service.url + "/console"
        assert page.get_by_text("Connector: ON").is_visible()

        page.get_by_label("Reason").fill("drill: hold everything")
        page.get_by_role("button", name="Turn connector off").click()
        assert page.get_by_text("Connector: OFF", exact=True).is_visible()
        assert flags(service)["enable_connector"] is False

        payload = definite()
        answer = service.signed_post(body(payload)).json()
        delivery_id = answer["delivery_id"]
        service.wait_state(delivery_id, "held")

        page.goto(service.url + "/console/deliveries?state=held")
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=str(delivery_id), exact=True))
        assert "held" in row.inner_text()
        assert page.get_by_role("button", name="Replay all").is_visible()
        shoot(page, screenshots, "deliveries")

        page.goto(service.url + "/console")
        page.get_by_label("Reason").fill("drill over")
        page.get_by_role("button", name="Turn connector on").click()
        assert page.get_by_text("Connector: ON", exact=True).is_visible()
        shoot(page, screenshots, "overview")

        page.goto(service.url + "/console/deliveries?state=held")
        page.get_by_role("link", name=str(delivery_id), exact=True).click()
        assert page.url == f"{service.url}/console/deliveries/{delivery_id}"
        page.get_by_label("Reason").fill("drill: replay the held one")
        page.get_by_role("button", name="Replay", exact=True).click()
        assert page.get_by_text(f"Delivery {delivery_id} re-queued.").is_visible()
        service.wait_state(delivery_id, "done")
        page.reload()
        reference = f"tripleseat-{payload['event']['id']}"
        assert page.locator("h1").inner_text().endswith("done")
        assert page.get_by_text(reference).first.is_visible()
        assert page.get_by_role("table").filter(has_text="items").is_visible()
        shoot(page, screenshots, "delivery")

        unmapped = service.signed_post(body(example("unmapped"))).json()["delivery_id"]
        service.wait_state(unmapped, "dead")
        page.goto(service.url + "/console/mapping")
        assert page.get_by_role("heading", name="Mapping").is_visible()
        assert page.get_by_text('"menu_item:7777" = <Revel product id>').is_visible()
        shoot(page, screenshots, "mapping")
        page.get_by_label("Reason").fill("drill: reload the mapping")
        page.get_by_role("button", name="Reload mapping").click()
        assert page.get_by_text("Mapping reloaded:").is_visible()
        page.goto(service.url + "/console/audit")
        audit = page.get_by_role("table").inner_text()
        assert "drill: hold everything" in audit and "drill: replay the held one" in audit and "console" in audit
        assert "mapping.reload" in audit
        shoot(page, screenshots, "audit")

        phone = chromium.new_context(viewport=PHONE, device_scale_factor=1)
        small = phone.new_page()
        sign_in(small, service.url)
        for path in ("/console", f"/console/deliveries/{delivery_id}", "/console/mapping", "/console/audit", "/console/deliveries"):
            small.goto(service.url + path)
            width = small.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width} px wide on a {PHONE['width']} px screen"
        shoot(small, screenshots, "phone")
        page.get_by_role("button", name="Sign out").click()
        assert page.url.startswith(service.url + "/console/login")
        phone.close()
        context.close()

    def test_a_forged_form_without_the_csrf_token_is_refused(self, signed_in):
        service, page = signed_in
        # A form built in the page, posting to the console with the session's cookies but no CSRF token.
        with page.expect_navigation():
            page.evaluate("""() => {
                const form = document.createElement("form");
                form.method = "post"; form.action = "/console/flags";
                for (const [name, value] of [["change", "connector-off"], ["reason", "forged"]]) {
                    const input = document.createElement("input");
                    input.type = "hidden"; input.name = name; input.value = value; form.appendChild(input);
                }
                document.body.appendChild(form); form.submit();
            }""")
        assert page.get_by_role("heading", name="Form refused").is_visible()
        assert flags(service)["enable_connector"] is True
        page.goto(service.url + "/console/audit")
        assert "forged" not in page.get_by_role("table").inner_text()

    def test_the_overview_refreshes_itself(self, signed_in):
        service, page = signed_in
        assert page.get_by_text("Connector: ON", exact=True).is_visible()
        service.admin("PUT", "/admin/flags", json={"enable_connector": False, "reason": "from the API"})
        page.get_by_text("Connector: OFF", exact=True).wait_for(timeout=20_000)
        assert re.search(r"Override set by admin-api", page.inner_text("#overview"))
