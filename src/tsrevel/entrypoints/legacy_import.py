"""`tsrevel import-legacy`: the previous connector's config/locations.json and .env -> a mapping file and the variables to set.

It reads two files and writes one; it calls nothing. Secret values are never printed: for those it
says which variable to copy from the old .env. Every value it cannot carry over is listed with why.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from tsrevel.domain.errors import ConfigError
from tsrevel.domain.mapping import mapping_from_dict
from tsrevel.domain.safety import SITE_PREFIX
from tsrevel.entrypoints.settings import Settings

LEGACY_TEMPLATE = "Triple Seat {event_id}"

# The old .env names whose values are secrets: the same names in tsrevel, copied by the operator.
SECRETS = ("REVEL_API_KEY", "REVEL_API_SECRET", "SENDGRID_API_KEY", "TRIPLESEAT_CLIENT_SECRET", "TRIPLESEAT_SIGNING_SECRET")

# Revel ids of the old .env that go into the mapping file's [defaults] (old name -> mapping key).
DEFAULT_IDS = {
    "REVEL_TRIPLESEAT_DINING_OPTION_ID": "dining_option",
    "REVEL_DEFAULT_USER_ID": "revel_user",
    "REVEL_DEFAULT_POS_STATION_ID": "revel_station",
    "REVEL_TRIPLESEAT_PAYMENT_TYPE_ID": "payment_type",
    "REVEL_TRIPLESEAT_DISCOUNT_ID": "discount",
}
NEEDS_NEWER = "(needs tsrevel ≥ the invoice release)"

# Everything the previous connector read; anything else in its .env is listed as unknown.
KNOWN = frozenset(
    {*SECRETS, *DEFAULT_IDS, "TRIPLESEAT_CLIENT_ID", "REVEL_DOMAIN", "TRIPLESEAT_EMAIL_SENDER", "TRIPLESEAT_EMAIL_RECIPIENTS",
     "DRY_RUN", "ENABLE_CONNECTOR", "ALLOWED_LOCATIONS", "TEST_LOCATION_OVERRIDE", "TIMEZONE", "ENV"}
)

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_SUBDOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SITE_DIGITS = 5  # TripleSeat site ids have five digits; location ids are small numbers


@attrs.frozen(kw_only=True)
class LegacyImport:
    """What the import made: the mapping file's text, the variables to set, and what could not be carried."""

    mapping_text: str
    variables: tuple[tuple[str, str], ...]  # (NAME, value) to set as shown
    copy_secrets: tuple[str, ...]  # names to copy from the old .env, values never shown
    not_carried: tuple[str, ...]  # one line each: what, and why
    notes: tuple[str, ...]  # what was translated, for a person to check
    locations: int
    sites: int


class LegacyFileError(ConfigError):
    """An input file that cannot be read as the previous connector's format."""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (``export``, quotes and ``#`` comments as dotenv writes them); a bad line names only its number."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise LegacyFileError(f"{path}: line {number} is not KEY=VALUE")  # the line may hold a secret: not echoed
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        values[name] = value
    return values


def read_locations(path: Path) -> dict[str, Mapping[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LegacyFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise LegacyFileError(f"{path}: expected an object of locations keyed by TripleSeat site or location id")
    return {str(k).strip(): v for k, v in data.items()}


def convert(locations: Mapping[str, Mapping[str, Any]], env: Mapping[str, str] | None, *, mapping_path: str) -> LegacyImport:
    """Translate the old files; raises nothing for odd values: each one lands in not_carried with its reason."""
    env = {k: v.strip() for k, v in (env or {}).items()}
    lost: list[str] = []
    notes: list[str] = []
    venues: dict[str, list[str]] = {"locations": [], "sites": []}
    zones: Counter[str] = Counter()
    site_ids: set[str] = set()
    for key in sorted(locations, key=lambda k: (len(k), k)):
        entry = locations[key]
        if not (key.isascii() and key.isdigit()):
            lost.append(f"locations.json {key!r}: not a TripleSeat id (digits); skipped")
            continue
        key = str(int(key))
        table = "sites" if len(key) >= _SITE_DIGITS else "locations"
        establishment = _int_text(entry.get("revel_establishment"))
        if establishment is None:
            lost.append(f"locations.json {key}: revel_establishment {entry.get('revel_establishment')!r} is not an integer id; skipped")
            continue
        lines = [f"[{table}.{key}]"]
        if isinstance(entry.get("name"), str):
            lines.append(f"name = {_toml_str(entry['name'])}")
        lines.append(f"revel_establishment = {establishment}")
        zone = entry.get("timezone")
        if zone is not None:
            if _zone_ok(zone):
                lines.append(f"timezone = {_toml_str(zone)}")
                zones[zone] += 1
            else:
                lost.append(f"locations.json {key}: timezone {zone!r} is not an IANA name; the [defaults] time zone applies")
        if entry.get("test_establishment") not in (None, ""):
            lost.append(
                f"locations.json {key}: test_establishment {entry['test_establishment']!r}: tsrevel has no location override; "
                "rehearse with DRY_RUN=true or a staging mapping file whose revel_establishment is the test one"
            )
        for extra in sorted(set(entry) - {"name", "revel_establishment", "timezone", "test_establishment"}):
            lost.append(f"locations.json {key}: {extra!r} is not a setting tsrevel knows; skipped")
        venues[table].append("\n".join(lines))
        if table == "sites":
            site_ids.add(key)
        notes.append(f"{key} -> [{table}.{key}] ({'five digits: a TripleSeat site id' if table == 'sites' else 'a TripleSeat location id'})")

    defaults = [f"timezone = {_toml_str(zones.most_common(1)[0][0])}   # the locations' most common time zone"] if zones else []
    defaults += _default_ids(env, lost)
    variables: list[tuple[str, str]] = [("TSREVEL_MAPPING_FILE", mapping_path)]
    copy: list[str] = []
    if env:
        variables += _variables(env, site_ids, set(locations), lost, notes)
        copy = [name for name in SECRETS if env.get(name)]
        lost += _behaviours(env)
        lost += [f"{name}: not a setting of the previous connector that tsrevel knows; not carried" for name in sorted(set(env) - KNOWN)]
    else:
        lost.append("no --env given: REVEL_BASE_URL, the Revel ids, email addresses and ALLOWED_LOCATIONS were not derived")
    lost.append(
        "item matching by name (exact, then fuzzy >= 0.75; unmatched items skipped silently): tsrevel maps products in the "
        "mapping file only; add [products] (menu_item:<id> or the exact name), then `tsrevel check-mapping`; "
        "UNMAPPED_ITEMS=skip orders the mapped items and reports the rest"
    )
    text = _mapping_text(defaults, venues)
    return LegacyImport(
        mapping_text=text,
        variables=tuple(variables),
        copy_secrets=tuple(copy),
        not_carried=tuple(lost),
        notes=tuple(notes),
        locations=len(venues["locations"]),
        sites=len(venues["sites"]),
    )


def _default_ids(env: Mapping[str, str], lost: list[str]) -> list[str]:
    lines = []
    for old, key in DEFAULT_IDS.items():
        raw = env.get(old)
        if not raw:
            if env and key == "dining_option":
                lost.append(f"{old} is not set: tsrevel's default dining option (3) would apply; set [defaults] dining_option")
            continue
        value = _int_text(raw)
        if value is None:
            lost.append(f"{old}={raw!r}: not an integer id; not carried")
        elif _loader_knows(key):
            lines.append(f"{key} = {value}   # {old}")
        else:
            lines.append(f"# {key} = {value}  {NEEDS_NEWER}")
            lost.append(f"{old}: written as a comment in [defaults] ({key}): this tsrevel's mapping file does not know it yet {NEEDS_NEWER}")
    return lines


def _variables(env: Mapping[str, str], site_ids: set[str], keys: set[str], lost: list[str], notes: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    domain = env.get("REVEL_DOMAIN", "")
    host = re.sub(r"^https?://", "", domain).rstrip("/").removesuffix(".revelup.com")
    if domain and _SUBDOMAIN.match(host):
        out.append(("REVEL_BASE_URL", f"https://{host}.revelup.com"))
    elif domain:
        lost.append(f"REVEL_DOMAIN={domain!r}: not a Revel subdomain; set REVEL_BASE_URL=https://<subdomain>.revelup.com yourself")
    if env.get("TRIPLESEAT_CLIENT_ID"):
        out.append(("TRIPLESEAT_CLIENT_ID", env["TRIPLESEAT_CLIENT_ID"]))
    for old, new in (("TRIPLESEAT_EMAIL_RECIPIENTS", "EMAIL_TO"), ("TRIPLESEAT_EMAIL_SENDER", "EMAIL_FROM")):
        value = ",".join(p.strip() for p in re.split(r"[,;]", env.get(old, "")) if p.strip())
        if value:
            try:
                Settings.from_env({new: value})
                out.append((new, value))
            except ConfigError as exc:
                lost.append(f"{old}: {exc}; not carried")
    out.append(("ORDER_ON_STATUSES", "CLOSED"))
    notes.append("ORDER_ON_STATUSES=CLOSED: the previous connector ordered CLOSED events (see docs/migrating.md for DEFINITE)")
    if env.get("ALLOWED_LOCATIONS"):
        entries = []
        for part in (p.strip() for p in env["ALLOWED_LOCATIONS"].split(",")):
            if not part:
                continue
            ident = str(int(part)) if part.isascii() and part.isdigit() else part
            if ident in site_ids:
                entries.append(f"{SITE_PREFIX}{ident}")
                notes.append(f"ALLOWED_LOCATIONS {part} -> {SITE_PREFIX}{ident} (a site in the mapping file)")
            else:
                entries.append(ident)
                if ident not in keys:
                    notes.append(f"ALLOWED_LOCATIONS {part}: not in locations.json; kept as a location id (tsrevel warns at start)")
        try:
            Settings.from_env({"ALLOWED_LOCATIONS": ",".join(entries)})
            out.append(("ALLOWED_LOCATIONS", ",".join(entries)))
        except ConfigError as exc:
            lost.append(f"{exc}; not carried")
    if env.get("ENABLE_CONNECTOR"):
        try:
            Settings.from_env({"ENABLE_CONNECTOR": env["ENABLE_CONNECTOR"]})
            out.append(("ENABLE_CONNECTOR", env["ENABLE_CONNECTOR"]))
        except ConfigError as exc:
            lost.append(f"{exc}; not carried (tsrevel's default is true)")
    out.append(("DRY_RUN", "true"))
    notes.append(
        f"DRY_RUN=true (the old value was {env.get('DRY_RUN') or 'unset'}): run beside the old connector and compare first, "
        "then set DRY_RUN=false at the cut-over (docs/migrating.md)"
    )
    out.append(("REVEL_LEGACY_LOCAL_IDS", LEGACY_TEMPLATE))
    return out


def _behaviours(env: Mapping[str, str]) -> list[str]:
    """What the old connector did that no variable carries, each with tsrevel's nearest equivalent."""
    lost = []
    if env.get("TEST_LOCATION_OVERRIDE"):
        lost.append(
            f"TEST_LOCATION_OVERRIDE={env['TEST_LOCATION_OVERRIDE']}: tsrevel has no location override (test_establishment); "
            "rehearse with DRY_RUN=true, `tsrevel drill`, or a staging mapping file"
        )
    if env.get("TIMEZONE"):
        lost.append(
            f"TIMEZONE={env['TIMEZONE']}: not needed; tsrevel reads each event's local times in its location's time zone "
            "(timezone in the mapping file)"
        )
    if env.get("ENV"):
        lost.append(f"ENV={env['ENV']}: tsrevel has no environment name; staging vs production is DRY_RUN, REVEL_BASE_URL and the mapping file")
    if env.get("TRIPLESEAT_SIGNING_SECRET"):
        lost.append(
            "signature checking was switched off in the previous connector: tsrevel checks X-Signature with "
            "TRIPLESEAT_SIGNING_SECRET, so a wrong key answers 401 to every webhook (check it during the dry run)"
        )
    else:
        lost.append(
            "TRIPLESEAT_SIGNING_SECRET is not set: the previous connector did not check signatures; tsrevel refuses "
            "DRY_RUN=false without it (or TRIPLESEAT_ALLOW_UNSIGNED=true, on purpose)"
        )
    lost.append(
        "the time gate (order only on the event's own day, drop webhooks after local midnight): tsrevel orders when the "
        "status arrives and never drops a delivery; ORDER_WINDOW_HOURS=24 defers an event until 24 h before its start"
    )
    return lost


def _mapping_text(defaults: list[str], venues: Mapping[str, list[str]]) -> str:
    head = [
        "# tsrevel mapping file, written by `tsrevel import-legacy` from the previous connector's locations.json and .env.",
        "# Reference: docs/configuration.md. Review it, then add [products]: the previous connector matched items",
        "# by name; tsrevel maps each product here (menu_item:<id> or the exact display name).",
        "",
        "[defaults]",
        *defaults,
    ]
    body = [block for table in ("locations", "sites") for block in venues[table]]
    return "\n".join(head) + "\n\n" + "\n\n".join(body) + ("\n\n" if body else "") + "[products]\n"


def _loader_knows(key: str) -> bool:
    """Whether this tsrevel's mapping loader accepts the [defaults] key (the invoice release adds some)."""
    try:
        mapping_from_dict({"defaults": {key: 1}})
    except ConfigError:
        return False
    return True


def check_loads(text: str) -> None:
    """The generated text parses and validates as a mapping file; raises ConfigError otherwise."""
    mapping_from_dict(tomllib.loads(text))


def _int_text(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _zone_ok(name: object) -> bool:
    if not isinstance(name, str):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def run_import(locations_path: str, env_path: str | None, out: str, *, echo: Callable[..., None]) -> int:
    """The command: 0 when the mapping file is written, 2 (one line on stderr) when it cannot or must not be."""
    target = Path(out)
    if target.exists():
        echo(f"tsrevel: {out} already exists; not overwriting it (choose another --out)", err=True)
        return 2
    try:
        locations = read_locations(Path(locations_path))
        env = read_env_file(Path(env_path)) if env_path else None
        result = convert(locations, env, mapping_path=out)
        check_loads(result.mapping_text)
        with open(target, "x", encoding="utf-8") as fh:  # "x": never replace a file that appeared meanwhile
            fh.write(result.mapping_text)
    except FileNotFoundError as exc:
        echo(f"tsrevel: {exc.filename}: no such file", err=True)
        return 2
    except FileExistsError:
        echo(f"tsrevel: {out} already exists; not overwriting it (choose another --out)", err=True)
        return 2
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as exc:
        echo(f"tsrevel: import-legacy: {exc}", err=True)
        return 2
    echo(f"Wrote {out}: {result.locations} location(s), {result.sites} site(s); it loads as a tsrevel mapping file.")
    echo("")
    echo("Set these environment variables:")
    for name, value in result.variables:
        echo(f"  {name}={value}")
    for name in result.copy_secrets:
        echo(f"  set {name} from your old .env (same name; the value is not shown)")
    echo("  set TSREVEL_ADMIN_TOKEN to a new random value (16+ characters), e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    if result.notes:
        echo("")
        echo("Translated (check these):")
        for note in result.notes:
            echo(f"  - {note}")
    echo("")
    echo(f"Not carried over ({len(result.not_carried)}):")
    for line in result.not_carried:
        echo(f"  - {line}")
    echo("")
    echo("Next: docs/migrating.md (run beside the old connector with DRY_RUN=true and compare).")
    return 0
