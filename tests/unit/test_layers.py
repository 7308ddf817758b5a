"""Arrows point inward: no module under testing/ or adapters/ imports an entrypoint (STYLE.md point 9)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.test_domain_purity import imported_modules

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "tsrevel"
INNER_FILES = sorted([*(PACKAGE / "testing").rglob("*.py"), *(PACKAGE / "adapters").rglob("*.py"), PACKAGE / "bootstrap.py"])


def reaches_an_entrypoint(module: str) -> bool:
    """An absolute import of tsrevel.entrypoints (or the old tsrevel.connector), or a relative one that climbs to them."""
    return (
        module in ("tsrevel.entrypoints", "tsrevel.connector")
        or module.startswith(("tsrevel.entrypoints.", "tsrevel.connector."))
        or (module.startswith("..") and module.lstrip(".").split(".")[0] in ("entrypoints", "connector"))
    )


class TestArrowsPointInward:
    def test_there_are_inner_modules_to_check(self) -> None:
        names = {path.relative_to(PACKAGE).as_posix() for path in INNER_FILES}
        assert {"testing/__init__.py", "testing/servers.py", "adapters/fakes.py", "adapters/metering.py", "bootstrap.py"} <= names

    @pytest.mark.parametrize("path", INNER_FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
    def test_an_inner_module_imports_no_entrypoint(self, path: Path) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = [f"{path.name}:{line}: {module}" for line, module in imported_modules(tree) if reaches_an_entrypoint(module)]
        assert found == []

    @pytest.mark.parametrize(
        "source",
        [
            "from tsrevel.entrypoints.settings import Settings",
            "import tsrevel.entrypoints.container",
            "from tsrevel.connector import Connector",
            "from ..entrypoints import http",
            "import importlib\nimportlib.import_module('tsrevel.entrypoints.cli')",
        ],
    )
    def test_the_checker_catches_an_entrypoint_import(self, source: str) -> None:
        assert [m for _, m in imported_modules(ast.parse(source)) if reaches_an_entrypoint(m)]

    @pytest.mark.parametrize("source", ["from tsrevel.domain.ports import Store", "from tsrevel.adapters.fakes import FakeRevel", "import tsrevel"])
    def test_the_checker_lets_an_inward_import_pass(self, source: str) -> None:
        assert not [m for _, m in imported_modules(ast.parse(source)) if reaches_an_entrypoint(m)]
