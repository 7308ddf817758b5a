"""Fixtures for browser tests: Debian's chromium driven by Playwright, against the service as a subprocess.

Never `playwright install` (it downloads from a host CI cannot reach): the browser is the `chromium`
on PATH (`.ci/run` installs Debian's package when it is missing). Under CI=true a missing chromium
fails the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import fake_revel, fake_sendgrid, service_env, start_service  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


@pytest.fixture
def chromium() -> Iterator[Any]:
    # Per test, not per session: Playwright's sync API runs an event loop in this thread while it
    # is open, which would break the asyncio tests that run after it in the same process.
    executable = shutil.which("chromium")
    if executable is None:
        if _truthy(os.environ.get("CI")):
            pytest.fail("chromium is not on PATH: under CI the browser tests must run (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium); the browser tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the tests put their screenshots: docs/images/ with TSREVEL_UPDATE_SCREENSHOTS=1, else a scratch directory."""
    if _truthy(os.environ.get("TSREVEL_UPDATE_SCREENSHOTS")):
        IMAGES.mkdir(parents=True, exist_ok=True)
        return IMAGES
    return tmp_path
