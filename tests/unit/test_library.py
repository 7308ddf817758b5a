"""The public library API: what ``import tsrevel`` offers, and the Connector on fakes, on SQLite and from the environment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import tsrevel
from tests.helpers import ROOT, body, definite, example
from tsrevel.domain import deliveries as st
from tsrevel.testing import Fault, FakeMailer, FakeRevel, MemoryStore, fake_world, sign_body

SECRET = "library-signing-secret"
MAPPING = ROOT / "examples" / "mapping.toml"


def connector(**settings: object) -> tuple[tsrevel.Connector, FakeRevel, FakeMailer, MemoryStore]:
    revel, mailer, store = FakeRevel(), FakeMailer(), MemoryStore()
    made = tsrevel.Connector(
        store=store,
        revel=revel,
        mailer=mailer,
        mapping=MAPPING,
        settings=tsrevel.Settings(**{"dry_run": False, "signing_secret": SECRET, "email_to": ("ops@example.com",), **settings}),  # type: ignore[arg-type]
    )
    return made, revel, mailer, store


def signed(raw: bytes) -> dict[str, str]:
    return {"X-Signature": sign_body(raw, secret=SECRET)}


class TestPackage:
    def test_the_top_level_exports_the_documented_names(self):
        assert set(tsrevel.__all__) >= {
            "Connector", "Outcome", "Settings", "RevelOrder", "MappingFailure", "TripleSeatEvent",
            "WebhookEnvelope", "SignatureError", "PayloadError", "ConfigError", "GatewayError", "TsrevelError", "__version__",
        }
        for name in tsrevel.__all__:
            assert getattr(tsrevel, name) is not None, name
        assert issubclass(tsrevel.SignatureError, tsrevel.TsrevelError)

    def test_the_version_is_the_packages(self):
        from importlib.metadata import version

        assert tsrevel.__version__ == version("tsrevel")

    def test_importing_tsrevel_does_no_io_and_pulls_in_no_framework_or_client(self):
        code = (
            "import builtins, socket, sys\n"
            "def refuse(*a, **k): raise AssertionError('I/O at import')\n"
            "socket.socket.connect = refuse\n"
            "real_open = builtins.open\n"
            "opened = []\n"
            "builtins.open = lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1]\n"
            "import tsrevel, tsrevel.testing\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'litestar', 'httpx', 'sendgrid', 'psycopg', 'uvicorn', 'dependency_injector', 'sqlite3'})\n"
            "print(heavy, opened)\n"
        )
        env = {"PATH": "/usr/bin:/bin", "TSREVEL_DATABASE_URL": "sqlite:///./must-not-be-created.db"}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[] []"
        assert not (ROOT / "must-not-be-created.db").exists()

    def test_the_package_is_typed(self):
        assert (Path(tsrevel.__file__).parent / "py.typed").exists()


@pytest.mark.anyio
class TestHandle:
    async def test_a_signed_webhook_is_stored_processed_and_answered_with_its_outcome(self):
        made, revel, _, store = connector()
        raw = body(example("definite"))
        async with made:
            outcome = await made.handle(raw, signed(raw))
        assert isinstance(outcome, tsrevel.Outcome)
        assert (outcome.status, outcome.state, outcome.event_id) == ("accepted", "done", "55521609")
        assert (outcome.order_reference, outcome.revel_order_id) == ("tripleseat-55521609", revel.refs["tripleseat-55521609"].order_id)
        assert outcome.ordered and not outcome.deferred
        assert outcome.note == f"created Revel order {outcome.revel_order_id} (tripleseat-55521609)"
        assert [e.kind for e in outcome.emails] == ["order_created"]
        assert (await store.get_delivery(outcome.delivery_id)).state == st.DONE

    async def test_the_outcome_is_frozen(self):
        made, *_ = connector()
        raw = body(definite())
        outcome = await made.handle(raw, signed(raw))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            outcome.state = "done"  # type: ignore[misc]

    async def test_headers_are_read_ignoring_case_and_a_valid_correlation_id_is_kept(self):
        made, revel, _, _ = connector()
        raw = body(definite())
        outcome = await made.handle(raw, {"x-signature": sign_body(raw, secret=SECRET), "X-CORRELATION-ID": "shop-42"})
        assert outcome.correlation_id == "shop-42" and set(revel.correlation_ids) == {"shop-42"}

    @pytest.mark.parametrize("headers", [{}, {"X-Signature": "0" * 64}, {"X-Signature": "garbage"}])
    async def test_a_missing_or_wrong_signature_raises_and_stores_nothing(self, headers):
        made, revel, _, store = connector()
        with pytest.raises(tsrevel.SignatureError):
            await made.handle(body(definite()), headers)
        assert await store.list_deliveries() == [] and revel.calls == []

    async def test_without_a_signing_secret_signatures_are_not_checked(self):
        made, revel, _, _ = connector(signing_secret=None)
        assert (await made.handle(body(definite()))).state == "done"
        assert len(revel.created) == 1

    async def test_the_same_body_again_is_a_duplicate_with_the_first_outcome_and_no_second_order(self):
        made, revel, _, _ = connector()
        raw = body(definite())
        first = await made.handle(raw, signed(raw))
        again = await made.handle(raw, signed(raw))
        assert (again.status, again.delivery_id, again.state) == ("duplicate", first.delivery_id, "done")
        assert len(revel.created) == 1

    async def test_an_authentic_but_unusable_payload_is_kept_as_rejected(self):
        made, revel, _, store = connector()
        raw = b'{"webhook_trigger_type": "CREATE_EVENT", "event": {"id": 9, "guest_count": "many"}}'
        outcome = await made.handle(raw, signed(raw))
        assert (outcome.status, outcome.state) == ("rejected", "rejected")
        assert outcome.error == "event.guest_count: 'many' is not a number"
        assert (await store.get_delivery(outcome.delivery_id)).body == raw and revel.calls == []

    async def test_every_flag_is_honoured(self):
        held, revel, mailer, _ = connector(enable_connector=False)
        assert (await held.handle(body(definite(1)), signed(body(definite(1))))).state == "held"
        rehearsal, revel2, _, _ = connector(dry_run=True)
        outcome = await rehearsal.handle(body(definite(2)), signed(body(definite(2))))
        assert (outcome.state, outcome.ordered, [e.kind for e in outcome.emails]) == ("dry_run", False, ["dry_run"])
        elsewhere, revel3, _, _ = connector(allowed_locations=frozenset({"202"}))
        assert (await elsewhere.handle(body(definite(3)), signed(body(definite(3))))).state == "skipped"
        assert revel.calls == revel2.calls == revel3.calls == [] and mailer.calls == []

    async def test_a_transient_failure_answers_retrying_and_drain_finishes_it_when_due(self):
        world = fake_world(dry_run=False, secret=SECRET)
        world.revel.script(Fault.transient(n=1))
        made = world.connector()
        raw = body(definite())
        outcome = await made.handle(raw, world.sign(raw))
        assert outcome.state == "retrying" and outcome.next_attempt_at is not None and "HTTP 503" in (outcome.error or "")
        assert await made.drain() == 0  # not due yet
        world.clock.set(outcome.next_attempt_at)
        assert await made.drain() == 2  # the delivery, then its email
        done = await made.outcome(outcome.delivery_id)
        assert done.state == "done" and done.ordered and [m.kind for m in world.mailer.sent] == ["order_created"]

    async def test_replay_re_queues_a_held_delivery_and_it_is_ordered_once(self):
        world = fake_world(dry_run=False, enable_connector=False)
        made = world.connector()
        held = await made.handle(body(definite()))
        assert held.state == "held"
        await world.processor.set_flags(enable_connector=True, dry_run=None, actor="test", reason="back on")
        assert await made.replay(held.delivery_id, reason="incident over")
        assert not await made.replay(held.delivery_id, reason="again")  # queued now, not replayable
        await made.drain()
        assert (await made.outcome(held.delivery_id)).state == "done" and len(world.revel.created) == 1
        assert (await world.store.list_audit())[0].actor == "library"


class TestMap:
    def test_a_webhook_maps_to_the_revel_order_from_a_dict_bytes_or_text(self):
        made, revel, _, store = connector()
        payload = example("definite")
        from_dict = made.map(payload)
        assert isinstance(from_dict, tsrevel.RevelOrder)
        assert made.map(json.dumps(payload).encode()) == from_dict == made.map(json.dumps(payload))
        assert (from_dict.local_id, from_dict.establishment_id, str(from_dict.total)) == ("tripleseat-55521609", 4, "438.00")
        assert revel.calls == []

    def test_a_bare_event_object_maps_too(self):
        made, *_ = connector()
        assert made.map(example("definite")["event"]) == made.map(example("definite"))

    def test_unmapped_items_are_a_mapping_failure_listing_them_all(self):
        made, *_ = connector()
        failure = made.map(example("unmapped"))
        assert isinstance(failure, tsrevel.MappingFailure)
        assert "Fruit tower" in failure.describe() and "Egg bites (dozen)" in failure.describe()

    def test_the_unmapped_items_policy_applies(self):
        made, *_ = connector(unmapped_items="skip")
        order = made.map(example("unmapped"))
        assert isinstance(order, tsrevel.RevelOrder) and len(order.unmapped) == 2

    @pytest.mark.parametrize(
        ("payload", "path"),
        [(b"[1, 2]", "$"), (b"{not json", "$"), ({"webhook_trigger_type": "CREATE_LEAD", "lead": {"id": 1}}, "event"), ({"name": "no id"}, "event.id")],
    )
    def test_an_invalid_payload_raises_payload_error_with_the_field(self, payload, path):
        made, *_ = connector()
        with pytest.raises(tsrevel.PayloadError) as caught:
            made.map(payload)
        assert caught.value.path == path

    def test_map_needs_no_open_connector_and_does_no_io(self):
        made, revel, mailer, store = connector()
        made.map(example("definite"))
        assert revel.calls == mailer.calls == [] and asyncio.run(store.list_deliveries()) == []


class TestConstruction:
    def test_a_mapping_may_be_a_path_a_dict_or_a_mapping_config(self):
        from tsrevel.testing import EXAMPLE_MAPPING

        by_path, *_ = connector()
        by_dict = tsrevel.Connector(store=MemoryStore(), revel=FakeRevel(), mapping=EXAMPLE_MAPPING)
        by_config = tsrevel.Connector(store=MemoryStore(), revel=FakeRevel(), mapping=by_dict.mapping)
        assert isinstance(by_path.mapping, tsrevel.MappingConfig)
        assert by_config.mapping is by_dict.mapping
        assert by_path.map(example("definite")) == by_dict.map(example("definite"))

    def test_a_bad_mapping_is_a_config_error_at_construction(self, tmp_path):
        bad = tmp_path / "mapping.toml"
        bad.write_text('[locations.201]\nname = "no establishment"\n')
        with pytest.raises(tsrevel.ConfigError, match="revel_establishment"):
            tsrevel.Connector(store=MemoryStore(), revel=FakeRevel(), mapping=bad)
        with pytest.raises(tsrevel.ConfigError, match="does not exist"):
            tsrevel.Connector(store=MemoryStore(), revel=FakeRevel(), mapping=tmp_path / "missing.toml")

    def test_the_default_settings_are_the_services_defaults_dry_run_on(self):
        made = tsrevel.Connector(store=MemoryStore(), revel=FakeRevel(), mapping=MAPPING)
        assert made.settings == tsrevel.Settings() and made.settings.dry_run is True

    def test_the_processor_is_there_only_once_open_for_a_settings_built_connector(self, tmp_path):
        made = tsrevel.Connector.from_settings(settings_on(tmp_path))
        with pytest.raises(RuntimeError, match="not open"):
            made.processor  # noqa: B018 - the property is the point


def settings_on(tmp_path: Path, **changes: object) -> tsrevel.Settings:
    return attrs.evolve(
        tsrevel.Settings(database_url=f"sqlite:///{tmp_path / 'lib.db'}", mapping_file=str(MAPPING)),
        **changes,  # type: ignore[arg-type]
    )


@pytest.mark.anyio
class TestFromSettingsAndEnvironment:
    async def test_from_env_reads_the_environment_given_opens_sqlite_and_closes_it(self, tmp_path):
        env = {"TSREVEL_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}", "TSREVEL_MAPPING_FILE": str(MAPPING)}
        made = tsrevel.Connector.from_env(env)
        assert not (tmp_path / "env.db").exists()  # nothing opened yet
        async with made as opened:
            assert opened is made
            outcome = await made.handle(body(definite()))
            assert outcome.state == "dry_run"  # DRY_RUN defaults to true
            store = made.processor.store
        assert (tmp_path / "env.db").exists()
        with pytest.raises(RuntimeError, match="closed"):  # the store was closed with the connector
            await store.list_deliveries()

    async def test_from_env_refuses_a_bad_environment_naming_the_variable(self):
        with pytest.raises(tsrevel.ConfigError, match="DRY_RUN"):
            tsrevel.Connector.from_env({"DRY_RUN": "maybe"})
        with pytest.raises(tsrevel.ConfigError, match="REVEL_BASE_URL"):
            tsrevel.Connector.from_env({"DRY_RUN": "false", "TRIPLESEAT_ALLOW_UNSIGNED": "true"})

    async def test_from_env_reads_os_environ_only_when_called(self, tmp_path, monkeypatch):
        monkeypatch.setenv("TSREVEL_MAPPING_FILE", str(tmp_path / "nowhere.toml"))
        with pytest.raises(tsrevel.ConfigError, match="nowhere.toml"):
            tsrevel.Connector.from_env()

    async def test_adapters_given_to_from_settings_replace_the_configured_ones(self, tmp_path):
        revel, mailer = FakeRevel(), FakeMailer()
        made = tsrevel.Connector.from_settings(settings_on(tmp_path, dry_run=False), revel=revel, mailer=mailer)
        async with made:
            outcome = await made.handle(body(definite()))
            assert outcome.state == "done" and len(revel.created) == 1
            await made.drain()
        assert [m.kind for m in mailer.sent] == ["order_created"]

    async def test_state_survives_reopening_on_the_same_database(self, tmp_path):
        payload = definite()
        async with tsrevel.Connector.from_settings(settings_on(tmp_path, dry_run=False), revel=FakeRevel()) as made:
            first = await made.handle(body(payload))
        revel = FakeRevel()
        async with tsrevel.Connector.from_settings(settings_on(tmp_path, dry_run=False), revel=revel) as made:
            again = await made.handle(body(payload))
            assert (again.status, again.delivery_id, again.state) == ("duplicate", first.delivery_id, "done")
            later = await made.handle(body(dict(payload, webhook_trigger_type="UPDATE_EVENT")))
            assert later.state == "done" and later.order_reference == first.order_reference
        assert revel.calls == []  # the ledger knew the order: no lookup, no create

    async def test_open_is_idempotent_and_aclose_can_be_called_twice(self, tmp_path):
        made = tsrevel.Connector.from_settings(settings_on(tmp_path))
        assert await made.open() is await made.open()
        await made.aclose()
        await made.aclose()

    async def test_handle_opens_the_connector_on_first_use(self, tmp_path):
        made = tsrevel.Connector.from_settings(settings_on(tmp_path))
        try:
            assert (await made.handle(body(definite()))).state == "dry_run"
        finally:
            await made.aclose()

    async def test_the_worker_sends_emails_and_retries_on_its_own(self, tmp_path):
        revel, mailer = FakeRevel(), FakeMailer()
        revel.script(Fault.transient(n=1))
        settings = settings_on(tmp_path, dry_run=False, retry_base_s=0.05, retry_cap_s=0.1, poll_interval_s=0.02)
        async with tsrevel.Connector.from_settings(settings, revel=revel, mailer=mailer) as made:
            made.start_worker()
            outcome = await made.handle(body(definite()))
            for _ in range(500):  # bounded: 10 s
                outcome = await made.outcome(outcome.delivery_id)
                if outcome.state == "done" and mailer.sent:
                    break
                await asyncio.sleep(0.02)
            assert outcome.state == "done", outcome
            assert len(revel.created) == 1 and [m.kind for m in mailer.sent] == ["order_created"]


@pytest.mark.anyio
async def test_the_testing_connector_works_on_the_worlds_fakes():
    world = fake_world(dry_run=False, secret=SECRET)
    made = world.connector()
    raw = body(definite())
    outcome = await made.handle(raw, world.sign(raw))
    assert outcome.state == "done" and len(world.revel.created) == 1
    with pytest.raises(tsrevel.SignatureError):
        await made.handle(body(definite()), {"X-Signature": "0" * 64})
    assert world.sign(raw) == {"X-Signature": sign_body(raw, secret=SECRET)}
    assert fake_world().sign(raw) == {}


@pytest.mark.anyio
async def test_opening_without_a_signing_secret_warns_that_signatures_are_not_checked(caplog):
    unsigned, *_ = connector(signing_secret=None)
    signed_one, *_ = connector()
    with caplog.at_level("WARNING", logger="tsrevel.connector"):
        await signed_one.open()
        assert caplog.records == []
        await unsigned.open()
    assert [r.getMessage() for r in caplog.records] == ["no signing secret (TRIPLESEAT_SIGNING_SECRET): webhook signatures are NOT checked"]


@pytest.mark.anyio
async def test_a_deferred_outcome_says_so_and_when_it_is_due():
    from datetime import datetime, timezone

    world = fake_world(dry_run=False)
    world.processor.settings = attrs.evolve(world.processor.settings, order_window_hours=24)
    world.processor.events = None  # no TripleSeat API: the stored webhook is ordered when the window opens
    world.clock.set(datetime(2025, 12, 1, tzinfo=timezone.utc))
    outcome = await world.connector().handle(body(definite()))
    assert outcome.deferred and not outcome.ordered and outcome.state == "retrying"
    assert outcome.next_attempt_at == datetime(2025, 12, 28, 2, 0, tzinfo=timezone.utc)
    world.revel.script(Fault.transient(n=1))
    world.clock.set(outcome.next_attempt_at)
    await world.drain()
    failed = await world.connector().outcome(outcome.delivery_id)
    assert failed.state == "retrying" and not failed.deferred  # a real retry now, not a deferral
