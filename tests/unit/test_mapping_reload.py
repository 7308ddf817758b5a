"""Issue 11 item 13: the mapping file is reloaded without a restart, audited, and a bad file keeps the old mapping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import ROOT, example
from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import InvalidRequest, MappingRejected
from tsrevel.domain.processing import MAPPING_RELOAD_VALUE
from tsrevel.testing import fake_world

pytestmark = pytest.mark.anyio

FIX = '\n"Fruit tower" = 601\n"Egg bites (dozen)" = 601\n'


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.toml"
    shutil.copy(ROOT / "examples" / "mapping.toml", path)
    return path


def add_products(path: Path, text: str) -> None:
    # The [products] table comes before [locations.201.products]: insert right after its header.
    body = path.read_text()
    path.write_text(body.replace("[products]", "[products]" + text, 1))


class TestReloadMapping:
    async def test_after_a_mapping_fix_a_replay_works_without_a_restart(self, mapping_file):
        world = fake_world(mapping_file=mapping_file)
        result = await world.deliver(example("unmapped"))
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DEAD
        add_products(mapping_file, FIX)
        status = await world.processor.reload_mapping(actor="ops", reason="map the fruit tower")
        assert status.file == str(mapping_file.absolute()) and status.generation == 1
        assert status.loaded_at == world.clock.now()
        assert await world.processor.replay(result.delivery_id, actor="ops", reason="mapping fixed")
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        [audit, *_] = [a for a in await world.store.list_audit() if a.action == "mapping.reload"]
        assert (audit.actor, audit.reason) == ("ops", "map the fruit tower")
        assert str(mapping_file.absolute()) in audit.detail

    async def test_a_file_that_does_not_validate_keeps_the_old_mapping_and_says_where(self, mapping_file):
        world = fake_world(mapping_file=mapping_file)
        before = world.processor.mapping
        mapping_file.write_text(mapping_file.read_text() + "\n[locations.203\nname = 'broken'\n")
        with pytest.raises(MappingRejected) as refused:
            await world.processor.reload_mapping(actor="ops", reason="try")
        assert refused.value.file == str(mapping_file.absolute())
        assert refused.value.line is not None and "not valid TOML" in refused.value.problem
        assert world.processor.mapping is before
        assert world.processor.mapping_status().generation == 0
        [audit] = await world.store.list_audit()
        assert audit.action == "mapping.reload" and audit.detail.startswith("refused, old mapping kept")
        await world.deliver(example("definite"))
        await world.settle()
        assert len(world.revel.created) == 1  # the old mapping still orders

    async def test_a_key_error_names_the_key(self, mapping_file):
        world = fake_world(mapping_file=mapping_file)
        add_products(mapping_file, '\n"Fruit tower" = "six"\n')
        with pytest.raises(MappingRejected, match=r"products\.'Fruit tower': 'six' is not an integer id"):
            await world.processor.reload_mapping(actor="ops", reason="try")

    async def test_a_connector_without_a_mapping_file_refuses_a_reload(self):
        world = fake_world()
        with pytest.raises(InvalidRequest, match="no mapping file to reload"):
            await world.processor.reload_mapping(actor="ops", reason="try")


class TestOtherReplicasFollow:
    async def test_a_reload_recorded_in_the_store_is_followed_before_the_next_delivery(self, mapping_file):
        service = fake_world(mapping_file=mapping_file)
        cli = fake_world(mapping_file=mapping_file)
        cli.processor.store = service.store  # the CLI (or another replica) on the same database
        result = await service.deliver(example("unmapped"))
        await service.settle()
        assert service.processor.mapping_status().generation == 0
        add_products(mapping_file, FIX)
        await cli.processor.reload_mapping(actor="ops", reason="cli reload")
        assert json.loads(await service.store.get_value(MAPPING_RELOAD_VALUE))["generation"] == 1
        assert await service.processor.replay(result.delivery_id, actor="ops", reason="fixed")
        await service.settle()
        assert (await service.store.get_delivery(result.delivery_id)).state == st.DONE
        assert service.processor.mapping_status().generation == 1

    async def test_a_replica_whose_file_is_bad_keeps_its_mapping_and_tries_once(self, mapping_file, tmp_path, caplog):
        other_file = tmp_path / "other.toml"
        other_file.write_text(mapping_file.read_text())
        service = fake_world(mapping_file=other_file)
        cli = fake_world(mapping_file=mapping_file)
        cli.processor.store = service.store
        await service.processor.process_next()  # first look: adopts generation 0
        before = service.processor.mapping
        other_file.write_text("not = [valid")
        await cli.processor.reload_mapping(actor="ops", reason="cli reload")
        await service.processor.process_next()
        await service.processor.process_next()
        assert service.processor.mapping is before
        assert sum("not followed here" in r.getMessage() for r in caplog.records) == 1
