"""docs/runbook.md is tested: every `tsrevel ...` command it names is one the CLI accepts as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from tsrevel.entrypoints.cli import main

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)  # list items indent theirs
INLINE = re.compile(r"`(tsrevel [^`]+)`")
OPERATOR_COMMANDS = {
    "status", "flags", "deliveries", "replay", "discard", "forget", "reconcile", "check-mapping",
    "verify", "drill", "audit", "prune",
}


def runbook_commands() -> list[str]:
    """Each tsrevel command of the runbook: from "tsrevel " to the end of its line in fenced blocks
    (continuations joined, so the decision tree counts too), and every inline `tsrevel ...` span."""
    text = RUNBOOK.read_text(encoding="utf-8")
    commands: list[str] = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            start = line.find("tsrevel ")
            if start >= 0:
                commands.append(line[start:].strip())
    commands += [m.group(1) for m in INLINE.finditer(text)]
    return list(dict.fromkeys(commands))


def parse(command_line: str) -> click.Context:
    """Parse a command line down to its leaf command exactly as click would, without running anything."""
    args = shlex.split(command_line, comments=True)
    assert args[0] == "tsrevel", command_line
    ctx = main.make_context("tsrevel", args[1:])
    while isinstance(ctx.command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        name, command, rest = ctx.command.resolve_command(ctx, rest)
        assert command is not None, command_line
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


COMMANDS = runbook_commands()


def test_the_runbook_names_commands_at_all():
    assert len(COMMANDS) >= 30, COMMANDS


@pytest.mark.parametrize("command_line", COMMANDS)
def test_every_runbook_command_parses(command_line):
    try:
        ctx = parse(command_line)
    except click.UsageError as exc:
        pytest.fail(f"docs/runbook.md: {command_line!r} is refused by the CLI: {exc.format_message()}")
    assert not isinstance(ctx.command, click.Group)


def test_every_operator_command_appears_in_the_runbook():
    used = {shlex.split(c, comments=True)[1] for c in COMMANDS}
    assert OPERATOR_COMMANDS <= used, sorted(OPERATOR_COMMANDS - used)
    assert OPERATOR_COMMANDS <= set(main.commands), sorted(OPERATOR_COMMANDS - set(main.commands))


@pytest.mark.parametrize(
    "command_line",
    [
        "tsrevel flags set --disable-connector",  # no --reason
        "tsrevel flags set --disable-connector --reson typo",
        "tsrevel replay --state done --reason x",
        "tsrevel reconcile --from 14/01/2026 --to 2026-01-15",
        "tsrevel no-such-command",
    ],
)
def test_the_parser_used_here_refuses_what_the_cli_refuses(command_line):
    with pytest.raises(click.UsageError):
        parse(command_line)


def test_the_mutating_commands_in_the_runbook_all_give_a_reason():
    mutating = [c for c in COMMANDS if shlex.split(c, comments=True)[1:3] in (["flags", "set"], ["flags", "reset"])
                or shlex.split(c, comments=True)[1] in ("replay", "discard", "forget")]
    assert mutating
    for command_line in mutating:
        assert parse(command_line).params["reason"], command_line


def test_every_url_the_runbook_curls_is_a_route_of_the_service(tmp_path):
    from tsrevel.entrypoints.container import build_container
    from tsrevel.entrypoints.http import create_app
    from tsrevel.entrypoints.settings import Settings

    app = create_app(build_container(Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}")), run_worker=False, configure_logs=False)
    routes = {(method, route.path) for route in app.routes for method in getattr(route, "methods", ())}
    curls = [line for block in FENCE.findall(RUNBOOK.read_text(encoding="utf-8")) for line in block.splitlines() if line.strip().startswith("curl ")]
    assert len(curls) >= 4
    for line in curls:
        args = shlex.split(line)
        method = args[args.index("-X") + 1] if "-X" in args else "GET"
        url = next(a for a in args if a.startswith("$TSREVEL_URL/"))
        path = url.removeprefix("$TSREVEL_URL")
        assert (method, path) in routes, f"docs/runbook.md: {method} {path} is not a route of the service"
