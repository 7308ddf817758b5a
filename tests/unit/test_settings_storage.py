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


class TestSqliteDurability:
    def test_sqlite_syncs_every_commit_unless_told_otherwise(self):
        assert Settings.from_env({}).sqlite_synchronous == "full"
        assert Settings.from_env({"TSREVEL_SQLITE_SYNCHRONOUS": "NORMAL"}).sqlite_synchronous == "normal"

    @pytest.mark.parametrize("value", ["off", "extra", "fast"])
    def test_a_synchronous_mode_other_than_full_or_normal_stops_start_up(self, value):
        with pytest.raises(ConfigError, match="TSREVEL_SQLITE_SYNCHRONOUS"):
            Settings.from_env({"TSREVEL_SQLITE_SYNCHRONOUS": value})


class TestCallDeadline:
    def test_the_default_deadline_is_thirty_seconds_or_half_the_lease(self):
        assert Settings.from_env({}).call_deadline_s == 30.0
        assert Settings.from_env({"TSREVEL_LEASE_S": "20"}).call_deadline_s == 10.0

    @pytest.mark.parametrize(("deadline", "lease"), [("60", "60"), ("90", "60"), ("5", "2")])
    def test_a_deadline_not_shorter_than_the_lease_stops_start_up(self, deadline, lease):
        with pytest.raises(ConfigError, match=r"TSREVEL_CALL_DEADLINE_S: .* is not shorter than TSREVEL_LEASE_S"):
            Settings.from_env({"TSREVEL_CALL_DEADLINE_S": deadline, "TSREVEL_LEASE_S": lease})

    def test_a_deadline_below_the_lease_is_accepted(self):
        assert Settings.from_env({"TSREVEL_CALL_DEADLINE_S": "45", "TSREVEL_LEASE_S": "60"}).call_deadline_s == 45.0
