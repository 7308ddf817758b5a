"""The going-live rule (issue 11, item 1): DRY_RUN=false needs a signing secret, at every way in."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from tests.helpers import body, definite
from tsrevel import Connector
from tsrevel.adapters.fakes import FakeRevel
from tsrevel.adapters.memory_store import MemoryStore
from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import ConfigError, LiveRefused
from tsrevel.domain.safety import LiveRequirements, live_refusal
from tsrevel.domain.signature import sign_body
from tsrevel.entrypoints.settings import Settings
from tsrevel.testing import fake_world

SECRET = "tripleseat-signing-secret-for-tests"
REVEL = {"REVEL_BASE_URL": "http://revel.invalid", "REVEL_API_KEY": "revel-key-0123", "REVEL_API_SECRET": "revel-secret-0123"}


class TestTheRule:
    @given(signed=hs.booleans(), allow_unsigned=hs.booleans(), missing=hs.lists(hs.sampled_from(["REVEL_BASE_URL", "REVEL_API_KEY"]), unique=True))
    def test_going_live_is_allowed_only_when_signed_or_unsigned_on_purpose_and_revel_is_configured(self, signed, allow_unsigned, missing):
        refusal = live_refusal(LiveRequirements(signed=signed, allow_unsigned=allow_unsigned, revel_missing=tuple(missing)))
        assert (refusal is None) == ((signed or allow_unsigned) and not missing)
        if missing:
            assert all(name in refusal for name in missing)
        elif refusal is not None:
            assert "TRIPLESEAT_SIGNING_SECRET" in refusal and "TRIPLESEAT_ALLOW_UNSIGNED=true" in refusal

    def test_start_up_asks_the_same_rule(self):
        with pytest.raises(ConfigError, match="TRIPLESEAT_SIGNING_SECRET"):
            Settings.from_env({"DRY_RUN": "false", **REVEL})
        assert Settings.from_env({"DRY_RUN": "false", "TRIPLESEAT_ALLOW_UNSIGNED": "true", **REVEL}).dry_run is False


def unsigned_world(**changes):
    world = fake_world(dry_run=True)
    world.processor.settings = attrs.evolve(world.processor.settings, allow_unsigned=False, **changes)
    return world




@pytest.mark.anyio
class TestTheUseCase:
    async def test_set_flags_dry_run_false_is_refused_on_an_unsigned_service_and_changes_nothing(self):
        world = unsigned_world()
        with pytest.raises(LiveRefused, match="TRIPLESEAT_SIGNING_SECRET"):
            await world.processor.set_flags(enable_connector=None, dry_run=False, actor="ana", reason="go live")
        assert (await world.processor.flags()).dry_run is True
        assert (await world.store.get_flags()).dry_run is None
        assert await world.store.list_audit() == []

    async def test_an_unsigned_webhook_then_makes_no_revel_order(self):
        world = unsigned_world()
        with pytest.raises(LiveRefused):
            await world.processor.set_flags(enable_connector=None, dry_run=False, actor="ana", reason="go live")
        result = await world.deliver(definite())
        await world.settle()
        assert world.revel.created == []
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DRY_RUN

    async def test_other_flags_may_still_be_set_on_an_unsigned_service(self):
        world = unsigned_world()
        flags = await world.processor.set_flags(enable_connector=False, dry_run=True, actor="ana", reason="incident")
        assert (flags.enable_connector, flags.dry_run) == (False, True)

    async def test_a_stored_dry_run_false_from_a_signed_replica_is_not_obeyed_by_an_unsigned_one(self, caplog):
        world = unsigned_world()
        # Another replica, started with a signing secret, went live: the override is in the shared store.
        await world.store.set_flags(enable_connector=None, dry_run=False, actor="ops", reason="go live", now=world.clock.now())
        result = await world.deliver(definite())
        await world.settle()
        assert world.revel.created == []
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DRY_RUN
        assert (await world.processor.flags()).dry_run is True
        refusals = [r for r in caplog.records if "stays in dry run" in r.getMessage()]
        assert len(refusals) == 1, "said once per process, not once per delivery"

    async def test_a_signed_service_goes_live_and_obeys_the_stored_override(self):
        world = fake_world(dry_run=True, secret=SECRET)
        world.processor.settings = attrs.evolve(world.processor.settings, allow_unsigned=False)
        flags = await world.processor.set_flags(enable_connector=None, dry_run=False, actor="ana", reason="go live")
        assert flags.dry_run is False
        raw = body(definite())
        await world.deliver(raw, signature=sign_body(raw, secret=SECRET))
        await world.settle()
        assert len(world.revel.created) == 1


@pytest.mark.anyio
class TestTheLibrary:
    async def test_the_connector_refuses_to_go_live_unsigned(self, tmp_path):
        from tests.helpers import ROOT

        connector = Connector(store=MemoryStore(), revel=FakeRevel(), mapping=ROOT / "examples" / "mapping.toml", settings=Settings(dry_run=True))
        async with connector:
            with pytest.raises(LiveRefused):
                await connector.processor.set_flags(enable_connector=None, dry_run=False, actor="lib", reason="go live")
            assert (await connector.processor.flags()).dry_run is True

    async def test_with_its_own_revel_adapter_the_connector_does_not_ask_for_revel_urls(self, tmp_path):
        from tests.helpers import ROOT

        connector = Connector(
            store=MemoryStore(), revel=FakeRevel(), mapping=ROOT / "examples" / "mapping.toml", settings=Settings(dry_run=True, signing_secret=SECRET)
        )
        async with connector:
            flags = await connector.processor.set_flags(enable_connector=None, dry_run=False, actor="lib", reason="go live")
            assert flags.dry_run is False
