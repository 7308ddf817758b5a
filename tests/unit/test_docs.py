"""The documentation is tested: examples run, pages show them verbatim, links resolve, commands and settings exist."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tsrevel.entrypoints.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")

# What each example must print: proof that it ran to the end, not just that it exited 0.
EXPECTED_OUTPUT = {
    "embed_in_20_lines.py": "(200, {'status': 'accepted', 'state': 'dry_run', 'order': None})",
    "explicit_adapters.py": "['[tsrevel] Revel order created for TripleSeat event 55521609']",
    "preview_mapping.py": "invalid payload: event.guest_count - is not a number",
    "asgi_endpoint.py": "401 {'error': 'missing or invalid X-Signature'}",
    "real_adapters_on_loopback.py": "emails: ['[tsrevel] Revel order created for TripleSeat event 55521609']",
    "rehearse_an_outage.py": "[tsrevel] CHANGED after ordering: TripleSeat event 55521609 (Ponder family brunch)",
    "order_window.py": "done tripleseat-55521609 guests: 55",
}


def offline_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: the defaults of docs/configuration.md, a private database, and every
    proxy pointed at a closed loopback port so that any attempt to leave the machine fails."""
    dead_end = "http://127.0.0.1:9"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TSREVEL_DATABASE_URL": f"sqlite:///{tmp_path / 'example.db'}",
        "HTTP_PROXY": dead_end, "HTTPS_PROXY": dead_end, "ALL_PROXY": dead_end,
        "http_proxy": dead_end, "https_proxy": dead_end, "all_proxy": dead_end,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }


class TestExamples:
    def test_every_example_has_its_expected_output_listed(self):
        assert {p.name for p in EXAMPLES} == set(EXPECTED_OUTPUT)

    @pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
    def test_it_runs_offline_from_the_repository_root(self, example, tmp_path):
        result = subprocess.run(
            [sys.executable, str(example)], cwd=ROOT, env=offline_env(tmp_path), capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{example.name} failed:\n{result.stdout}\n{result.stderr}"
        assert EXPECTED_OUTPUT[example.name] in result.stdout.splitlines(), result.stdout

    def test_the_newcomer_example_is_about_twenty_lines(self):
        code = [
            line for line in (DOCS / "examples" / "embed_in_20_lines.py").read_text().splitlines()
            if line.strip() and not line.strip().startswith(("#", '"""'))
        ]
        assert len(code) <= 22, f"{len(code)} lines of code"

    def test_the_newcomer_example_uses_only_the_public_api(self):
        text = (DOCS / "examples" / "embed_in_20_lines.py").read_text()
        imports = re.findall(r"^(?:from|import) (tsrevel[\w.]*)", text, re.M)
        assert set(imports) <= {"tsrevel", "tsrevel.testing"}, imports


def python_blocks(page: Path) -> list[tuple[str, str]]:
    """(the line just before the block, the block's code) for each ```python block."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = [line for line in text[: match.start()].splitlines() if line.strip()]
        blocks.append((before[-1] if before else "", match.group(2)))
    return blocks


class TestLibraryPage:
    def test_every_python_block_is_an_example_file_shown_verbatim(self):
        blocks = python_blocks(DOCS / "library.md")
        assert len(blocks) >= 6
        for intro, code in blocks:
            named = re.search(r"\(examples/([\w.]+\.py)\)", intro)
            assert named, f"a python block in library.md is not introduced by its file's link: {intro!r}"
            source = (DOCS / "examples" / named.group(1)).read_text(encoding="utf-8")
            assert code == source, f"library.md shows docs/examples/{named.group(1)} differently from the file"

    def test_every_example_file_is_shown_on_the_page(self):
        shown = {re.search(r"\(examples/([\w.]+\.py)\)", intro).group(1) for intro, _ in python_blocks(DOCS / "library.md")}  # type: ignore[union-attr]
        assert shown == {p.name for p in EXAMPLES}

    def test_the_reference_names_every_public_name(self):
        import tsrevel

        reference = (DOCS / "library.md").read_text(encoding="utf-8").split("## Reference", 1)[1]
        missing = [name for name in tsrevel.__all__ if name not in reference]
        assert missing == []

    def test_every_connector_method_is_in_the_reference(self):
        import tsrevel

        reference = (DOCS / "library.md").read_text(encoding="utf-8").split("## Reference", 1)[1]
        public = [name for name in vars(tsrevel.Connector) if not name.startswith("_")]
        assert [name for name in public if f".{name}" not in reference and f"{name}(" not in reference] == []


def test_the_readme_python_snippet_runs(tmp_path):
    blocks = [code for _, code in python_blocks(ROOT / "README.md")]
    assert blocks, "README.md has no python block any more: drop this test"
    for code in blocks:
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=offline_env(tmp_path), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "RevelOrder(" in result.stdout


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        found += [(page, target) for target in LINK.findall(text) if not re.match(r"^[a-z]+:", target)]
    return found


class TestLinks:
    def test_the_pages_link_to_each_other_at_all(self):
        assert len(links()) >= 30

    @pytest.mark.parametrize(("page", "target"), links(), ids=[f"{p.name}->{t}" for p, t in links()])
    def test_every_relative_link_resolves(self, page, target):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        assert destination.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
        if anchor and destination.suffix == ".md":
            assert anchor in anchors(destination), f"{page.relative_to(ROOT)} links to {target}: no such heading"


class TestPages:
    def test_the_index_draws_the_hexagon_and_links_every_page(self):
        index = (DOCS / "index.md").read_text(encoding="utf-8")
        picture = [code for lang, code in FENCE.findall(index) if lang == "text"]
        assert picture and all(word in picture[0] for word in ("domain", "adapters", "ports", "Revel", "TripleSeat", "SendGrid"))
        for page in ("quickstart.md", "configuration.md", "architecture.md", "library.md", "runbook.md", "reliability.md"):
            assert f"]({page})" in index, page

    def test_the_readme_points_at_the_index(self):
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        assert "](docs/index.md)" in readme.split("## Where to read next", 1)[1]

    def test_every_setting_has_a_row_in_the_configuration_reference(self):
        reference = (DOCS / "configuration.md").read_text(encoding="utf-8")
        missing = [name for name, _ in Settings().describe() if f"`{name}`" not in reference]
        assert missing == []

    def test_the_architecture_names_every_delivery_state(self):
        from tsrevel.domain import deliveries

        text = (DOCS / "architecture.md").read_text(encoding="utf-8").split("## The delivery state machine", 1)[1]
        assert [s for s in deliveries.STATES if f"`{s}`" not in text] == []

    def test_the_architecture_names_every_module(self):
        text = (DOCS / "architecture.md").read_text(encoding="utf-8")
        modules = [p.stem for p in (ROOT / "src" / "tsrevel").glob("*/*.py") if p.stem != "__init__"]
        assert [m for m in modules if f"{m}.py" not in text and f"`{m}`" not in text] == []


def quickstart_commands() -> list[str]:
    text = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    commands = []
    for lang, block in FENCE.findall(text):
        if lang == "sh":
            commands += [line.strip() for line in block.splitlines() if line.strip()]
    return commands


class TestQuickstart:
    def test_every_tsrevel_command_is_one_the_cli_accepts(self):
        from tsrevel.entrypoints.cli import main

        tsrevel_lines = [c for c in quickstart_commands() if ".venv/bin/tsrevel " in c]
        tsrevel_lines += re.findall(r"`(tsrevel [^`]+)`", (DOCS / "quickstart.md").read_text(encoding="utf-8"))
        assert len(tsrevel_lines) >= 5
        for line in tsrevel_lines:
            args = shlex.split(line[line.index("tsrevel ") :])[1:]
            ctx = main.make_context("tsrevel", args)
            while isinstance(ctx.command, click.Group):
                name, command, rest = ctx.command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
                assert command is not None, line
                ctx = command.make_context(name, rest, parent=ctx)
            assert not isinstance(ctx.command, click.Group), line

    def test_every_url_is_a_route_of_the_service_and_every_file_exists(self, tmp_path):
        from tsrevel.entrypoints.container import build_container
        from tsrevel.entrypoints.http import create_app

        app = create_app(build_container(Settings(database_url=f"sqlite:///{tmp_path / 'q.db'}")), run_worker=False, configure_logs=False)
        routes = {route.path for route in app.routes}
        curls = [c for c in quickstart_commands() if c.startswith("curl ")]
        assert len(curls) >= 5
        for line in curls:
            (path,) = re.findall(r"http://127\.0\.0\.1:8080(/[\w/]*)", line)
            assert re.sub(r"/\d+$", "/{delivery_id:int}", path) in routes, line
            for file in re.findall(r"@([\w./-]+)", line):
                assert (ROOT / file).exists(), line
        assert (ROOT / "examples" / "webhook-definite.json").exists()
