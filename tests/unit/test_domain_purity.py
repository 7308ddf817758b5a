"""The domain stays pure: standard library and attrs only, and no environment reads (STYLE.md point 1)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "src" / "tsrevel" / "domain"
DOMAIN_FILES = sorted(DOMAIN.glob("*.py"))
ALLOWED_THIRD_PARTY = {"attrs"}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import stays inside tsrevel.domain only if it does not climb out
                found.append((node.lineno, "tsrevel.domain" if node.level == 1 else "." * node.level + (node.module or "")))
            else:
                found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in ("__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
                found.append((node.lineno, str(node.args[0].value)))
    return found


def allowed(module: str) -> bool:
    top = module.split(".")[0]
    if module == "tsrevel.domain" or module.startswith("tsrevel.domain."):
        return True
    return top in ALLOWED_THIRD_PARTY or (top in sys.stdlib_module_names and top != "tsrevel")


def environment_reads(tree: ast.AST) -> list[int]:
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "putenv"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
            lines.append(node.lineno)
        elif isinstance(node, ast.alias) and node.name in ("environ", "getenv"):
            lines.append(getattr(node, "lineno", 0))
    return lines


class TestDomainPurity:
    def test_there_are_domain_modules_to_check(self) -> None:
        names = {path.name for path in DOMAIN_FILES}
        assert {"events.py", "mapping.py", "safety.py", "signature.py"} <= names

    @pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: p.name)
    def test_a_domain_module_imports_only_the_standard_library_attrs_and_the_domain(self, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        forbidden = [f"{path.name}:{line}: {module}" for line, module in imported_modules(tree) if not allowed(module)]
        assert forbidden == []

    @pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: p.name)
    def test_a_domain_module_never_reads_the_environment(self, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        assert environment_reads(tree) == [], f"{path.name} reads the environment"


class TestTheCheckerItself:
    @pytest.mark.parametrize(
        "source",
        [
            "import httpx",
            "from litestar import Litestar",
            "import sendgrid.helpers",
            "from tsrevel.adapters import fakes",
            "from tsrevel.entrypoints.settings import Settings",
            "from .. import adapters",
            "import importlib\nimportlib.import_module('httpx')",
            "__import__('dependency_injector')",
        ],
    )
    def test_a_forbidden_import_is_caught(self, source: str) -> None:
        assert [m for _, m in imported_modules(ast.parse(source)) if not allowed(m)]

    @pytest.mark.parametrize(
        "source",
        ["import os\nos.environ['X']", "import os\nos.getenv('X')", "from os import environ", "from os import getenv"],
    )
    def test_an_environment_read_is_caught(self, source: str) -> None:
        assert environment_reads(ast.parse(source))

    @pytest.mark.parametrize(
        "source",
        ["import attrs", "from decimal import Decimal", "from tsrevel.domain.errors import PayloadError", "from . import ids"],
    )
    def test_an_allowed_import_passes(self, source: str) -> None:
        assert all(allowed(m) for _, m in imported_modules(ast.parse(source)))
