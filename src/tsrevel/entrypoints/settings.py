"""Configuration read once from the environment into a frozen, validated Settings."""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from tsrevel.domain.errors import ConfigError
from tsrevel.domain.legacy import LegacyReferences

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Variables whose values are never printed, logged or answered.
SECRET_FIELDS = frozenset(
    {
        "admin_token",
        "signing_secret",
        "tripleseat_client_secret",
        "tripleseat_refresh_token",
        "revel_api_key",
        "revel_api_secret",
        "sendgrid_api_key",
    }
)


@attrs.frozen(kw_only=True)
class Settings:
    """Every setting of DESIGN.md §6, validated; secrets are kept out of repr()."""

    enable_connector: bool = True
    dry_run: bool = True
    allowed_locations: frozenset[str] = frozenset()
    database_url: str = "sqlite:///./var/tsrevel.db"
    mapping_file: str = "./examples/mapping.toml"
    admin_token: str | None = attrs.field(default=None, repr=False)
    signing_secret: str | None = attrs.field(default=None, repr=False)
    allow_unsigned: bool = False
    tripleseat_api_url: str = "https://api.tripleseat.com"
    tripleseat_client_id: str | None = None
    tripleseat_client_secret: str | None = attrs.field(default=None, repr=False)
    tripleseat_refresh_token: str | None = attrs.field(default=None, repr=False)  # seed; rotations live in the store
    revel_base_url: str | None = None
    revel_api_key: str | None = attrs.field(default=None, repr=False)
    revel_api_secret: str | None = attrs.field(default=None, repr=False)
    sendgrid_api_key: str | None = attrs.field(default=None, repr=False)
    sendgrid_api_host: str = "https://api.sendgrid.com"
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    order_on_statuses: frozenset[str] = frozenset({"DEFINITE"})
    unmapped_items: str = "fail"
    order_window_hours: float | None = None
    max_attempts: int = 8
    retry_base_s: float = 2.0
    retry_cap_s: float = 900.0
    retry_after_cap_s: float = 3600.0
    lease_s: float = 60.0
    revel_timeout_s: float = 10.0
    sendgrid_timeout_s: float = 10.0
    revel_min_interval_s: float = 0.2
    workers: int = 2
    poll_interval_s: float = 0.5
    retention_days: int = 90
    log_format: str = "json"
    log_level: str = "INFO"
    console_idle_min: int = 30  # TSREVEL_CONSOLE_IDLE_MIN: a console session ends after this many idle minutes
    sqlite_synchronous: str = "full"  # TSREVEL_SQLITE_SYNCHRONOUS: "normal" trades power-loss durability for speed
    call_deadline_s: float = 30.0  # TSREVEL_CALL_DEADLINE_S: the whole of one outside call; below TSREVEL_LEASE_S
    # Switch-over from the previous connector (docs/migrating.md)
    revel_legacy_local_ids: tuple[str, ...] = ()
    crash_at: str | None = None  # test-only seam (TSREVEL_TEST_CRASH_AT), see docs/reliability.md

    @property
    def revel_configured(self) -> bool:
        return bool(self.revel_base_url and self.revel_api_key and self.revel_api_secret)

    @property
    def sendgrid_configured(self) -> bool:
        return bool(self.sendgrid_api_key)

    @property
    def tripleseat_configured(self) -> bool:
        return bool(self.tripleseat_client_id and self.tripleseat_client_secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate the environment; raises ConfigError naming the variable and the problem."""
        r = _Reader(env)
        settings = cls(
            enable_connector=r.boolean("ENABLE_CONNECTOR", True),
            dry_run=r.boolean("DRY_RUN", True),
            allowed_locations=frozenset(r.location_list("ALLOWED_LOCATIONS")),
            database_url=r.database_url("TSREVEL_DATABASE_URL", "sqlite:///./var/tsrevel.db"),
            mapping_file=r.text("TSREVEL_MAPPING_FILE") or "./examples/mapping.toml",
            admin_token=r.secret("TSREVEL_ADMIN_TOKEN", min_length=16),
            signing_secret=r.secret("TRIPLESEAT_SIGNING_SECRET"),
            allow_unsigned=r.boolean("TRIPLESEAT_ALLOW_UNSIGNED", False),
            tripleseat_api_url=r.url("TRIPLESEAT_API_URL") or "https://api.tripleseat.com",
            tripleseat_client_id=r.text("TRIPLESEAT_CLIENT_ID"),
            tripleseat_client_secret=r.secret("TRIPLESEAT_CLIENT_SECRET"),
            tripleseat_refresh_token=r.secret("TRIPLESEAT_REFRESH_TOKEN"),
            revel_base_url=r.url("REVEL_BASE_URL"),
            revel_api_key=r.secret("REVEL_API_KEY"),
            revel_api_secret=r.secret("REVEL_API_SECRET"),
            sendgrid_api_key=r.secret("SENDGRID_API_KEY"),
            sendgrid_api_host=r.url("SENDGRID_API_HOST") or "https://api.sendgrid.com",
            email_from=r.email("EMAIL_FROM"),
            email_to=tuple(r.email_list("EMAIL_TO")),
            order_on_statuses=frozenset(s.upper() for s in r.id_list("ORDER_ON_STATUSES", "DEFINITE")),
            unmapped_items=r.choice("UNMAPPED_ITEMS", ("fail", "skip"), "fail"),
            order_window_hours=None if r.raw("ORDER_WINDOW_HOURS") is None else r.number("ORDER_WINDOW_HOURS", 0.0, minimum=1.0),
            max_attempts=int(r.number("TSREVEL_MAX_ATTEMPTS", 8, integer=True, minimum=1)),
            retry_base_s=r.number("TSREVEL_RETRY_BASE_S", 2.0, minimum=0.0),
            retry_cap_s=r.number("TSREVEL_RETRY_CAP_S", 900.0, minimum=0.0),
            retry_after_cap_s=r.number("TSREVEL_RETRY_AFTER_CAP_S", 3600.0, minimum=0.0),
            lease_s=r.number("TSREVEL_LEASE_S", 60.0, minimum=1.0),
            revel_timeout_s=r.number("REVEL_TIMEOUT_S", 10.0, minimum=0.1),
            sendgrid_timeout_s=r.number("SENDGRID_TIMEOUT_S", 10.0, minimum=0.1),
            revel_min_interval_s=r.number("REVEL_MIN_INTERVAL_S", 0.2, minimum=0.0),
            workers=int(r.number("TSREVEL_WORKERS", 2, integer=True, minimum=1)),
            poll_interval_s=r.number("TSREVEL_POLL_INTERVAL_S", 0.5, minimum=0.01),
            retention_days=int(r.number("TSREVEL_RETENTION_DAYS", 90, integer=True, minimum=1)),
            log_format=r.choice("LOG_FORMAT", ("json", "text"), "json"),
            log_level=r.choice("LOG_LEVEL", _LOG_LEVELS, "INFO", upper=True),
            console_idle_min=int(r.number("TSREVEL_CONSOLE_IDLE_MIN", 30, integer=True, minimum=1)),
            sqlite_synchronous=r.choice("TSREVEL_SQLITE_SYNCHRONOUS", ("full", "normal"), "full"),
            call_deadline_s=r.number(
                "TSREVEL_CALL_DEADLINE_S", min(30.0, r.number("TSREVEL_LEASE_S", 60.0, minimum=1.0) / 2), minimum=0.1
            ),
            revel_legacy_local_ids=LegacyReferences.parse(r.raw("REVEL_LEGACY_LOCAL_IDS")).templates,
            crash_at=r.text("TSREVEL_TEST_CRASH_AT"),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules: what production (DRY_RUN=false) needs, and safe signature handling."""
        if not self.dry_run:
            missing = [
                name
                for name, value in (
                    ("REVEL_BASE_URL", self.revel_base_url),
                    ("REVEL_API_KEY", self.revel_api_key),
                    ("REVEL_API_SECRET", self.revel_api_secret),
                )
                if not value
            ]
            if missing:
                raise ConfigError(f"{', '.join(missing)}: required when DRY_RUN=false (tsrevel writes to Revel)")
            if self.signing_secret is None and not self.allow_unsigned:
                raise ConfigError(
                    "TRIPLESEAT_SIGNING_SECRET: required when DRY_RUN=false "
                    "(set TRIPLESEAT_ALLOW_UNSIGNED=true to accept unsigned webhooks on purpose)"
                )
        if self.sendgrid_api_key and not self.email_from:
            raise ConfigError("EMAIL_FROM: required when SENDGRID_API_KEY is set")
        if self.sendgrid_api_key and not self.email_to:
            raise ConfigError("EMAIL_TO: required when SENDGRID_API_KEY is set (comma-separated addresses)")
        if bool(self.tripleseat_client_id) != bool(self.tripleseat_client_secret):
            raise ConfigError("TRIPLESEAT_CLIENT_ID and TRIPLESEAT_CLIENT_SECRET: set both or neither")
        if self.tripleseat_refresh_token and not self.tripleseat_configured:
            raise ConfigError("TRIPLESEAT_REFRESH_TOKEN: needs TRIPLESEAT_CLIENT_ID and TRIPLESEAT_CLIENT_SECRET too")
        if self.call_deadline_s >= self.lease_s:
            raise ConfigError(
                f"TSREVEL_CALL_DEADLINE_S: {self.call_deadline_s:g} s is not shorter than TSREVEL_LEASE_S ({self.lease_s:g} s); "
                "a Revel, SendGrid or TripleSeat call still running when the lease ends lets another worker take the "
                "delivery over: lower TSREVEL_CALL_DEADLINE_S or raise TSREVEL_LEASE_S"
            )
        if self.retry_cap_s < self.retry_base_s:
            raise ConfigError("TSREVEL_RETRY_CAP_S: must not be smaller than TSREVEL_RETRY_BASE_S")

    def describe(self) -> list[tuple[str, str]]:
        """Every setting as (VARIABLE, shown value) for the start-up log, secrets redacted."""

        def show(value: object) -> str:
            if isinstance(value, (frozenset, tuple)):
                return ",".join(sorted(str(v) for v in value)) or "(empty)"
            return "(unset)" if value is None else str(value)

        rows = []
        for field in attrs.fields(Settings):
            value = getattr(self, field.name)
            shown = ("(set, redacted)" if value else "(unset)") if field.name in SECRET_FIELDS else show(value)
            if field.name == "database_url":
                shown = redact_url_password(shown)
            rows.append((_VARIABLE_NAMES.get(field.name, field.name.upper()), shown))
        return rows


def redact_url_password(url: str) -> str:
    """A database URL fit for the log: a password in user:password@ or in ?password= is replaced."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):[^/?#]*@", r"\1:(redacted)@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1(redacted)", url)


_VARIABLE_NAMES = {
    "database_url": "TSREVEL_DATABASE_URL",
    "mapping_file": "TSREVEL_MAPPING_FILE",
    "admin_token": "TSREVEL_ADMIN_TOKEN",
    "signing_secret": "TRIPLESEAT_SIGNING_SECRET",
    "allow_unsigned": "TRIPLESEAT_ALLOW_UNSIGNED",
    "max_attempts": "TSREVEL_MAX_ATTEMPTS",
    "retry_base_s": "TSREVEL_RETRY_BASE_S",
    "retry_cap_s": "TSREVEL_RETRY_CAP_S",
    "retry_after_cap_s": "TSREVEL_RETRY_AFTER_CAP_S",
    "lease_s": "TSREVEL_LEASE_S",
    "workers": "TSREVEL_WORKERS",
    "poll_interval_s": "TSREVEL_POLL_INTERVAL_S",
    "retention_days": "TSREVEL_RETENTION_DAYS",
    "console_idle_min": "TSREVEL_CONSOLE_IDLE_MIN",
    "crash_at": "TSREVEL_TEST_CRASH_AT",
    "sqlite_synchronous": "TSREVEL_SQLITE_SYNCHRONOUS",
    "call_deadline_s": "TSREVEL_CALL_DEADLINE_S",
}


@attrs.define
class _Reader:
    env: Mapping[str, str]

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def text(self, name: str) -> str | None:
        return self.raw(name)

    def secret(self, name: str, *, min_length: int = 1) -> str | None:
        value = self.raw(name)
        if value is not None and len(value) < min_length:
            # The value itself is never echoed: only its length requirement.
            raise ConfigError(f"{name}: too short (at least {min_length} characters)")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"{name}: {value!r} is not a boolean (use true or false)")

    def id_list(self, name: str, default: str = "") -> list[str]:
        value = self.raw(name)
        value = default if value is None else value
        return self._ids(name, [part.strip() for part in value.split(",") if part.strip()])

    def _ids(self, name: str, items: list[str]) -> list[str]:
        for item in items:
            if not _ID.match(item):
                raise ConfigError(f"{name}: {item!r} is not an id (comma-separated ids expected)")
        return [str(int(i)) if i.isdigit() else i for i in items]

    def location_list(self, name: str) -> list[str]:
        """Location ids and ``site:<id>`` entries (ALLOWED_LOCATIONS); ``site:`` is kept as the entry's prefix."""
        entries = []
        for part in (self.raw(name) or "").split(","):
            kind, sep, rest = part.strip().partition(":")
            if not sep:
                entries += self._ids(name, [kind]) if kind else []
            elif kind.strip().lower() == "site" and rest.strip():
                entries += [f"site:{i}" for i in self._ids(name, [rest.strip()])]
            else:
                raise ConfigError(f"{name}: {part.strip()!r} is neither a location id nor site:<id>")
        return entries

    def email(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not _EMAIL.match(value):
            raise ConfigError(f"{name}: {value!r} is not an email address")
        return value

    def email_list(self, name: str) -> list[str]:
        value = self.raw(name) or ""
        items = [part.strip() for part in value.split(",") if part.strip()]
        for item in items:
            if not _EMAIL.match(item):
                raise ConfigError(f"{name}: {item!r} is not an email address")
        return items

    def url(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ConfigError(f"{name}: {value!r} is not an http(s) URL")
        return value.rstrip("/") if value else None

    def database_url(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        if not (value.startswith("sqlite:///") or value.startswith(("postgresql://", "postgres://"))):
            raise ConfigError(f"{name}: must start with sqlite:/// or postgresql:// (got a value of another form)")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str, *, upper: bool = False) -> str:
        value = self.raw(name)
        if value is None:
            return default
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def number(self, name: str, default: float, *, integer: bool = False, minimum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value) if integer else float(value)
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not {'a whole number' if integer else 'a number'}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{name}: {value!r} is not a finite number")
        if minimum is not None and number < minimum:
            raise ConfigError(f"{name}: {value!r} is below the minimum {minimum:g}")
        return number
