"""The CLI's pure parts: argument rules, tables, the verify checklist over a scripted transport, and the drill."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from tsrevel.entrypoints import drill as drill_module
from tsrevel.entrypoints.cli import main
from tsrevel.entrypoints.console import age, table
from tsrevel.entrypoints.drill import (
    Invariant,
    ScenarioResult,
    no_duplicate,
    no_loss,
    run_drill,
)
from tsrevel.entrypoints.operator import reconcile_chunks, redact_url
from tsrevel.entrypoints.verify import probe_body, verify
from tsrevel.testing import fake_world

TOKEN = "unit-admin-token-0123456789"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


class TestArgumentRules:
    @pytest.mark.parametrize(
        "args",
        [
            ["flags", "set", "--reason", "nothing to set"],
            ["flags", "set", "--disable-connector"],
            ["replay", "--reason", "neither an id nor a state"],
            ["replay", "7", "--state", "held", "--reason", "both"],
            ["replay", "--state", "done", "--reason", "done is never replayed"],
            ["discard", "7"],
            ["discard", "7", "--reason", "  "],
            ["forget", "55521609", "--yes"],
            ["reconcile", "--from", "2026-01-15"],
            ["prune", "--older-than-days", "0"],
        ],
    )
    def test_an_incomplete_or_unsafe_command_is_a_usage_error_before_anything_opens(self, runner, args, tmp_path):
        env = {"TSREVEL_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}"}
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 2, result.output
        assert not (tmp_path / "never.db").exists()

    def test_a_bad_environment_is_a_configuration_error_with_exit_code_2(self, runner):
        result = runner.invoke(main, ["status"], env={"DRY_RUN": "maybe"})
        assert result.exit_code == 2
        assert "configuration error: DRY_RUN: 'maybe' is not a boolean" in result.output


class TestOutput:
    def test_a_table_off_a_terminal_is_tab_separated_and_complete(self):
        long = "x" * 200
        text = table(["ID", "NOTE"], [[1, long], [2, None]], terminal=False)
        assert text.splitlines() == ["ID\tNOTE", f"1\t{long}", "2\t-"]

    def test_a_table_on_a_terminal_is_aligned_and_clipped(self):
        text = table(["ID", "NOTE"], [[1, "x" * 200], [22, "short"]], terminal=True)
        lines = [line for line in text.splitlines()]
        assert lines[1].startswith("1   x") and lines[1].endswith("…")
        assert lines[2].startswith("22  short")
        assert max(len(line) for line in lines[1:]) <= 4 + 60

    @pytest.mark.parametrize(("seconds", "shown"), [(None, "-"), (5, "5s"), (192, "3m 12s"), (18120, "5h 02m"), (198000, "2d 07h")])
    def test_ages_read_like_people_say_them(self, seconds, shown):
        assert age(seconds) == shown

    def test_a_database_password_is_never_printed(self):
        assert redact_url("postgresql://ops:s3cret@db.internal:5432/tsrevel") == "postgresql://ops:***@db.internal:5432/tsrevel"
        assert redact_url("sqlite:///./var/tsrevel.db") == "sqlite:///./var/tsrevel.db"


class TestReconcileWindows:
    def test_the_revel_windows_cover_the_days_with_a_margin_and_no_gap(self):
        from datetime import date, timedelta

        chunks = reconcile_chunks(date(2026, 1, 14), date(2026, 1, 15), 1)
        assert len(chunks) == 4  # the two days plus a day of margin each side (Revel's local clock)
        assert chunks[0][0].isoformat() == "2026-01-13T00:00:00+00:00"
        assert chunks[-1][1].isoformat() == "2026-01-16T23:59:59+00:00"
        for (_, end), (start, _) in zip(chunks, chunks[1:], strict=False):
            assert start - end == timedelta(seconds=1)


def scripted_service(*, enable_connector: bool = True, dry_run: bool = False, token: str = TOKEN, echo_cid: bool = True,
                     ready: int = 200) -> httpx.MockTransport:
    """A stand-in for the service's four endpoints: enough to test how verify judges answers."""

    def handle(request: httpx.Request) -> httpx.Response:
        cid = request.headers.get("x-correlation-id", "svc-made-id")
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok", "enable_connector": enable_connector, "dry_run": dry_run, "version": "t", "flags_source": "store"})
        if request.url.path == "/ready":
            return httpx.Response(ready, json={"status": "ready"} if ready == 200 else {"problems": ["store not writable"]})
        if request.url.path == "/test/webhook":
            if request.headers.get("authorization") != f"Bearer {token}":
                return httpx.Response(403, json={"error": "missing or wrong admin bearer token"})
            body = json.loads(request.content)
            assert body["webhook_trigger_type"] == "CREATE_LEAD" and "event" not in body
            answer_cid = cid if echo_cid else "something-else"
            return httpx.Response(200, headers={"x-correlation-id": answer_cid}, json={
                "correlation_id": answer_cid, "decision": "ignored", "revel": None,
                "delivery": {"id": 9, "timeline": [{"state": "queued", "note": "received"}, {"state": "ignored", "note": "CREATE_LEAD carries lead"}]},
            })
        return httpx.Response(404)

    return httpx.MockTransport(handle)


def run_verify(transport: httpx.MockTransport, **options):
    with httpx.Client(base_url="http://svc.test", transport=transport) as client:
        return verify("http://svc.test", client=client, **options)


class TestVerifyJudgement:
    def test_a_healthy_service_passes_every_item(self):
        result = run_verify(scripted_service(), token=TOKEN, expect_enabled=True, expect_dry_run=False)
        assert result.ok
        assert [(c.name, c.ok) for c in result.checks] == [
            ("GET /health", True), ("ENABLE_CONNECTOR", True), ("DRY_RUN", True), ("POST /test/webhook", True), ("GET /ready", True),
        ]
        assert "ignored" in result.checks[3].evidence

    def test_flags_without_an_expectation_are_shown_not_judged(self):
        result = run_verify(scripted_service(), token=TOKEN)
        assert result.ok
        assert [c.ok for c in result.checks[1:3]] == [None, None]
        assert "pass --expect-enabled or --expect-disabled" in result.checks[1].evidence

    def test_a_switch_that_is_unexpectedly_off_fails_with_the_value_and_the_expectation(self):
        result = run_verify(scripted_service(enable_connector=False), token=TOKEN, expect_enabled=True)
        assert not result.ok
        assert result.checks[1].ok is False
        assert result.checks[1].evidence == "ENABLE_CONNECTOR=false, expected true"

    def test_no_token_or_a_wrong_one_fails_the_webhook_item(self):
        assert "no admin token" in run_verify(scripted_service(), token=None).checks[3].evidence
        wrong = run_verify(scripted_service(), token="wrong-token-0123456789").checks[3]
        assert wrong.ok is False and "HTTP 403" in wrong.evidence

    def test_a_lost_correlation_id_fails_the_webhook_item(self):
        check = run_verify(scripted_service(echo_cid=False), token=TOKEN).checks[3]
        assert check.ok is False and "correlation id not carried through" in check.evidence

    def test_not_ready_fails_with_the_services_reason(self):
        check = run_verify(scripted_service(ready=503), token=TOKEN).checks[4]
        assert check.ok is False and "store not writable" in check.evidence

    def test_an_unreachable_service_fails_every_item_at_once(self):
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        result = run_verify(httpx.MockTransport(refuse), token=TOKEN, expect_enabled=True)
        assert [c.ok for c in result.checks] == [False] * 5
        assert "did not answer /health" in result.checks[4].evidence

    def test_every_probe_is_a_new_body(self):
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc)
        assert probe_body("a", now) != probe_body("b", now)


@pytest.mark.anyio
class TestDrill:
    async def test_all_four_scenarios_keep_every_invariant(self):
        results = await run_drill()
        assert [r.key for r in results] == ["runtime-errors", "data-integrity", "third-party-failure", "security-incident"]
        for result in results:
            assert result.ok, [i for i in result.invariants if not i.ok]
            names = {i.name for i in result.invariants}
            assert {"no duplicate order", "no loss", "no side effect while held", "every lever is in the audit log"} <= names
            assert any(lever.startswith("tsrevel flags set --disable-connector") for lever in result.levers)

    def test_a_duplicate_breaks_the_invariant(self):
        assert not no_duplicate({"tripleseat-1": 2, "tripleseat-2": 1}).ok
        assert no_duplicate({"tripleseat-1": 1}).ok

    async def test_a_delivery_left_held_is_a_loss(self):
        world = fake_world(enable_connector=False)
        await world.deliver(drill_module.event_payload(1))
        await world.drain()
        invariant = await no_loss(world, {"1"}, {})
        assert not invariant.ok
        assert "unfinished: {'held': 1}" in invariant.evidence


class TestDrillCommand:
    def test_the_drill_passes_and_says_so(self, runner):
        result = runner.invoke(main, ["drill", "--scenario", "third-party-failure"])
        assert result.exit_code == 0, result.output
        assert "== Third-party API failure" in result.output
        assert "✓ no side effect while held" in result.output
        assert result.output.rstrip().endswith("1/1 scenario(s) kept every invariant")

    def test_a_broken_invariant_makes_the_drill_fail(self, runner, monkeypatch):
        async def broken() -> ScenarioResult:
            return ScenarioResult("broken", "Broken on purpose", "nothing", (), (Invariant("no loss", False, "1 delivery lost"),))

        monkeypatch.setitem(drill_module.SCENARIOS, "runtime-errors", broken)
        result = runner.invoke(main, ["drill", "--scenario", "runtime-errors"])
        assert result.exit_code == 1
        assert "✗ no loss: 1 delivery lost" in result.output
        assert "broken: broken" in result.output


@pytest.mark.anyio
class TestOperatorUseCases:
    """The Processor's discard, forget and prune: what the CLI calls, each audited with who and why."""

    async def test_forget_is_refused_while_a_delivery_may_be_placing_the_order(self):
        from datetime import timedelta

        from tsrevel.domain.errors import InvalidRequest
        from tsrevel.domain.ports import RESERVED

        world = fake_world()
        result = await world.deliver(drill_module.event_payload(4242))
        now = world.clock.now()
        claimed = await world.store.claim_delivery(now=now, lease_until=now + timedelta(seconds=60))
        reservation = await world.store.reserve_order(
            event_id="4242", reference="tripleseat-4242", establishment_id=4, delivery_id=claimed.id, token=claimed.lease_token, now=now
        )
        assert reservation.outcome == RESERVED and claimed.id == result.delivery_id
        with pytest.raises(InvalidRequest, match=f"delivery {claimed.id} is placing event 4242's order"):
            await world.processor.forget("4242", actor="ivy", reason="too early")
        assert await world.store.get_order("4242") is not None
        assert await world.store.list_audit() == []

    async def test_forget_drops_a_created_order_and_says_so_in_the_audit_log(self):
        world = fake_world()
        await world.deliver(drill_module.event_payload(4343))
        await world.settle()
        dropped = await world.processor.forget("4343", actor="ivy", reason="voided in Revel")
        assert dropped is not None and dropped.reference == "tripleseat-4343"
        assert await world.store.get_order("4343") is None
        [entry] = await world.store.list_audit()
        assert (entry.actor, entry.action, entry.reason) == ("ivy", "forget", "voided in Revel")
        assert entry.detail == "event 4343: ledger entry tripleseat-4343 (created, Revel id 1001) dropped"
        assert await world.processor.forget("4343", actor="ivy", reason="again") is None

    async def test_discard_and_prune_are_audited_whether_or_not_they_did_anything(self):
        from datetime import timedelta

        world = fake_world(enable_connector=False)
        result = await world.deliver(drill_module.event_payload(4444))
        await world.drain()
        assert await world.processor.discard(result.delivery_id, actor="jo", reason="test event")
        assert not await world.processor.discard(result.delivery_id, actor="jo", reason="twice")
        world.clock.advance(86400 * 2)
        assert await world.processor.prune(older_than=world.clock.now() - timedelta(days=1), actor="jo", reason="tidy") == 1
        assert [(a.action, a.detail) for a in reversed(await world.store.list_audit())] == [
            ("discard", f"delivery {result.delivery_id}: moved to ignored"),
            ("discard", f"delivery {result.delivery_id}: not discardable"),
            ("prune", f"1 finished deliveries last updated before {(world.clock.now() - timedelta(days=1)).isoformat()} deleted"),
        ]
