"""The tsrevel CLI over a real SQLite store and a loopback fake Revel: the levers of the runbook, end to end.

Deliveries are put in the store the way the service does it: through the same container and
Processor (signed intake, then the worker's step), so every CLI command acts on real state.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from dependency_injector import providers

from tests.helpers import definite, example
from tests.integration.conftest import ADMIN_TOKEN, ROOT, SIGNING_SECRET
from tsrevel.adapters.fakes import FakeRevel, ManualClock
from tsrevel.domain.signature import sign_body
from tsrevel.entrypoints.cli import main
from tsrevel.entrypoints.container import build_container, check_database
from tsrevel.entrypoints.settings import Settings
from tsrevel.testing.servers import FakeRevelServer, ServerFault

pytestmark = pytest.mark.integration

REVEL_KEY, REVEL_SECRET = "cli-revel-key", "cli-revel-secret"
ALL_PRODUCTS = {4: [(579, "Ring"), (580, "Ring (Tropicana)"), (581, "Bagel"), (590, "Cold brew"), (601, "Pastry platter")],
                5: [(579, "Ring"), (581, "Bagel"), (590, "Cold brew"), (601, "Pastry platter")]}
OUR_PREFIXES = ("TSREVEL_", "REVEL_", "SENDGRID_", "TRIPLESEAT_", "EMAIL_", "ENABLE_CONNECTOR", "DRY_RUN", "ALLOWED_LOCATIONS", "ORDER_ON_STATUSES")


@pytest.fixture
def revel_server() -> Iterator[FakeRevelServer]:
    server = FakeRevelServer(api_key=REVEL_KEY, api_secret=REVEL_SECRET, establishments=[(4, "Tropicana"), (5, "Harbor Room")], products=ALL_PRODUCTS)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path, revel_server: FakeRevelServer) -> dict[str, str | None]:
    """The service's environment (production-like), with any of our variables from the outer shell removed."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith(OUR_PREFIXES)}
    clean.update(
        ENABLE_CONNECTOR="true",
        DRY_RUN="false",
        TSREVEL_DATABASE_URL=f"sqlite:///{tmp_path / 'tsrevel.db'}",
        TSREVEL_MAPPING_FILE=str(ROOT / "examples" / "mapping.toml"),
        TSREVEL_ADMIN_TOKEN=ADMIN_TOKEN,
        TRIPLESEAT_SIGNING_SECRET=SIGNING_SECRET,
        REVEL_BASE_URL=revel_server.url,
        REVEL_API_KEY=REVEL_KEY,
        REVEL_API_SECRET=REVEL_SECRET,
        REVEL_MIN_INTERVAL_S="0",
        EMAIL_TO="ops@example.com",
        LOG_FORMAT="text",
    )
    # The service made the database: operator commands never create one (issue 11 item 12).
    asyncio.run(check_database(clean["TSREVEL_DATABASE_URL"]))
    return clean


def cli(env: dict[str, str | None], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input)


def ok(env: dict[str, str | None], *args: str) -> Result:
    result = cli(env, *args)
    assert result.exit_code == 0, f"tsrevel {' '.join(args)} -> {result.exit_code}\n{result.output}"
    return result


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def seed(env: dict[str, str | None], *payloads: dict[str, Any], clock: ManualClock | None = None, revel: FakeRevel | None = None,
         process: bool = True) -> list[int]:
    """Deliver signed payloads and run the worker's step until idle, through the service's own container."""
    settings = Settings.from_env({k: v for k, v in env.items() if v is not None})

    async def go() -> list[int]:
        container = build_container(settings)
        if clock is not None:
            container.clock.override(providers.Object(clock))
        if revel is not None:
            container.revel.override(providers.Object(revel))
        await _resolve(container.init_resources())
        try:
            processor = await _resolve(container.processor())
            ids = []
            for payload in payloads:
                raw = json.dumps(payload).encode()
                result = await processor.accept(raw, signature=sign_body(raw, secret=SIGNING_SECRET), correlation_id="cli-test")
                ids.append(result.delivery_id)
            while process and await processor.process_next() is not None:
                pass
            return ids
        finally:
            await _resolve(container.shutdown_resources())

    return asyncio.run(go())


def delivery(env: dict[str, str | None], delivery_id: int) -> dict[str, Any]:
    return as_json(ok(env, "deliveries", "show", str(delivery_id), "--json"))


def audit(env: dict[str, str | None]) -> list[dict[str, Any]]:
    return as_json(ok(env, "audit", "--json"))


def unmapped(event_id: int) -> dict[str, Any]:
    payload = copy.deepcopy(example("unmapped"))
    payload["object"]["id"] = event_id
    return payload


# ---- flags ------------------------------------------------------------------------------------------------


class TestFlags:
    def test_the_kill_switch_set_from_the_cli_holds_what_the_service_processes_next(self, env, revel_server):
        result = ok(env, "flags", "set", "--disable-connector", "--reason", "INC-1: Revel 500s", "--actor", "alice")
        assert "ENABLE_CONNECTOR\tfalse\truntime override by alice at " in result.stdout
        assert result.stdout.splitlines()[1].endswith(": INC-1: Revel 500s")
        [held] = seed(env, definite())
        assert delivery(env, held)["state"] == "held"
        assert revel_server.requests == []

    def test_show_says_where_each_flag_comes_from_and_reset_goes_back_to_the_environment(self, env):
        assert "ENABLE_CONNECTOR\ttrue\tenvironment" in ok(env, "flags", "show").stdout
        ok(env, "flags", "set", "--dry-run", "--reason", "rehearse", "--actor", "bob")
        shown = ok(env, "flags", "show").stdout
        assert "DRY_RUN\ttrue\truntime override by bob" in shown and "ENABLE_CONNECTOR\ttrue\tenvironment" in shown
        reset = ok(env, "flags", "reset", "--reason", "rehearsal over", "--actor", "bob").stdout
        assert "DRY_RUN\tfalse\tenvironment" in reset
        assert [(a["actor"], a["action"], a["reason"]) for a in audit(env)] == [
            ("bob", "flags.reset", "rehearsal over"), ("bob", "flags.set", "rehearse"),
        ]

    def test_the_actor_defaults_to_the_os_user(self, env):
        import getpass

        ok(env, "flags", "set", "--disable-connector", "--reason", "who am i")
        assert audit(env)[0]["actor"] == getpass.getuser()

    def test_going_live_without_revel_credentials_is_refused_and_changes_nothing(self, env):
        no_revel = {**env, "DRY_RUN": "true", "REVEL_BASE_URL": None, "REVEL_API_KEY": None, "REVEL_API_SECRET": None}
        result = cli(no_revel, "flags", "set", "--no-dry-run", "--reason", "go live")
        assert result.exit_code == 1
        assert "--no-dry-run needs REVEL_BASE_URL" in result.output
        assert audit(no_revel) == []

    def test_the_levers_work_even_when_the_mapping_file_is_broken(self, env, tmp_path):
        broken = tmp_path / "broken.toml"
        broken.write_text("[locations.201]\nrevel_establishment = 'four'\n")
        bad = {**env, "TSREVEL_MAPPING_FILE": str(broken)}
        result = cli(bad, "flags", "set", "--disable-connector", "--reason", "bad mapping deployed")
        assert result.exit_code == 0, result.output
        assert "warning: mapping file not loaded" in result.stderr
        checked = cli(bad, "check-mapping")
        assert checked.exit_code == 2 and "configuration error" in checked.output


# ---- deliveries, replay, discard -------------------------------------------------------------------


class TestDeliveriesAndReplay:
    def test_held_deliveries_are_listed_shown_and_replayed_into_exactly_one_order_each(self, env, revel_server):
        ok(env, "flags", "set", "--disable-connector", "--reason", "INC-2")
        held = seed(env, definite(), definite())
        listed = ok(env, "deliveries", "list", "--state", "held").stdout.splitlines()
        assert listed[0].startswith("ID\tSTATE\tEVENT") and len(listed) == 3
        shown = ok(env, "deliveries", "show", str(held[0])).stdout
        assert "State:          held" in shown and "ENABLE_CONNECTOR is false: held for replay" in shown
        assert f"tsrevel replay {held[0]} --reason" in shown

        ok(env, "flags", "set", "--enable-connector", "--reason", "INC-2 fixed")
        replayed = ok(env, "replay", "--state", "held", "--reason", "INC-2 fixed", "--actor", "carol")
        assert "Re-queued 2 deliveries (held)." in replayed.stdout
        assert {delivery(env, i)["state"] for i in held} == {"queued"}
        seed(env)  # the service's worker step
        assert {delivery(env, i)["state"] for i in held} == {"done"}
        assert len(revel_server.orders) == 2
        assert audit(env)[0] == {**audit(env)[0], "actor": "carol", "action": "replay", "detail": "2 held deliveries re-queued", "reason": "INC-2 fixed"}

    def test_replaying_a_done_delivery_is_refused_with_the_reason(self, env, revel_server):
        [done] = seed(env, definite())
        result = cli(env, "replay", str(done), "--reason", "again?")
        assert result.exit_code == 1
        assert f"delivery {done} is done: only dead, dry_run, held, skipped deliveries can be replayed" in result.output
        assert len(revel_server.orders) == 1

    def test_a_discarded_dead_delivery_is_ignored_and_never_replayed(self, env, revel_server):
        [dead] = seed(env, unmapped(61000001))
        assert delivery(env, dead)["state"] == "dead"
        result = ok(env, "discard", str(dead), "--reason", "venue enters it by hand", "--actor", "dave")
        assert f"Delivery {dead} discarded (dead -> ignored)." in result.stdout
        shown = delivery(env, dead)
        assert shown["state"] == "ignored"
        assert shown["timeline"][-1]["note"] == "discarded by dave: venue enters it by hand"
        assert "Re-queued 0 deliveries (dead)." in ok(env, "replay", "--state", "dead", "--reason", "replay all").stdout
        again = cli(env, "discard", str(dead), "--reason", "twice")
        assert again.exit_code == 1 and "is ignored: only dead, dry_run, held, skipped deliveries can be discarded" in again.output
        assert [a["action"] for a in audit(env)] == ["discard", "replay", "discard"]  # newest first
        assert revel_server.orders == []

    def test_an_unknown_delivery_is_a_clear_error(self, env):
        result = cli(env, "deliveries", "show", "999")
        assert result.exit_code == 1 and "delivery 999 does not exist" in result.output

    def test_replay_wait_follows_the_running_service_to_the_end(self, env, app_factory):
        app = app_factory(enable_connector=False)  # the service, on the same SQLite file, its worker running
        raw = json.dumps(definite()).encode()
        answer = app.client.post("/webhooks/tripleseat", content=raw, headers={"X-Signature": sign_body(raw, secret=SIGNING_SECRET)}).json()
        app.wait_state(answer["delivery_id"], "held")
        ok(env, "flags", "set", "--enable-connector", "--reason", "INC-3 over")
        result = ok(env, "replay", "--state", "held", "--reason", "INC-3 over", "--wait", "--timeout", "20")
        assert "Processed: 1 done" in result.stdout
        assert len(app.revel.created) == 1


# ---- forget and prune ----------------------------------------------------------------------------------


class TestForget:
    def test_forget_asks_first_and_then_lets_the_event_be_ordered_again_once(self, env, revel_server):
        payload = definite()
        event_id = str(payload["event"]["id"])
        seed(env, payload)
        assert len(revel_server.orders) == 1

        declined = cli(env, "forget", event_id, "--reason", "INC-4: wrong order voided", input="n\n")
        assert declined.exit_code == 1 and "Aborted" in declined.output
        assert as_json(ok(env, "status", "--json"))["last_order"]["reference"] == f"tripleseat-{event_id}"

        revel_server.clear()  # the Revel admin voided the wrong order by hand
        result = ok(env, "forget", event_id, "--yes", "--reason", "INC-4: wrong order voided", "--actor", "erin")
        assert f"Forgotten. The next delivery of event {event_id} may create tripleseat-{event_id} again." in result.stdout
        entry = audit(env)[0]
        assert (entry["actor"], entry["action"], entry["reason"]) == ("erin", "forget", "INC-4: wrong order voided")
        assert f"event {event_id}: ledger entry tripleseat-{event_id} (created" in entry["detail"]

        seed(env, {**payload, "webhook_trigger_type": "UPDATE_EVENT"})  # TripleSeat re-sends the event
        assert [o["local_id"] for o in revel_server.orders] == [f"tripleseat-{event_id}"]
        assert cli(env, "forget", "no-such-event", "--yes", "--reason", "x").exit_code == 1


class TestPrune:
    def test_old_finished_deliveries_go_and_recent_ones_and_the_ledger_stay(self, env):
        old_clock = ManualClock(datetime.now(timezone.utc) - timedelta(days=100))
        tentative = example("tentative")
        old_ignored, old_ordered = seed(env, tentative, definite(), clock=old_clock, revel=FakeRevel())
        [recent] = seed(env, {**tentative, "message": "a later copy"}, revel=FakeRevel())
        assert delivery(env, old_ignored)["state"] == delivery(env, recent)["state"] == "ignored"
        result = ok(env, "prune", "--older-than-days", "90", "--actor", "frank")
        assert "Pruned 1 delivery last updated more than 90 days ago." in result.stdout
        assert cli(env, "deliveries", "show", str(old_ignored)).exit_code == 1
        assert delivery(env, recent)["state"] == "ignored"
        # The delivery that made an order owns the ledger row, which is never pruned.
        assert delivery(env, old_ordered)["order"]["state"] == "created"
        entry = audit(env)[0]
        assert (entry["actor"], entry["action"], entry["reason"]) == ("frank", "prune", "retention")

    def test_old_held_deliveries_are_not_pruned_unless_asked(self, env):
        ok(env, "flags", "set", "--disable-connector", "--reason", "long hold")
        [held] = seed(env, definite(), clock=ManualClock(datetime.now(timezone.utc) - timedelta(days=100)))
        refused = cli(env, "prune", "--older-than-days", "90")
        assert refused.exit_code == 1 and "1 held deliveries are older than 90 days and could still be replayed" in refused.output
        assert delivery(env, held)["state"] == "held"
        ok(env, "prune", "--older-than-days", "90", "--include-replayable", "--reason", "abandoned test data")
        assert cli(env, "deliveries", "show", str(held)).exit_code == 1


# ---- status and audit --------------------------------------------------------------------------------------


class TestStatusAndAudit:
    def test_status_shows_flags_counts_and_the_last_order(self, env):
        seed(env, definite(), unmapped(61000002))
        data = as_json(ok(env, "status", "--json"))
        assert data["counts"] == {"done": 1, "dead": 1}
        assert data["flags"]["enable_connector"] is True and data["flags"]["dry_run"] is False
        assert data["store"].startswith("sqlite:///")
        text = ok(env, "status").stdout
        assert "done\t1" in text and "dead\t1" in text and "Last order: tripleseat-" in text

    def test_actions_through_the_http_admin_api_are_in_the_same_audit_log(self, env, app_factory):
        app = app_factory()
        response = app.client.put("/admin/flags", json={"enable_connector": False, "reason": "paged at 3am"}, headers=app.admin())
        assert response.status_code == 200
        ok(env, "flags", "reset", "--reason", "back to normal", "--actor", "grace")
        table = ok(env, "audit").stdout.splitlines()
        assert table[0] == "AT\tACTOR\tACTION\tDETAIL\tREASON"
        assert [line.split("\t")[1:] for line in table[1:]] == [
            ["grace", "flags.reset", "back to the environment values", "back to normal"],
            ["admin-api", "flags.set", "enable_connector=False", "paged at 3am"],
        ]


# ---- checks against Revel ----------------------------------------------------------------------------------


class TestCheckMapping:
    def test_a_mapping_whose_every_establishment_and_product_exists_passes(self, env, revel_server):
        result = ok(env, "check-mapping")
        assert "2 establishment(s), 9 product(s) checked against Revel" in result.stdout  # 5 at 4, 4 at 5
        assert "✓ every establishment and product exists in Revel" in result.stdout
        assert {r.method for r in revel_server.requests} == {"GET"}

    def test_each_missing_establishment_and_product_is_listed_once(self, env, revel_server):
        revel_server.establishments[:] = [(4, "Tropicana")]
        revel_server.products[4] = [(p, n) for p, n in ALL_PRODUCTS[4] if p != 581]
        result = cli(env, "check-mapping")
        assert result.exit_code == 1
        problems = [line for line in result.stdout.splitlines() if line.startswith("✗")]
        assert problems == [
            "✗ product 581 (menu_item:5502 for location 201; menu_item:5502 for site 15691) does not exist in Revel establishment 4",
            "✗ establishment 5 (used by location 202 (Harbor Room)) does not exist in Revel or the API key cannot see it",
        ]
        assert "2 mapping problem(s)" in result.stderr

    def test_refused_keys_are_reported_without_the_key(self, env, revel_server):
        result = cli({**env, "REVEL_API_SECRET": "rotated-away-secret"}, "check-mapping")
        assert result.exit_code == 2
        assert "Revel refused the API key" in result.output
        assert "rotated-away-secret" not in result.output and REVEL_KEY not in result.output


class TestReconcile:
    def test_missing_duplicate_and_orphan_orders_are_each_reported_once_and_nothing_is_written(self, env, revel_server, tmp_path):
        first, second, lost = definite(), definite(), definite()
        seed(env, first, second)  # real orders at the fake Revel
        seed(env, lost, revel=FakeRevel())  # the ledger says created, but not at this Revel: missing
        first_ref = f"tripleseat-{first['event']['id']}"
        revel_server.add_order(first_ref, establishment_id=4)  # a second order for one event: duplicate
        revel_server.add_order("tripleseat-99999999", establishment_id=5)  # unknown to the ledger: orphan
        requests_before = len(revel_server.requests)
        today = datetime.now(timezone.utc).date().isoformat()
        out = tmp_path / "reconcile.json"

        result = cli(env, "reconcile", "--from", today, "--to", today, "--json", str(out))

        assert result.exit_code == 1, result.output
        rows = [line.split("\t") for line in result.stdout.splitlines() if line.startswith(("duplicate", "missing", "orphan"))]
        assert [(r[0], r[1]) for r in rows] == [
            ("duplicate", first_ref), ("missing", f"tripleseat-{lost['event']['id']}"), ("orphan", "tripleseat-99999999"),
        ]
        assert "3 problem(s); nothing was changed" in result.stderr
        report = json.loads(out.read_text())
        assert (len(report["duplicates"]), len(report["missing"]), len(report["orphans"])) == (1, 1, 1)
        assert report["ledger_checked"] == 3 and report["establishments"] == [4, 5]
        assert {r.method for r in revel_server.requests[requests_before:]} == {"GET"}

    def test_agreeing_ledger_and_revel_pass(self, env, revel_server):
        seed(env, definite(), definite())
        today = datetime.now(timezone.utc).date().isoformat()
        result = ok(env, "reconcile", "--from", today, "--to", today)
        assert "2 ledger row(s), 2 Revel order(s)" in result.stdout
        assert "✓ ledger and Revel agree" in result.stdout

    def test_a_revel_outage_is_an_error_not_a_clean_report(self, env, revel_server):
        revel_server.script(ServerFault.status(503, times=50))
        today = datetime.now(timezone.utc).date().isoformat()
        result = cli(env, "reconcile", "--from", today, "--to", today)
        assert result.exit_code == 2 and "HTTP 503" in result.output


# ---- opening the database, and the mapping reload (issue 11 items 10, 12, 13) ---------------------------


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


class TestOpeningTheDatabase:
    def test_status_prints_the_absolute_database_path_and_mapping_file(self, env, tmp_path):
        out = ok(env, "status").stdout
        assert f"Database: {tmp_path / 'tsrevel.db'}" in out
        assert f"Mapping file: {ROOT / 'examples' / 'mapping.toml'}" in out
        data = as_json(ok(env, "status", "--json"))
        assert data["database"] == str(tmp_path / "tsrevel.db") and data["mapping_file"] == str(ROOT / "examples" / "mapping.toml")

    def test_the_cli_refuses_to_create_a_new_empty_database_and_says_where_it_looked(self, env, tmp_path):
        missing = tmp_path / "elsewhere.db"
        line = one_line_error(cli({**env, "TSREVEL_DATABASE_URL": f"sqlite:///{missing}"}, "status"))
        assert line.startswith(f"tsrevel: TSREVEL_DATABASE_URL: cannot use {missing}: there is no database file at {missing}")
        assert "set TSREVEL_DATABASE_URL to the service's database" in line
        assert not missing.exists()

    def test_a_relative_path_names_the_working_directory(self, env, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        (tmp_path / "var").mkdir()
        line = one_line_error(cli({**env, "TSREVEL_DATABASE_URL": "sqlite:///./var/tsrevel.db"}, "flags", "show"))
        assert f"cannot use {tmp_path}/var/tsrevel.db" in line and f"relative to the working directory, now {tmp_path}" in line

    @pytest.mark.parametrize(
        ("url", "says"),
        [
            ("sqlite:////proc/tsrevel-test.db", "unable to open database file"),
            ("sqlite:///{tmp}/no/such/dir/t.db", "directory {tmp}/no/such/dir does not exist (tsrevel does not create it)"),
            ("sqlite:///{tmp}", "{tmp} is a directory, not a database file"),
        ],
    )
    def test_serve_with_an_unusable_sqlite_path_is_one_line_and_exit_2(self, env, tmp_path, url, says):
        line = one_line_error(cli({**env, "TSREVEL_DATABASE_URL": url.format(tmp=tmp_path)}, "serve", "--port", "0"))
        assert line.startswith("tsrevel: TSREVEL_DATABASE_URL: cannot use ") and says.format(tmp=tmp_path) in line
        assert not (tmp_path / "no").exists()

    def test_an_unreachable_postgresql_is_one_line_naming_the_host_without_the_password_and_the_bound(self, env):
        url = "postgresql://tsrevel:s3cret-pw@127.0.0.1:1/tsrevel"  # nothing listens on port 1
        line = one_line_error(cli({**env, "TSREVEL_DATABASE_URL": url}, "status"))
        assert "TSREVEL_DATABASE_URL: cannot use PostgreSQL at 127.0.0.1:1/tsrevel" in line
        assert "gave up after 10 s" in line and "s3cret-pw" not in line

    def test_check_mapping_reads_revel_only_and_needs_no_database(self, env, tmp_path, revel_server):
        missing = tmp_path / "none.db"
        ok({**env, "TSREVEL_DATABASE_URL": f"sqlite:///{missing}"}, "check-mapping")
        assert not missing.exists()

    def test_a_reconcile_report_that_cannot_be_written_is_one_line_before_anything_runs(self, env, tmp_path):
        line = one_line_error(cli(env, "reconcile", "--from", "2026-01-01", "--to", "2026-01-02", "--json", str(tmp_path / "no" / "r.json")))
        assert f"--json {tmp_path / 'no' / 'r.json'}: cannot write there" in line


class TestMappingReloadCommand:
    def test_a_good_file_is_recorded_for_the_running_services_and_audited(self, env, tmp_path):
        mapping = tmp_path / "mapping.toml"
        mapping.write_text((ROOT / "examples" / "mapping.toml").read_text())
        env = {**env, "TSREVEL_MAPPING_FILE": str(mapping)}
        result = ok(env, "mapping", "reload", "--reason", "new product", "--actor", "alice")
        assert f"Mapping reload #1 recorded: {mapping}" in result.stdout
        assert as_json(ok(env, "status", "--json"))["mapping_reload"]["generation"] == 1
        [entry, *_] = audit(env)
        assert (entry["action"], entry["actor"], entry["reason"]) == ("mapping.reload", "alice", "new product")

    def test_a_bad_file_changes_nothing_and_says_the_file_and_line(self, env, tmp_path):
        mapping = tmp_path / "mapping.toml"
        mapping.write_text((ROOT / "examples" / "mapping.toml").read_text() + "\n[locations.203\n")
        env = {**env, "TSREVEL_MAPPING_FILE": str(mapping)}
        result = cli(env, "mapping", "reload", "--reason", "try")
        assert result.exit_code == 2, result.output
        assert f"{mapping}: not valid TOML" in result.output and "line" in result.output
        assert "Traceback" not in result.output
        assert as_json(ok(env, "status", "--json"))["mapping_reload"] is None
