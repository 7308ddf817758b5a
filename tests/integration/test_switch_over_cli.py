"""The switch-over at the command line: reconcile with REVEL_LEGACY_LOCAL_IDS, and import-legacy."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.helpers import definite
from tests.integration.test_cli import cli, env, revel_server, seed  # noqa: F401 - fixtures shared with the CLI tests

pytestmark = pytest.mark.integration

LEGACY = {"REVEL_LEGACY_LOCAL_IDS": "Triple Seat {event_id}"}


class TestReconcileCountsLegacyOrdersAsOurs:
    def test_found_legacy_orders_agree_and_the_previous_connectors_own_are_no_orphans(self, env, revel_server):
        found, old_only = definite(), definite()
        legacy_id = revel_server.add_order(f"Triple Seat {found['event']['id']}", establishment_id=4)
        revel_server.add_order(f"Triple Seat {old_only['event']['id']}", establishment_id=4)  # never seen by tsrevel
        seed({**env, **LEGACY}, found)
        assert len(revel_server.orders) == 2  # found, not created
        today = datetime.now(timezone.utc).date().isoformat()
        result = cli({**env, **LEGACY}, "reconcile", "--from", today, "--to", today, "--json", "-")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["ok"] and report["legacy_orders"] == 2 and report["ledger_checked"] == 1
        asked = {r.query.get("local_id__startswith", [None])[0] for r in revel_server.requests if r.path == "/resources/Order/"}
        assert {"tripleseat-", "Triple Seat "} <= asked
        assert legacy_id in [o["id"] for o in revel_server.orders]

    def test_an_event_ordered_by_both_connectors_is_reported_as_a_duplicate(self, env, revel_server):
        twice = definite()
        event_id = twice["event"]["id"]
        revel_server.add_order(f"Triple Seat {event_id}", establishment_id=4)
        seed(env, twice)  # without the legacy lookup: tsrevel orders it again
        today = datetime.now(timezone.utc).date().isoformat()
        result = cli({**env, **LEGACY}, "reconcile", "--from", today, "--to", today)
        assert result.exit_code == 1
        rows = [line.split("\t") for line in result.stdout.splitlines() if line.startswith("duplicate")]
        assert [r[1] for r in rows] == [f"tripleseat-{event_id}"]
        assert "1 under a legacy reference" in result.stdout
