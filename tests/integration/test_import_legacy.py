"""`tsrevel import-legacy` on the previous connector's files (tests/samples/legacy): the mapping loads, the service starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from dependency_injector import providers
from litestar.testing import TestClient

from tsrevel.adapters.fakes import FakeMailer, FakeRevel
from tsrevel.adapters.mapping_toml import load_mapping_file
from tsrevel.domain.events import WebhookEnvelope
from tsrevel.domain.safety import OrderPolicy, Process, decide
from tsrevel.entrypoints.cli import main
from tsrevel.entrypoints.container import boot_flags, build_container
from tsrevel.entrypoints.http import create_app
from tsrevel.entrypoints.legacy_import import NEEDS_NEWER, _loader_knows, read_env_file
from tsrevel.entrypoints.settings import Settings

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "legacy"
LOCATIONS = SAMPLES / "config" / "locations.json"
OLD_ENV = SAMPLES / "previous.env"
SECRET_VALUES = ("legacy-ts-client-secret-XYZ", "legacy-signing-secret-ABC", "legacy-revel-key-123", "legacy-revel-secret-456",
                 "SG.legacy-sendgrid-key-789")


def run(*args: str):
    return CliRunner().invoke(main, ["import-legacy", *args])


def imported(tmp_path: Path, *extra: str):
    out = tmp_path / "mapping.toml"
    result = run("--locations", str(LOCATIONS), "--env", str(OLD_ENV), "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    return result, out


def variables(output: str) -> dict[str, str]:
    section = output.split("Set these environment variables:", 1)[1].split("\n\n", 1)[0]
    pairs = [line.strip().split("=", 1) for line in section.splitlines() if "=" in line and not line.strip().startswith("set ")]
    return {name: value for name, value in pairs}


class TestTheMappingFile:
    def test_every_location_and_site_is_carried_with_its_establishment_and_time_zone(self, tmp_path: Path) -> None:
        _result, out = imported(tmp_path)
        mapping = load_mapping_file(out)  # the real loader
        assert {k: (v.name, v.revel_establishment, v.timezone) for k, v in mapping.locations.items()} == {
            "1": ("Tropicana", 1, "America/Los_Angeles"), "4": ('Harbor Room "East"', 5, "America/Los_Angeles"),
        }
        assert {k: (v.revel_establishment, v.timezone) for k, v in mapping.sites.items()} == {
            "15691": (8, "America/Los_Angeles"), "15692": (9, "America/Denver"),
        }
        assert mapping.dining_option == 113 and all(v.dining_option == 113 for v in mapping.sites.values())
        assert mapping.timezone == "America/Los_Angeles"

    def test_the_user_station_payment_and_discount_ids_go_into_defaults(self, tmp_path: Path) -> None:
        _result, out = imported(tmp_path)
        text = out.read_text()
        for key, value in (("revel_user", 17), ("revel_station", 3), ("payment_type", 12), ("discount", 44)):
            if _loader_knows(key):
                assert f"\n{key} = {value}" in text
            else:  # this tsrevel's loader does not know the key yet: kept as a comment, and the file still loads
                assert f"\n# {key} = {value}  {NEEDS_NEWER}" in text
        load_mapping_file(out)

    def test_an_existing_out_file_is_never_overwritten(self, tmp_path: Path) -> None:
        out = tmp_path / "mapping.toml"
        out.write_text("# mine\n")
        result = run("--locations", str(LOCATIONS), "--env", str(OLD_ENV), "--out", str(out))
        assert result.exit_code == 2
        assert result.stderr.strip().count("\n") == 0 and "already exists" in result.stderr
        assert out.read_text() == "# mine\n"

    def test_without_an_env_file_the_locations_alone_are_converted(self, tmp_path: Path) -> None:
        out = tmp_path / "m.toml"
        result = run("--locations", str(LOCATIONS), "--out", str(out))
        assert result.exit_code == 0, result.output
        assert set(load_mapping_file(out).sites) == {"15691", "15692"}
        assert "no --env given" in result.output


class TestTheVariables:
    def test_each_old_variable_becomes_its_tsrevel_equivalent(self, tmp_path: Path) -> None:
        result, out = imported(tmp_path)
        assert variables(result.output) == {
            "TSREVEL_MAPPING_FILE": str(out),
            "REVEL_BASE_URL": "https://acmecatering.revelup.com",
            "TRIPLESEAT_CLIENT_ID": "ts-client-4471",
            "EMAIL_TO": "ops@acmecatering.example,chef@acmecatering.example",
            "EMAIL_FROM": "connector@acmecatering.example",
            "ORDER_ON_STATUSES": "CLOSED",
            "ALLOWED_LOCATIONS": "4,site:15691",
            "ENABLE_CONNECTOR": "true",
            "DRY_RUN": "true",
            "REVEL_LEGACY_LOCAL_IDS": "Triple Seat {event_id}",
        }

    def test_secrets_are_named_never_printed(self, tmp_path: Path) -> None:
        result, out = imported(tmp_path)
        for value in SECRET_VALUES:
            assert value not in result.output and value not in out.read_text()
        for name in ("REVEL_API_KEY", "REVEL_API_SECRET", "SENDGRID_API_KEY", "TRIPLESEAT_CLIENT_SECRET", "TRIPLESEAT_SIGNING_SECRET"):
            assert f"set {name} from your old .env" in result.output

    def test_every_value_not_carried_over_is_listed_with_its_reason(self, tmp_path: Path) -> None:
        result, _out = imported(tmp_path)
        lost = result.output.split("Not carried over", 1)[1]
        for what in ("test_establishment '4'", "TEST_LOCATION_OVERRIDE", "TIMEZONE=America/Los_Angeles", "ENV=production",
                     "signature checking was switched off", "the time gate", "fuzzy >= 0.75"):
            assert what in lost, what

    def test_a_malformed_env_line_is_refused_by_number_without_echoing_it(self, tmp_path: Path) -> None:
        env = tmp_path / "bad.env"
        env.write_text("REVEL_DOMAIN=acme\nthis line holds a secret-value-000\n")
        result = run("--locations", str(LOCATIONS), "--env", str(env), "--out", str(tmp_path / "m.toml"))
        assert result.exit_code == 2 and "line 2 is not KEY=VALUE" in result.stderr
        assert "secret-value-000" not in result.output
        assert not (tmp_path / "m.toml").exists()

    def test_odd_location_values_are_skipped_and_listed(self, tmp_path: Path) -> None:
        odd = tmp_path / "locations.json"
        odd.write_text(json.dumps({"201": {"name": "X", "revel_establishment": "eight"},
                                   "202": {"name": "Y", "revel_establishment": "5", "timezone": "Mars/Olympus"}}))
        out = tmp_path / "m.toml"
        result = run("--locations", str(odd), "--out", str(out))
        assert result.exit_code == 0, result.output
        assert set(load_mapping_file(out).locations) == {"202"}
        assert "revel_establishment 'eight' is not an integer id" in result.output
        assert "timezone 'Mars/Olympus' is not an IANA name" in result.output

    def test_values_tsrevel_would_refuse_at_start_are_not_carried(self, tmp_path: Path) -> None:
        env = tmp_path / "odd.env"
        env.write_text("REVEL_DOMAIN=https://acme.revelup.com/\nENABLE_CONNECTOR=enabled\nTRIPLESEAT_EMAIL_RECIPIENTS=ops; not-an-address\n"
                       "ALLOWED_LOCATIONS=4,15691\nREVEL_TRIPLESEAT_DINING_OPTION_ID=x1\n")
        result = run("--locations", str(LOCATIONS), "--env", str(env), "--out", str(tmp_path / "m.toml"))
        assert result.exit_code == 0, result.output
        found = variables(result.output)
        assert found["REVEL_BASE_URL"] == "https://acme.revelup.com"
        assert "ENABLE_CONNECTOR" not in found and "EMAIL_TO" not in found
        assert "ENABLE_CONNECTOR: 'enabled' is not a boolean" in result.output
        assert "TRIPLESEAT_EMAIL_RECIPIENTS: EMAIL_TO: 'ops' is not an email address" in result.output
        assert "REVEL_TRIPLESEAT_DINING_OPTION_ID='x1': not an integer id" in result.output
        Settings.from_env(found)  # what it does print, tsrevel accepts

    def test_dotenv_quoting_and_comments_are_read_as_dotenv_writes_them(self) -> None:
        env = read_env_file(OLD_ENV)
        assert env["TRIPLESEAT_SIGNING_SECRET"] == "legacy-signing-secret-ABC"
        assert env["REVEL_API_SECRET"] == "legacy-revel-secret-456"
        assert env["ENV"] == "production"


class TestTheServiceStartsWithIt:
    def test_settings_accept_the_variables_and_the_app_answers_ready(self, tmp_path: Path) -> None:
        result, out = imported(tmp_path)
        env = {**variables(result.output), "TSREVEL_DATABASE_URL": f"sqlite:///{tmp_path / 'tsrevel.db'}"}
        old = read_env_file(OLD_ENV)
        env.update({name: old[name] for name in ("REVEL_API_KEY", "REVEL_API_SECRET", "SENDGRID_API_KEY",
                                                  "TRIPLESEAT_CLIENT_SECRET", "TRIPLESEAT_SIGNING_SECRET")})
        settings = Settings.from_env(env)
        assert settings.revel_legacy_local_ids == ("Triple Seat {event_id}",)
        container = build_container(settings)
        container.revel.override(providers.Object(FakeRevel()))
        container.mailer.override(providers.Object(FakeMailer()))
        with TestClient(create_app(container, configure_logs=False)) as client:
            assert client.get("/ready").status_code == 200
            assert client.get("/health").json()["allowed_locations"] == ["4", "site:15691"]

    def test_a_closed_site_only_event_of_the_old_list_is_processed(self, tmp_path: Path) -> None:
        result, _out = imported(tmp_path)
        settings = Settings.from_env({**variables(result.output), "TRIPLESEAT_CLIENT_SECRET": "copied-from-the-old-env"})
        event = WebhookEnvelope.from_payload(
            {"webhook_trigger_type": "STATUS_CHANGE_EVENT", "event": {"id": 77, "status": "CLOSED", "site_id": 15691}}
        )
        assert decide(event, boot_flags(settings), OrderPolicy(order_on_statuses=settings.order_on_statuses)) == Process(dry_run=True)

    def test_the_fixture_directory_is_left_as_it_was(self, tmp_path: Path) -> None:
        before = sorted(p.name for p in SAMPLES.rglob("*"))
        imported(tmp_path)
        assert sorted(p.name for p in SAMPLES.rglob("*")) == before
