"""ALLOWED_LOCATIONS with site:<id> entries: an event without a location_id is matched by its site (decide(), pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsrevel.domain.errors import ConfigError
from tsrevel.domain.events import WebhookEnvelope
from tsrevel.domain.safety import Process, SafetyFlags, Skip, decide, unknown_allowed_entries
from tsrevel.entrypoints.settings import Settings

LIVE = dict(enable_connector=True, dry_run=False)


def event(location_id: object = None, site_id: object = 15691) -> WebhookEnvelope:
    fields = {"id": 55521609, "status": "DEFINITE", "location_id": location_id, "site_id": site_id}
    return WebhookEnvelope.from_payload({"webhook_trigger_type": "STATUS_CHANGE_EVENT", "event": fields})


def allowing(*entries: str) -> SafetyFlags:
    return SafetyFlags(**LIVE, allowed_locations=frozenset(entries))


class TestExamples:
    def test_an_event_with_only_a_site_id_is_processed_when_its_site_is_allowed(self) -> None:
        assert decide(event(site_id=15691), allowing("4", "site:15691")) == Process(dry_run=False)

    def test_an_event_with_only_a_site_id_is_skipped_when_another_site_is_allowed(self) -> None:
        assert decide(event(site_id=15691), allowing("site:15692")) == Skip(
            "site 15691 (no location id) is not in ALLOWED_LOCATIONS (site:15692)"
        )

    def test_a_bare_site_number_does_not_admit_a_site(self) -> None:
        # "15691" is a location id; a site must be written site:15691 (import-legacy translates the old list).
        assert isinstance(decide(event(site_id=15691), allowing("15691")), Skip)

    def test_an_event_with_a_location_id_is_matched_by_its_location_not_its_site(self) -> None:
        assert isinstance(decide(event(location_id=201, site_id=15691), allowing("site:15691")), Skip)
        assert decide(event(location_id=201, site_id=15691), allowing("201")) == Process(dry_run=False)

    def test_an_event_with_neither_id_is_skipped(self) -> None:
        assert decide(event(site_id=None), allowing("site:15691")) == Skip(
            "site (none) (no location id) is not in ALLOWED_LOCATIONS (site:15691)"
        )

    def test_an_empty_allow_list_still_admits_everything(self) -> None:
        assert decide(event(site_id=None), allowing()) == Process(dry_run=False)


ids = st.integers(1, 99_999).map(str)
entries = st.frozensets(ids | ids.map(lambda i: f"site:{i}"), max_size=5)


class TestProperties:
    @given(entries, st.none() | ids, st.none() | ids)
    def test_processed_exactly_when_the_location_or_else_the_site_is_listed(self, allowed, location_id, site_id) -> None:
        decision = decide(event(location_id=location_id, site_id=site_id), SafetyFlags(**LIVE, allowed_locations=allowed))
        if not allowed:
            expected = True
        elif location_id is not None:
            expected = location_id in allowed
        else:
            expected = site_id is not None and f"site:{site_id}" in allowed
        assert isinstance(decision, Process) == expected
        assert isinstance(decision, Skip) == (not expected)

    @given(entries, st.none() | ids, ids)
    def test_a_site_entry_never_admits_an_event_that_has_a_location_id(self, sites_only, site_id, location_id) -> None:
        allowed = frozenset(e for e in sites_only if e.startswith("site:"))
        if allowed:
            assert isinstance(decide(event(location_id=location_id, site_id=site_id), SafetyFlags(**LIVE, allowed_locations=allowed)), Skip)

    @given(entries, st.frozensets(ids, max_size=4), st.frozensets(ids, max_size=4))
    def test_unknown_entries_are_exactly_those_naming_no_mapped_location_or_site(self, allowed, locations, sites) -> None:
        unknown = unknown_allowed_entries(allowed, locations, sites)
        assert unknown == sorted(unknown)
        for entry in allowed:
            known = entry[5:] in sites if entry.startswith("site:") else entry in locations
            assert (entry in unknown) == (not known)


class TestSettings:
    def test_site_entries_are_read_beside_location_ids_and_normalised(self) -> None:
        settings = Settings.from_env({"ALLOWED_LOCATIONS": " 4, site:15691 ,SITE:015692,0201"})
        assert settings.allowed_locations == frozenset({"4", "site:15691", "site:15692", "201"})

    @pytest.mark.parametrize("value", ["site:", "zone:4", "site:15 691", "site:a:b", "4;5"])
    def test_a_malformed_entry_stops_start_up_naming_it(self, value: str) -> None:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"ALLOWED_LOCATIONS": value})
        assert str(caught.value).startswith("ALLOWED_LOCATIONS:")
