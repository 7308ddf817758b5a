"""`tsrevel verify` and the CLI's levers against the service running as a subprocess on a real port."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner, Result

from tests.e2e.conftest import ADMIN_TOKEN
from tests.helpers import body, definite
from tsrevel.entrypoints.cli import main

pytestmark = pytest.mark.e2e


def tsrevel(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def check_lines(result: Result) -> dict[str, str]:
    """The ✓/✗/· mark of each checklist item, by item name."""
    marks = {}
    for line in result.stdout.splitlines():
        if line[:1] in ("✓", "✗", "·"):
            name = line[2:].split("  ")[0].strip()
            marks[name] = line[:1]
    return marks


class TestVerify:
    def test_a_healthy_service_passes_every_item_and_the_probe_makes_no_order(self, start_service, service_env, fake_revel, fake_sendgrid):
        service = start_service(service_env)
        started = time.monotonic()
        result = tsrevel(service_env, "verify", service.url, "--expect-enabled", "--expect-live")
        elapsed = time.monotonic() - started
        print(f"verify against a healthy service took {elapsed:.3f} s")  # measured for the record, not asserted
        assert result.exit_code == 0, result.output
        assert check_lines(result) == {
            "GET /health": "✓", "ENABLE_CONNECTOR": "✓", "DRY_RUN": "✓", "POST /test/webhook": "✓", "GET /ready": "✓",
        }
        assert "5 passed, 0 failed, 0 not checked" in result.stdout
        webhook_line = next(line for line in result.stdout.splitlines() if "POST /test/webhook" in line)
        assert "correlation id verify-" in webhook_line and "ignored" in webhook_line
        # The probe is a lead: stored as ignored, nothing sent anywhere.
        deliveries = service.admin("GET", "/admin/deliveries").json()["deliveries"]
        assert [(d["state"], d["trigger_type"]) for d in deliveries] == [("ignored", "CREATE_LEAD")]
        assert fake_revel.requests == [] and fake_sendgrid.requests == []

    def test_a_switch_unexpectedly_off_fails_with_the_right_line(self, start_service, service_env):
        service = start_service({**service_env, "ENABLE_CONNECTOR": "false"})
        result = tsrevel(service_env, "verify", service.url, "--expect-enabled")
        assert result.exit_code == 1
        marks = check_lines(result)
        assert marks["ENABLE_CONNECTOR"] == "✗"
        assert {k: v for k, v in marks.items() if k != "ENABLE_CONNECTOR"} == {
            "GET /health": "✓", "DRY_RUN": "·", "POST /test/webhook": "✓", "GET /ready": "✓",
        }
        assert any(line.startswith("✗ ENABLE_CONNECTOR") and line.endswith("ENABLE_CONNECTOR=false, expected true") for line in result.stdout.splitlines())
        assert "3 passed, 1 failed, 1 not checked" in result.stdout

    def test_a_wrong_token_fails_the_webhook_item(self, start_service, service_env):
        service = start_service(service_env)
        result = tsrevel({**service_env, "TSREVEL_ADMIN_TOKEN": "not-the-admin-token-at-all"}, "verify", service.url)
        assert result.exit_code == 1
        assert check_lines(result)["POST /test/webhook"] == "✗"
        assert "HTTP 401" in result.stdout  # a wrong token is 401 (issue 11, item 16); 403 means disabled
        assert ADMIN_TOKEN not in result.output

    def test_a_service_that_is_not_there_fails_fast(self, service_env):
        from tests.e2e.conftest import free_port

        result = tsrevel(service_env, "verify", f"http://127.0.0.1:{free_port()}")
        assert result.exit_code == 1
        assert set(check_lines(result).values()) == {"✗"}


class TestRunbookLeversAgainstTheRunningService:
    def test_kill_switch_hold_verify_then_switch_on_and_replay_gives_one_order(self, start_service, service_env, fake_revel, fake_sendgrid):
        service = start_service(service_env)
        assert tsrevel(service_env, "flags", "set", "--disable-connector", "--reason", "INC-9: drill", "--actor", "oncall").exit_code == 0
        disabled = tsrevel(service_env, "verify", service.url, "--expect-disabled", "--expect-live")
        assert disabled.exit_code == 0, disabled.output  # /health reads the runtime flags from the store

        answer = service.signed_post(body(definite())).json()
        service.wait_state(answer["delivery_id"], "held")
        assert fake_revel.requests == [] and fake_sendgrid.requests == []

        assert tsrevel(service_env, "flags", "set", "--enable-connector", "--reason", "INC-9: over").exit_code == 0
        replay = tsrevel(service_env, "replay", "--state", "held", "--reason", "INC-9: over", "--wait", "--timeout", "20")
        assert replay.exit_code == 0, replay.output
        # The delivery and verify's probe (held while the switch was off) are both finished.
        assert "Processed: 1 done, 1 ignored" in replay.stdout
        assert len(fake_revel.orders) == 1
        assert tsrevel(service_env, "verify", service.url, "--expect-enabled", "--expect-live").exit_code == 0
        audit = tsrevel(service_env, "audit").stdout
        assert "oncall\tflags.set\tenable_connector=False\tINC-9: drill" in audit
