"""Settings that concern the database: history retention, and a database URL's password kept out of the log."""

from __future__ import annotations

import pytest

from tsrevel.domain.errors import ConfigError
from tsrevel.entrypoints.settings import Settings, redact_url_password


class TestRetention:
    def test_history_is_kept_ninety_days_unless_told_otherwise(self):
        assert Settings.from_env({}).retention_days == 90
        assert Settings.from_env({"TSREVEL_RETENTION_DAYS": "30"}).retention_days == 30

    @pytest.mark.parametrize("value", ["0", "-5", "1.5", "forever"])
    def test_a_retention_that_is_not_a_whole_number_of_days_stops_start_up(self, value):
        with pytest.raises(ConfigError, match="TSREVEL_RETENTION_DAYS"):
            Settings.from_env({"TSREVEL_RETENTION_DAYS": value})

    def test_the_start_up_log_names_the_variable(self):
        shown = dict(Settings.from_env({"TSREVEL_RETENTION_DAYS": "30"}).describe())
        assert shown["TSREVEL_RETENTION_DAYS"] == "30"


class TestDatabaseUrlInTheLog:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("postgresql://tsrevel:s3cret@db:5432/tsrevel", "postgresql://tsrevel:(redacted)@db:5432/tsrevel"),
            ("postgres://tsrevel:p@ss@db/tsrevel", "postgres://tsrevel:(redacted)@db/tsrevel"),
            ("postgresql://tsrevel@db/tsrevel?password=s3cret&sslmode=require",
             "postgresql://tsrevel@db/tsrevel?password=(redacted)&sslmode=require"),
            ("postgresql://tsrevel@db/tsrevel", "postgresql://tsrevel@db/tsrevel"),
            ("sqlite:///./var/tsrevel.db", "sqlite:///./var/tsrevel.db"),
        ],
    )
    def test_a_password_is_replaced_and_the_rest_kept(self, url, expected):
        assert redact_url_password(url) == expected

    def test_describe_never_shows_the_database_password(self):
        settings = Settings.from_env({"TSREVEL_DATABASE_URL": "postgresql://tsrevel:s3cret@db:5432/tsrevel"})
        shown = dict(settings.describe())
        assert shown["TSREVEL_DATABASE_URL"] == "postgresql://tsrevel:(redacted)@db:5432/tsrevel"
        assert "s3cret" not in repr(settings.describe())
