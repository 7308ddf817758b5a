"""Parsing TripleSeat webhooks: tolerant of the shapes seen in the wild, exact with money, strict with errors."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsrevel.domain.errors import PayloadError
from tsrevel.domain.events import TripleSeatEvent, WebhookEnvelope, decode_json
from tsrevel.testing.strategies import as_decimal, json_scalars, json_values, money, mutated_payloads, webhook_payloads

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WEBHOOK_FILES = sorted(EXAMPLES.glob("webhook-*.json"))


def envelope(event: dict[str, Any], *, trigger: str = "STATUS_CHANGE_EVENT", key: str = "event") -> WebhookEnvelope:
    return WebhookEnvelope.from_payload({"webhook_trigger_type": trigger, key: event})


def event_with_item(**item: Any) -> TripleSeatEvent:
    line = {"id": 1, "quantity": 1, "price": "1.00", "display_name": "Fruit tower"} | item
    return TripleSeatEvent.from_payload({"id": 7, "documents": [{"line_items": [line]}]})


def parse_error(data: object) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        WebhookEnvelope.from_payload(data)
    return caught.value


class TestExampleFiles:
    def test_there_are_example_webhooks_to_parse(self) -> None:
        assert len(WEBHOOK_FILES) >= 4

    @pytest.mark.parametrize("path", WEBHOOK_FILES, ids=lambda p: p.name)
    def test_every_example_webhook_parses(self, path: Path) -> None:
        parsed = WebhookEnvelope.from_json_bytes(path.read_bytes())
        assert parsed.trigger_type == json.loads(path.read_bytes())["webhook_trigger_type"]
        assert parsed.object_id is not None

    def test_the_definite_example_is_read_field_by_field(self) -> None:
        event = WebhookEnvelope.from_json_bytes((EXAMPLES / "webhook-definite.json").read_bytes()).event
        assert event is not None
        assert (event.id, event.status, event.site_id, event.location_id) == ("55521609", "DEFINITE", "15691", "201")
        assert event.room_ids == ("31012",)
        assert event.contact.full_name == "Jon Ponder"
        assert event.contact.email == "jon.ponder@example.com"
        assert event.contact.phone == "(702) 555-0143"
        assert (event.guest_count, event.guaranteed_guest_count) == (40, None)
        assert [(i.quantity, i.price) for i in event.line_items] == [
            (Decimal("48"), Decimal("3.25")),
            (Decimal("4"), Decimal("38.5")),
            (Decimal("2"), Decimal("64.00")),
        ]
        assert [i.menu_item_id for i in event.line_items] == ["5501", None, "5510"]
        assert [b.amount for b in event.billing_totals] == [Decimal("35.27"), Decimal("78.84")]
        assert event.grand_total == Decimal("552.11")
        assert event.has_financials


class TestIds:
    def test_an_integer_id_and_the_same_digits_as_a_string_are_the_same_id(self) -> None:
        as_int = envelope({"id": 8803, "site_id": 15691, "location_id": 201, "account_id": 8803})
        as_str = envelope({"id": "8803", "site_id": "15691", "location_id": "201", "account_id": " 8803 "})
        assert as_int.event == as_str.event
        assert as_int.object_id == as_str.object_id == "8803"

    def test_a_whole_json_fraction_is_the_integer_id(self) -> None:
        assert envelope({"id": Decimal("8803.0")}).object_id == "8803"

    @pytest.mark.parametrize(
        "bad_id",
        [True, 12.5, Decimal("NaN"), float("nan"), float("inf"), Decimal("1E+999999999"), "12 34", "x" * 65, []],
        ids=repr,
    )
    def test_a_value_that_is_no_id_is_a_payload_error(self, bad_id: object) -> None:
        error = parse_error({"webhook_trigger_type": "CREATE_EVENT", "event": {"id": bad_id}})
        assert error.path == "event.id"

    @pytest.mark.parametrize("text_id", ["²", "٣", "EV-1"])
    def test_an_id_that_is_not_ascii_digits_is_kept_as_text(self, text_id: str) -> None:
        assert envelope({"id": text_id}).object_id == text_id

    def test_an_event_without_an_id_is_a_payload_error(self) -> None:
        error = parse_error({"webhook_trigger_type": "CREATE_EVENT", "event": {"name": "No id"}})
        assert str(error) == "event.id: None is missing; every event needs an id"


class TestMoney:
    @pytest.mark.parametrize(
        ("wire", "exact"),
        [
            ("16586.0", Decimal("16586.00")),
            (38.5, Decimal("38.50")),
            ("$1,200.50", Decimal("1200.50")),
            ("1,234,567.8", Decimal("1234567.80")),
            (64, Decimal("64.00")),
            (" 3.25 ", Decimal("3.25")),
            (Decimal("0.10"), Decimal("0.10")),
            (0.1, Decimal("0.10")),
            ("3.2500", Decimal("3.25")),
        ],
    )
    def test_money_becomes_the_exact_decimal_it_spells_quantised_to_the_cent_at_parse_time(self, wire: object, exact: Decimal) -> None:
        item = event_with_item(price=wire).line_items[0]
        assert isinstance(item.price, Decimal)
        assert item.price == exact
        assert str(item.price) == str(exact)

    def test_a_json_fraction_is_never_read_through_float(self) -> None:
        # Through float this would be 0.3 and pass; read exactly it has digits beyond the cent.
        body = b'{"webhook_trigger_type": "X", "event": {"id": 1, "grand_total": 0.30000000000000001}}'
        with pytest.raises(PayloadError, match="decimal places") as caught:
            WebhookEnvelope.from_json_bytes(body)
        assert caught.value.path == "event.grand_total"
        exact = b'{"webhook_trigger_type": "X", "event": {"id": 1, "grand_total": 0.30000000000000000}}'
        event = WebhookEnvelope.from_json_bytes(exact).event
        assert event is not None and str(event.grand_total) == "0.30"

    def test_quantity_times_price_is_exact(self) -> None:
        item = event_with_item(quantity=3, price=0.1).line_items[0]
        assert item.line_total == Decimal("0.3")

    @given(money(), money())
    def test_any_generated_amount_survives_json_exactly(self, price: Any, quantity: Any) -> None:
        line = {"id": 1, "price": price, "quantity": quantity, "total_price": price}
        body = json.dumps({"webhook_trigger_type": "X", "event": {"id": 1, "documents": [{"line_items": [line]}]}})
        event = WebhookEnvelope.from_json_bytes(body.encode()).event
        assert event is not None
        item = event.line_items[0]
        assert (item.price, item.quantity) == (as_decimal(price), as_decimal(quantity))
        assert item.total_price == as_decimal(price)

    @pytest.mark.parametrize("wire", ["NaN", "Infinity", "1e12", "-1e13", "38,50", "1,2", "12,,", "abc", True, [1]])
    def test_an_amount_that_is_not_a_usable_number_is_refused(self, wire: object) -> None:
        with pytest.raises(PayloadError) as caught:
            event_with_item(price=wire)
        assert caught.value.path == "event.documents[0].line_items[0].price"

    def test_a_missing_quantity_is_refused(self) -> None:
        with pytest.raises(PayloadError, match=r"quantity: None is missing; a number is required"):
            event_with_item(quantity=None)

    def test_grand_total_is_the_sum_of_the_documents_financials(self) -> None:
        event = TripleSeatEvent.from_payload(
            {
                "id": 1,
                "grand_total": "999.00",
                "documents": [
                    {"financials": {"grand_total": "100.10"}},
                    {"financials": {"grand_total": 50}},
                ],
            }
        )
        assert event.grand_total == Decimal("150.10")

    def test_grand_total_is_not_double_counted_when_the_first_document_has_no_financials(self) -> None:
        event = TripleSeatEvent.from_payload(
            {"id": 1, "grand_total": "40.00", "documents": [{"line_items": []}, {"financials": {"grand_total": "40.00"}}]}
        )
        assert event.grand_total == Decimal("40.00")

    def test_the_event_level_grand_total_is_used_without_document_financials(self) -> None:
        event = TripleSeatEvent.from_payload({"id": 1, "grand_total": "16586.0"})
        assert event.grand_total == Decimal("16586.0")
        assert not event.has_financials


class TestGuestCounts:
    def test_null_guest_counts_are_none(self) -> None:
        event = TripleSeatEvent.from_payload({"id": 1, "guest_count": None, "guaranteed_guest_count": None})
        assert (event.guest_count, event.guaranteed_guest_count) == (None, None)

    def test_guest_counts_may_be_strings(self) -> None:
        event = TripleSeatEvent.from_payload({"id": 1, "guest_count": "25", "guaranteed_guest_count": "20.0"})
        assert (event.guest_count, event.guaranteed_guest_count) == (25, 20)

    @pytest.mark.parametrize("count", ["12.5", -3, "many"])
    def test_a_count_that_is_not_whole_and_non_negative_is_refused(self, count: object) -> None:
        with pytest.raises(PayloadError) as caught:
            TripleSeatEvent.from_payload({"id": 1, "guest_count": count})
        assert caught.value.path == "event.guest_count"


class TestTimes:
    def test_local_time_is_the_sites_wall_clock(self) -> None:
        event = TripleSeatEvent.from_payload(
            {"id": 1, "event_start": "12/28/2025 6:00 PM", "event_end": "12/28/2025 8:15 PM"}
        )
        assert event.start_local == datetime(2025, 12, 28, 18, 0)
        assert event.end_local == datetime(2025, 12, 28, 20, 15)
        assert event.start_utc is None

    @pytest.mark.parametrize(
        "text", ["12/28/2025 06:00 pm", "12/28/2025  6:00   PM", "12/28/2025 18:00", "12/28/2025 6:00:00 PM"]
    )
    def test_local_time_spellings_are_tolerated(self, text: str) -> None:
        assert TripleSeatEvent.from_payload({"id": 1, "event_start": text}).start_local == datetime(2025, 12, 28, 18, 0)

    def test_utc_time_is_an_aware_utc_instant(self) -> None:
        event = TripleSeatEvent.from_payload({"id": 1, "event_start_utc": "2025-12-29T02:00:00Z"})
        assert event.start_utc == datetime(2025, 12, 29, 2, 0, tzinfo=timezone.utc)
        assert event.start_utc.utcoffset() is not None and not event.start_utc.utcoffset()

    def test_iso_time_gives_both_the_local_time_and_the_utc_instant(self) -> None:
        event = TripleSeatEvent.from_payload({"id": 1, "event_start_iso8601": "2025-12-28T18:00:00-08:00"})
        assert event.start_local == datetime(2025, 12, 28, 18, 0)
        assert event.start_utc == datetime(2025, 12, 29, 2, 0, tzinfo=timezone.utc)

    def test_explicit_local_and_utc_times_win_over_the_iso_variant(self) -> None:
        event = TripleSeatEvent.from_payload(
            {
                "id": 1,
                "event_start": "12/28/2025 6:00 PM",
                "event_start_utc": "2025-12-29T02:00:00Z",
                "event_start_iso8601": "2025-12-28T21:00:00-05:00",
            }
        )
        assert event.start_local == datetime(2025, 12, 28, 18, 0)
        assert event.start_utc == datetime(2025, 12, 29, 2, 0, tzinfo=timezone.utc)

    @pytest.mark.parametrize(
        ("field", "value", "problem"),
        [
            ("event_start", "tomorrow at six", "is not a time like '12/28/2025 6:00 PM'"),
            ("event_start", 1766973600, "is not a time like '12/28/2025 6:00 PM'"),
            ("event_start_utc", "2025-12-29T02:00:00", "has no UTC offset"),
            ("event_start_iso8601", "28 Dec 2025", "is not an ISO 8601 time"),
            ("event_start_utc", "9999-12-31T23:59:59-01:00", "is out of range"),
            ("event_start_iso8601", "0001-01-01T00:00:00+01:00", "is out of range"),
            ("event_start", "01/01/0001 12:00 AM", "is out of range"),
        ],
    )
    def test_a_bad_time_is_a_payload_error_naming_the_field(self, field: str, value: object, problem: str) -> None:
        with pytest.raises(PayloadError) as caught:
            TripleSeatEvent.from_payload({"id": 1, field: value})
        assert caught.value.path == f"event.{field}"
        assert caught.value.problem == problem


class TestEnvelopeKeys:
    def test_the_event_may_be_nested_under_object_with_a_message(self) -> None:
        parsed = WebhookEnvelope.from_payload(
            {"webhook_trigger_type": "UPDATE_EVENT", "object": {"id": 5}, "message": "Event updated"}
        )
        assert (parsed.object_key, parsed.object_id, parsed.message) == ("object", "5", "Event updated")
        assert parsed.event is not None and parsed.event.id == "5"

    @pytest.mark.parametrize("key", ["booking", "lead"])
    def test_a_booking_or_lead_is_recorded_by_key_and_id_without_an_event(self, key: str) -> None:
        parsed = WebhookEnvelope.from_payload({"webhook_trigger_type": "create_lead", key: {"id": "998877"}})
        assert (parsed.trigger_type, parsed.object_key, parsed.object_id, parsed.event) == (
            "CREATE_LEAD",
            key,
            "998877",
            None,
        )

    def test_a_webhook_without_any_object_has_no_event(self) -> None:
        parsed = WebhookEnvelope.from_payload({"webhook_trigger_type": "PING"})
        assert (parsed.object_key, parsed.event, parsed.object_id) == (None, None, None)

    def test_event_wins_over_object_when_both_are_present(self) -> None:
        parsed = WebhookEnvelope.from_payload({"webhook_trigger_type": "X", "event": {"id": 1}, "object": {"id": 2}})
        assert (parsed.object_key, parsed.object_id) == ("event", "1")

    @pytest.mark.parametrize("trigger", [None, "", "   ", 12, ["CREATE_EVENT"]], ids=repr)
    def test_a_missing_or_non_text_trigger_is_refused(self, trigger: object) -> None:
        assert parse_error({"webhook_trigger_type": trigger, "event": {"id": 1}}).path == "webhook_trigger_type"

    @pytest.mark.parametrize("body", [[], "text", 5, None], ids=repr)
    def test_a_body_that_is_not_an_object_is_refused_at_the_root(self, body: object) -> None:
        assert parse_error(body).path == "$"

    def test_unknown_extra_keys_are_ignored_everywhere(self) -> None:
        plain = {"id": 1, "contact": {"first_name": "Ana"}, "documents": [{"line_items": [{"quantity": 1, "price": 2}]}]}
        noisy = {
            "id": 1,
            "x_new": {"deep": [1, 2]},
            "contact": {"first_name": "Ana", "pronouns": "she/her"},
            "documents": [{"x_doc": True, "line_items": [{"quantity": 1, "price": 2, "tax_code": "B"}]}],
        }
        assert envelope(noisy).event == envelope(plain).event
        with_extra_top = WebhookEnvelope.from_payload({"webhook_trigger_type": "X", "event": plain, "retry": 3})
        assert with_extra_top.event == envelope(plain).event


class TestErrors:
    def test_the_error_message_names_the_path_and_the_value(self) -> None:
        items = [{"quantity": 1, "price": 1}, {"quantity": 2, "price": 1}, {"quantity": "abc", "price": 1}]
        with pytest.raises(PayloadError) as caught:
            envelope({"id": 1, "documents": [{"line_items": items}]})
        assert str(caught.value) == "event.documents[0].line_items[2].quantity: 'abc' is not a number"
        assert (caught.value.path, caught.value.value, caught.value.problem) == (
            "event.documents[0].line_items[2].quantity",
            "abc",
            "is not a number",
        )

    def test_the_path_starts_with_the_key_the_event_came_under(self) -> None:
        with pytest.raises(PayloadError, match=r"^object\.documents\[1\]\.line_items: 'none' is not a JSON array$"):
            envelope({"id": 1, "documents": [{}, {"line_items": "none"}]}, key="object")

    def test_a_long_value_is_shortened_in_the_message(self) -> None:
        error = parse_error({"webhook_trigger_type": "X", "event": {"id": 1, "name": ["x" * 500]}})
        assert len(str(error)) < 140
        assert str(error).startswith("event.name: ['xxx")

    @pytest.mark.parametrize(
        "body", [b"", b"{", b"not json", b"\xff\xfe\x00", b'{"a": 1} trailing', b"1e999999999999999999999"]
    )
    def test_malformed_json_bytes_are_a_payload_error_at_the_root(self, body: bytes) -> None:
        with pytest.raises(PayloadError) as caught:
            WebhookEnvelope.from_json_bytes(body)
        assert caught.value.path == "$"

    def test_json_nested_too_deeply_is_a_payload_error_at_the_root(self) -> None:
        with pytest.raises(PayloadError) as caught:
            decode_json(b"[" * 100_000 + b"]" * 100_000)
        assert caught.value.path == "$"

    def test_a_deeply_nested_value_is_reported_even_deep_in_the_stack(self) -> None:
        # Decoded near the recursion limit here, then parsed 150 frames deeper: repr() must not blow up.
        depth = sys.getrecursionlimit() - _stack_depth() - 40
        data = json.loads('{"webhook_trigger_type": "X", "event": {"id": 1, "name": ' + "[" * depth + "]" * depth + "}}")

        def parse_at(levels: int) -> None:
            if levels:
                return parse_at(levels - 1)
            WebhookEnvelope.from_payload(data)
            return None

        with pytest.raises(PayloadError) as caught:
            parse_at(150)
        assert caught.value.path == "event.name"


EVENT_FIELDS = [
    "id", "name", "status", "site_id", "location_id", "room_ids", "booking_id", "account_id", "contact_id",
    "contact", "guest_count", "guaranteed_guest_count", "description", "event_start", "event_end",
    "event_start_utc", "event_end_utc", "event_start_iso8601", "event_end_iso8601", "updated_at", "grand_total",
    "documents", "financials",
]
LINE_ITEM_FIELDS = [
    "id", "quantity", "price", "total_price", "display_name", "description", "category", "menu_item_id", "section",
]


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def _parses_or_refuses(data: object) -> None:
    try:
        parsed = WebhookEnvelope.from_payload(data)
    except PayloadError as error:
        assert error.path and str(error).startswith(error.path)
    else:
        assert parsed.trigger_type


class TestParsingIsTotal:
    @given(json_values())
    def test_any_json_value_parses_or_is_a_payload_error(self, data: object) -> None:
        _parses_or_refuses(data)

    @given(st.dictionaries(st.sampled_from(["webhook_trigger_type", "event", "object", "booking", "lead", "message"]),
                           json_scalars() | json_values()))
    def test_any_values_under_the_known_keys_parse_or_are_a_payload_error(self, data: dict[str, Any]) -> None:
        _parses_or_refuses({"webhook_trigger_type": "CREATE_EVENT"} | data)

    @given(
        st.dictionaries(st.sampled_from(EVENT_FIELDS), json_scalars() | json_values(max_leaves=4)),
        st.lists(st.dictionaries(st.sampled_from(LINE_ITEM_FIELDS), json_scalars() | json_values(max_leaves=3)), max_size=3),
        st.sampled_from(["event", "object"]),
    )
    def test_any_values_in_the_event_and_line_item_fields_parse_or_are_a_payload_error(
        self, fields: dict[str, Any], items: list[dict[str, Any]], key: str
    ) -> None:
        event = {"id": 1, "documents": [{"line_items": items, "financials": fields.pop("financials", None)}]} | fields
        _parses_or_refuses({"webhook_trigger_type": "CREATE_EVENT", key: event})

    @given(mutated_payloads(decoded=True))
    def test_a_valid_payload_with_one_value_replaced_parses_or_is_a_payload_error(self, data: dict[str, Any]) -> None:
        _parses_or_refuses(data)

    @given(mutated_payloads())
    def test_a_mutated_payload_sent_as_json_parses_or_is_a_payload_error(self, data: dict[str, Any]) -> None:
        try:
            WebhookEnvelope.from_json_bytes(json.dumps(data).encode())
        except PayloadError:
            pass

    @given(st.binary(max_size=300))
    def test_any_bytes_parse_or_are_a_payload_error(self, body: bytes) -> None:
        try:
            WebhookEnvelope.from_json_bytes(body)
        except PayloadError as error:
            assert error.path

    @given(webhook_payloads(), st.data())
    def test_a_valid_body_with_one_byte_changed_parses_or_is_a_payload_error(
        self, payload: dict[str, Any], data: st.DataObject
    ) -> None:
        body = bytearray(json.dumps(payload).encode())
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
        try:
            WebhookEnvelope.from_json_bytes(bytes(body))
        except PayloadError:
            pass

    @given(webhook_payloads())
    def test_every_generated_payload_parses_to_its_event(self, payload: dict[str, Any]) -> None:
        parsed = WebhookEnvelope.from_json_bytes(json.dumps(payload).encode())
        key = "event" if "event" in payload else "object"
        source = payload[key]
        assert parsed.object_key == key
        assert parsed.event is not None
        assert parsed.event.id == str(source["id"])
        assert parsed.event.status == source["status"]
        assert len(parsed.event.line_items) == sum(len(d["line_items"]) for d in source["documents"])
        if "event_start_utc" in source:
            assert parsed.event.start_utc is not None
            expected = datetime.fromisoformat(source["event_start_iso8601"]).astimezone(timezone.utc)
            assert parsed.event.start_utc == expected


def refused(body: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        WebhookEnvelope.from_json_bytes(body)
    return caught.value


class TestPayloadSanity:
    """Issue 11, item 9: each of these was accepted before, and would have stalled or misprinted later."""

    @pytest.mark.parametrize("field", ["id", "location_id", "booking_id"])
    def test_an_integer_id_over_64_digits_is_refused_with_its_path(self, field: str) -> None:
        body = ('{"webhook_trigger_type": "X", "event": {"id": 1, "%s": %s}}' % (field, "9" * 65)).encode()
        if field == "id":
            body = ('{"webhook_trigger_type": "X", "event": {"id": %s}}' % ("9" * 65)).encode()
        assert refused(body).path == f"event.{field}"

    def test_an_integer_id_of_64_digits_is_still_an_id(self) -> None:
        envelope = WebhookEnvelope.from_json_bytes(('{"webhook_trigger_type": "X", "event": {"id": %s}}' % ("9" * 64)).encode())
        assert envelope.event is not None and envelope.event.id == "9" * 64

    @pytest.mark.parametrize("wire", ["1E-999999999", "-1E-999999999", "1e999999999", "0.0000000000001"])
    @pytest.mark.parametrize("field", ["price", "quantity", "total_price", "discount"])
    def test_money_and_quantities_with_absurd_exponents_are_refused_with_the_field_path(self, wire: str, field: str) -> None:
        item = {"id": 1, "quantity": 1, "price": 1} | {field: wire}
        for spelling in (json.dumps(wire), wire):  # a JSON string and a JSON number
            body = json.dumps({"webhook_trigger_type": "X", "event": {"id": 1, "documents": [{"line_items": [item]}]}})
            body = body.replace(json.dumps(wire), spelling)
            assert refused(body.encode()).path == f"event.documents[0].line_items[0].{field}"

    @pytest.mark.parametrize("wire", ["NaN", "Infinity", "-Infinity", "sNaN"])
    def test_non_finite_money_is_refused_with_the_field_path(self, wire: str) -> None:
        body = json.dumps({"webhook_trigger_type": "X", "event": {"id": 1, "documents": [{"financials": {"grand_total": wire}}]}})
        assert refused(body.encode()).path == "event.documents[0].financials.grand_total"

    @pytest.mark.parametrize(("wire", "problem"), [("-20.00", "negative"), ("12.345", "more than 2 decimals")])
    def test_negative_money_and_fractions_of_a_cent_are_refused(self, wire: str, problem: str) -> None:
        with pytest.raises(PayloadError, match=problem) as caught:
            TripleSeatEvent.from_payload({"id": 7, "documents": [{"payment_set": {"payments": [{"id": 1, "amount": wire, "state": "paid"}]}}]})
        assert caught.value.path == "event.documents[0].payment_set.payments[0].amount"

    def test_money_is_quantised_once_at_parse_time(self) -> None:
        parsed = TripleSeatEvent.from_payload(
            {"id": 7, "documents": [{"line_items": [{"id": 1, "quantity": 1, "price": "420"}], "financials": {"grand_total": "446.000"}}]}
        )
        assert str(parsed.grand_total) == "446.00"
        assert str(parsed.line_items[0].price) == "420.00"

    @given(st.integers(-(10**64) + 1, 10**64 - 1))
    def test_every_integer_id_under_65_digits_reads_as_its_digits(self, number: int) -> None:
        envelope = WebhookEnvelope.from_json_bytes(('{"webhook_trigger_type": "X", "event": {"id": 1, "account_id": %d}}' % number).encode())
        assert envelope.event is not None and envelope.event.account_id == str(number)
