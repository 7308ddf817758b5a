"""`tsrevel sync` and `tsrevel mapping unmapped|suggest` over a real SQLite store, loopback Revel and TripleSeat."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import example
from tests.integration.test_catchup import CLIENT_ID, CLIENT_SECRET, event
from tests.integration.test_cli import REVEL_KEY, REVEL_SECRET, as_json, cli, ok, seed
from tests.integration.test_cli import env as env  # noqa: F401 - the fixture, used by name
from tsrevel.testing.servers import FakeRevelServer, FakeTripleSeatServer

pytestmark = pytest.mark.integration

PRODUCTS = {
    4: [(579, "OG - Glazed raised ring"), (700, "Fruit Tower"), (701, "Egg Bites (dozen)"), (702, "Bagel"), (703, "Cold brew, 96 oz box")],
    5: [(579, "OG - Glazed raised ring"), (702, "Bagel")],
}


@pytest.fixture
def revel_server() -> Iterator[FakeRevelServer]:
    server = FakeRevelServer(api_key=REVEL_KEY, api_secret=REVEL_SECRET, establishments=[(4, "Tropicana"), (5, "Harbor Room")],
                             products=PRODUCTS, page_size=2)  # several pages per establishment
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tripleseat() -> Iterator[FakeTripleSeatServer]:
    server = FakeTripleSeatServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ts_env(env: dict[str, str | None], tripleseat: FakeTripleSeatServer) -> dict[str, str | None]:
    return {**env, "TRIPLESEAT_API_URL": tripleseat.url, "TRIPLESEAT_CLIENT_ID": CLIENT_ID, "TRIPLESEAT_CLIENT_SECRET": CLIENT_SECRET}


def with_items(event_id: int, *names: tuple[str, int | None], location: int = 201) -> dict[str, Any]:
    payload = copy.deepcopy(example("unmapped"))
    payload["object"]["id"] = event_id
    payload["object"]["location_id"] = location
    payload["object"]["documents"][0]["line_items"] = [
        {"id": n, "quantity": 1, "price": "1", "display_name": name, "menu_item_id": menu} for n, (name, menu) in enumerate(names, 1)
    ]
    return payload


class TestSync:
    def test_a_missed_event_is_stored_processed_and_ordered_once(self, ts_env, tripleseat, revel_server):
        missed = event()
        tripleseat.events[str(missed["id"])] = missed
        result = ok(ts_env, "sync", str(missed["id"]), "--reason", "missing in Revel", "--actor", "ana")
        assert f"Event {missed['id']} stored as delivery 1 (source sync" in result.output
        seed(ts_env)  # the worker's step
        ok(ts_env, "sync", str(missed["id"]), "--reason", "again")
        seed(ts_env)
        assert [o["local_id"] for o in revel_server.orders] == [f"tripleseat-{missed['id']}"]
        shown = as_json(ok(ts_env, "deliveries", "show", "1", "--json"))
        assert shown["state"] == "done"
        assert [a["action"] for a in as_json(ok(ts_env, "audit", "--json"))][:2] == ["sync", "sync"]

    def test_an_unknown_event_is_refused_with_a_clear_error(self, ts_env):
        result = cli(ts_env, "sync", "999", "--reason", "typo?")
        assert result.exit_code == 1
        assert result.stderr.strip() == "tsrevel: TripleSeat has no event 999"

    def test_without_the_tripleseat_api_it_says_what_to_set(self, env):
        result = cli(env, "sync", "1", "--reason", "r")
        assert result.exit_code == 1 and "TRIPLESEAT_CLIENT_ID and TRIPLESEAT_CLIENT_SECRET" in result.stderr

    def test_the_reason_is_required_with_an_event_id_and_since_excludes_an_id(self, ts_env):
        assert cli(ts_env, "sync", "1").exit_code == 2
        assert cli(ts_env, "sync", "1", "--since", "48h", "--reason", "r").exit_code == 2
        assert cli(ts_env, "sync", "--since", "soon").exit_code == 2

    def test_since_runs_one_pass_prints_what_it_found_and_status_shows_it(self, ts_env, tripleseat, revel_server):
        missed = event()
        tripleseat.events[str(missed["id"])] = missed
        result = ok(ts_env, "sync", "--since", "48h")
        assert "1 event(s) seen, 0 already seen, 1 delivery(ies) created: 1." in result.output
        again = ok(ts_env, "sync", "--since", "48h")
        assert "1 event(s) seen, 1 already seen, 0 delivery(ies) created." in again.output
        assert "Last catch-up poll:" in ok(ts_env, "status").output
        assert as_json(ok(ts_env, "status", "--json"))["last_poll"]["events_seen"] == 1
        seed(ts_env)
        assert len(revel_server.orders) == 1


class TestUnmapped:
    def test_lists_each_unmapped_item_with_its_location_and_waiting_deliveries(self, env):
        seed(env, with_items(81, ("Fruit tower", 7777), ("Egg bites (dozen)", None)), with_items(82, ("Fruit tower", 7777)))
        rows = {r["name"]: r for r in as_json(ok(env, "mapping", "unmapped", "--json"))}
        assert rows["Fruit tower"]["menu_item_id"] == "7777" and rows["Fruit tower"]["deliveries"] == 2
        assert rows["Fruit tower"]["locations"] == ["201"]
        assert rows["Egg bites (dozen)"]["deliveries"] == 1 and rows["Egg bites (dozen)"]["menu_item_id"] is None
        table = ok(env, "mapping", "unmapped").output
        assert "Fruit tower" in table and "7777" in table


class TestSuggest:
    def test_proposes_the_right_product_for_misspelt_and_recased_names_and_nothing_for_an_unrelated_one(self, env, tmp_path):
        seed(env, with_items(91, ("fruit towr", 7777), ("EGG BITES (DOZEN)", None), ("Unicorn sandwich platter", None)))
        out = tmp_path / "proposed.toml"
        ok(env, "mapping", "suggest", "--out", str(out))
        fragment = out.read_text()
        assert tomllib.loads(fragment)["products"] == {"menu_item:7777": 700, "EGG BITES (DOZEN)": 701}
        assert "# no product scores 80 or more" in fragment and '# "Unicorn sandwich platter" = <Revel product id>' in fragment
        assert "next:" in fragment  # the two next candidates, as comments

    def test_refuses_to_overwrite_an_existing_out_file(self, env, tmp_path):
        out = tmp_path / "mine.toml"
        out.write_text("keep me")
        result = cli(env, "mapping", "suggest", "--out", str(out))
        assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0 and "exists" in result.stderr
        assert out.read_text() == "keep me"

    def test_a_location_gets_its_own_table_and_its_establishments_products_only(self, env, revel_server):
        seed(env, with_items(92, ("bagle", None), location=202), with_items(94, ("fruit towr", None)))
        fragment = ok(env, "mapping", "suggest", "--location", "202").output
        assert tomllib.loads(fragment)["locations"]["202"]["products"] == {"bagle": 702}
        listed = [r.param("establishment") for r in revel_server.requests if r.path == "/resources/Product/"]
        assert set(listed) == {"5"}

    def test_never_touches_the_mapping_in_force(self, env, tmp_path):
        mapping = Path(env["TSREVEL_MAPPING_FILE"] or "")
        before = mapping.read_text()
        seed(env, with_items(93, ("fruit towr", 7777)))
        ok(env, "mapping", "suggest")
        assert mapping.read_text() == before
