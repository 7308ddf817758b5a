"""Readers for the deployment recipes (Dockerfile, docker-compose.yml, render.yaml, deploy/): shared by their tests.

No container runtime can run here (no daemon, and no registry to pull the base image from), so the
recipes are checked by reading them and by running their entry commands as plain processes.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import attrs
import yaml

ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class Instruction:
    keyword: str  # upper case: FROM, RUN, CMD, ...
    args: str  # the rest of the logical line, continuations joined


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[Instruction]:
    """The Dockerfile's instructions, comments dropped and backslash continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list, e.g. CMD's."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    """The variables the image sets with ENV (KEY=value form)."""
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', ins.args):
                env[key] = value.strip('"')
    return env


def compose(path: Path = ROOT / "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def substitute(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${NAME:-default} / ${NAME} interpolation, from env (empty by default)."""
    env = env or {}

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        return env.get(name) or (default if default is not None else "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one, value)


def render(path: Path = ROOT / "render.yaml") -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def render_commented_variant(path: Path = ROOT / "render.yaml") -> dict[str, Any]:
    """The commented PostgreSQL variant at the end of render.yaml, uncommented and parsed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index("# services:")
    return yaml.safe_load("\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[start:]))


def systemd_unit(path: Path = ROOT / "deploy" / "tsrevel.service") -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def expand_systemd(command: str, env: dict[str, str]) -> str:
    """systemd's ${NAME} expansion in ExecStart."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), command)
