"""Secrets at the edges (issue 11, item 8): URL user info never echoed, implausible credentials refused."""

from __future__ import annotations

import logging

import pytest

from tsrevel.domain.errors import ConfigError
from tsrevel.entrypoints.logs import JsonFormatter, TextFormatter
from tsrevel.entrypoints.settings import SECRET_FIELDS, Settings

PASSWORD = "hunter2-secret-pw"


class TestUrlUserInfo:
    @pytest.mark.parametrize("variable", ["REVEL_BASE_URL", "TRIPLESEAT_API_URL", "SENDGRID_API_HOST"])
    @pytest.mark.parametrize(
        "value",
        [f"htps://ops:{PASSWORD}@revel.example.com", f"ops:{PASSWORD}@revel.example.com", f"http//ops:{PASSWORD}@revel", f"https:// ops:{PASSWORD}@x"],
    )
    def test_a_malformed_url_is_refused_without_its_user_info(self, variable, value):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({variable: value})
        assert variable in str(caught.value) and "is not an http(s) URL" in str(caught.value)
        assert PASSWORD not in str(caught.value) and "ops:" not in str(caught.value)

    def test_the_start_up_banner_never_shows_url_user_info(self):
        settings = Settings.from_env({"REVEL_BASE_URL": f"https://ops:{PASSWORD}@revel.example.com", "TSREVEL_DATABASE_URL": f"postgresql://ops:{PASSWORD}@db/t"})
        shown = dict(settings.describe())
        assert PASSWORD not in repr(shown)
        assert shown["REVEL_BASE_URL"] == "https://(redacted)@revel.example.com"

    def test_a_log_line_holding_a_url_with_a_password_is_scrubbed(self):
        record = logging.makeLogRecord(
            {"msg": "connect failed: %s", "args": (f"postgresql://ops:{PASSWORD}@db:5432/t?password={PASSWORD}",), "levelname": "ERROR", "name": "t", "correlation_id": "c"}
        )
        for formatter in (JsonFormatter(), TextFormatter()):
            line = formatter.format(record)
            assert PASSWORD not in line and "postgresql://ops:(redacted)@db:5432" in line


class TestCredentialLengths:
    @pytest.mark.parametrize("variable", ["TRIPLESEAT_SIGNING_SECRET", "TSREVEL_ADMIN_TOKEN"])
    def test_the_signing_secret_and_the_admin_token_need_16_characters(self, variable):
        with pytest.raises(ConfigError, match=f"^{variable}: too short .*at least 16"):
            Settings.from_env({variable: "a" * 15})
        assert Settings.from_env({variable: "a" * 16})

    @pytest.mark.parametrize(
        "variable", ["REVEL_API_KEY", "REVEL_API_SECRET", "SENDGRID_API_KEY", "TRIPLESEAT_CLIENT_SECRET", "TRIPLESEAT_REFRESH_TOKEN"]
    )
    def test_a_third_party_credential_under_8_characters_is_implausible(self, variable):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({variable: "x" * 7})
        assert str(caught.value).startswith(f"{variable}: too short") and "xxxxxxx" not in str(caught.value)

    def test_every_secret_variable_has_a_length_rule(self):
        # A one-character secret would make the scrubber replace that letter in every log line.
        names = {"admin_token": "TSREVEL_ADMIN_TOKEN", "signing_secret": "TRIPLESEAT_SIGNING_SECRET", "tripleseat_client_secret": "TRIPLESEAT_CLIENT_SECRET",
                 "tripleseat_refresh_token": "TRIPLESEAT_REFRESH_TOKEN", "revel_api_key": "REVEL_API_KEY", "revel_api_secret": "REVEL_API_SECRET",
                 "sendgrid_api_key": "SENDGRID_API_KEY"}
        assert set(names) == SECRET_FIELDS
        for variable in names.values():
            with pytest.raises(ConfigError, match="too short"):
                Settings.from_env({variable: "e"})


def test_scrubbing_a_url_keeps_a_json_log_line_json():
    import json

    record = logging.makeLogRecord(
        {"msg": "dsn postgresql://ops:%s@db", "args": (PASSWORD,), "levelname": "ERROR", "name": "t", "correlation_id": "c", "to": "ops@example.com"}
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "dsn postgresql://ops:(redacted)@db" and line["to"] == "ops@example.com"
