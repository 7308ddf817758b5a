"""docs/migrating.md and docs/deployment.md are tested: every `tsrevel ...` command they name parses as written,
and the migration guide covers each step and each behaviour the issue names."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from tests.unit.test_runbook import FENCE, INLINE, parse

DOCS = Path(__file__).resolve().parents[2] / "docs"


def commands(page: str, *, inline: bool) -> list[str]:
    """Every command line of the page's code blocks, and (inline=True) every inline `tsrevel ...` span."""
    text = (DOCS / page).read_text(encoding="utf-8")
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("tsrevel "):
                found.append(line.strip())
    found += [m.group(1) for m in INLINE.finditer(text)] if inline else []
    return list(dict.fromkeys(c.replace("$PORT", "8080") for c in found))


# The migration guide is tested as strictly as the runbook; deployment.md's prose also names commands
# in passing (`tsrevel status`), so only its code blocks are.
COMMANDS = [("migrating.md", c) for c in commands("migrating.md", inline=True)] + [
    ("deployment.md", c) for c in commands("deployment.md", inline=False)
]


def test_the_guide_names_the_commands_of_each_step() -> None:
    used = {shlex.split(c, comments=True)[1] for page, c in COMMANDS if page == "migrating.md"}
    assert {"import-legacy", "check-mapping", "deliveries", "flags", "replay", "reconcile"} <= used


@pytest.mark.parametrize(("page", "command_line"), COMMANDS)
def test_every_command_parses(page: str, command_line: str) -> None:
    try:
        ctx = parse(command_line)
    except click.UsageError as exc:
        pytest.fail(f"docs/{page}: {command_line!r} is refused by the CLI: {exc.format_message()}")
    assert not isinstance(ctx.command, click.Group)


def test_the_guide_explains_each_behaviour_that_differs() -> None:
    text = (DOCS / "migrating.md").read_text(encoding="utf-8")
    table = text.split("## The behaviours that differ", 1)[1]
    for words in ("CLOSED", "DEFINITE", "Time gate", "ORDER_WINDOW_HOURS", "Fuzzy name matching", "UNMAPPED_ITEMS=skip",
                  "`held`", "`skipped`", "`ignored`", "TEST_LOCATION_OVERRIDE"):
        assert words in table, words
    steps = re.findall(r"^## (\d)\. (.+)$", text, re.M)
    assert [n for n, _ in steps] == ["1", "2", "3", "4"]
    assert "REVEL_LEGACY_LOCAL_IDS" in text and "site:" in text


def test_the_deployment_page_has_each_recipe_and_the_backup_command() -> None:
    text = (DOCS / "deployment.md").read_text(encoding="utf-8")
    for heading in ("### Container image", "### docker compose: PostgreSQL and two replicas", "### Render", "### systemd",
                    "## Upgrading", "## Backing up SQLite", "## Sizing PostgreSQL", "## Behind a reverse proxy"):
        assert f"\n{heading}\n" in text, heading
    assert 'sqlite3 var/tsrevel.db ".backup' in text
