"""Test-suite wide setup: the Hypothesis profiles (``ci`` under CI, else ``dev``; HYPOTHESIS_PROFILE wins)."""

from __future__ import annotations

import os

from hypothesis import settings

# deadline=None: a busy shared machine must not turn a slow example into a failure.
settings.register_profile("ci", deadline=None, max_examples=200, print_blob=True, derandomize=False)
settings.register_profile("dev", deadline=None, max_examples=100)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _truthy(os.environ.get("CI")) else "dev"))
