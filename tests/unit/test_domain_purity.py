"""The domain stays pure: standard library and attrs only, and no environment reads (STYLE.md point 1)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "src" / "tsrevel" / "domain"
DOMAIN_FILES = sorted(DOMAIN.rglob("*.py"))  # the subpackages too (domain/processing/)
ALLOWED_THIRD_PARTY = {"attrs"}


def module_id(path: Path) -> str:
    """The path relative to the domain folder, so that two __init__.py files get two ids."""
    return path.relative_to(DOMAIN).as_posix()


def imported_modules(tree: ast.AST, package: str = "tsrevel.domain") -> list[tuple[int, str]]:
    """Every module the tree imports, a relative import resolved against package (the module's own)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import stays inside tsrevel.domain only if it does not climb out
                found.append((node.lineno, resolve_relative(package, node.level, node.module)))
            else:
                found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in ("__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
                found.append((node.lineno, str(node.args[0].value)))
    return found


def resolve_relative(package: str, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in package; dots kept when it climbs above the top."""
    parts = package.split(".")
    if level - 1 >= len(parts):  # above tsrevel itself: never allowed
        return "." * level + (module or "")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def package_of(path: Path) -> str:
    """The package a domain file's relative imports are resolved against."""
    return ".".join(("tsrevel", "domain", *path.relative_to(DOMAIN).parent.parts))


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
        names = {module_id(path) for path in DOMAIN_FILES}
        assert {"events.py", "mapping.py", "safety.py", "signature.py"} <= names
        assert {"processing/__init__.py", "processing/delivery_pass.py"} <= names  # the subpackages are walked

    @pytest.mark.parametrize("path", DOMAIN_FILES, ids=module_id)
    def test_a_domain_module_imports_only_the_standard_library_attrs_and_the_domain(self, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = imported_modules(tree, package_of(path))
        forbidden = [f"{module_id(path)}:{line}: {module}" for line, module in imports if not allowed(module)]
        assert forbidden == []

    @pytest.mark.parametrize("path", DOMAIN_FILES, ids=module_id)
    def test_a_domain_module_never_reads_the_environment(self, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        assert environment_reads(tree) == [], f"{module_id(path)} reads the environment"


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

    def test_a_relative_import_in_a_subpackage_is_resolved_against_it(self) -> None:
        package = "tsrevel.domain.processing"
        assert [m for _, m in imported_modules(ast.parse("from ..ids import delivery_key"), package)] == ["tsrevel.domain.ids"]
        assert [m for _, m in imported_modules(ast.parse("from . import intake"), package)] == [package]
        climbing = [m for _, m in imported_modules(ast.parse("from ... import adapters"), package)]
        assert climbing == ["tsrevel"] and not allowed(climbing[0])
