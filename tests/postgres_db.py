"""The PostgreSQL server tests use (TSREVEL_TEST_POSTGRES_URL), and scratch schemas that are dropped after use.

Outside CI an unset variable skips the PostgreSQL tests with the reason; under CI=true an unset
variable or an unreachable server fails them, since there they must run.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

ENV = "TSREVEL_TEST_POSTGRES_URL"
SCHEMA_PREFIX = "tsrevel_test_"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


@functools.cache
def _unreachable(url: str) -> str | None:
    """Why the server cannot be used, or None; asked once per test run."""
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def postgres_url() -> str:
    """The test server's URL; skips (outside CI) or fails (under CI=true) when there is none to use."""
    url = os.environ.get(ENV, "").strip()
    in_ci = _truthy(os.environ.get("CI"))
    if not url:
        if in_ci:
            pytest.fail(f"{ENV} is not set; under CI=true the PostgreSQL tests must run (.ci/run sets it)")
        pytest.skip(f"{ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test); PostgreSQL tests skipped")
    problem = _unreachable(url)
    if problem is not None:
        # The variable was set on purpose: an unreachable server is a failure, in CI or not.
        pytest.fail(f"{ENV} is set but the server cannot be used: {problem}")
    return url


def new_schema_name() -> str:
    return f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:16]}"


def create_schema(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))


def drop_schema(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def url_with_search_path(url: str, schema: str) -> str:
    """The URL with libpq's ``options=-csearch_path=<schema>``, the way an operator would write it."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}', safe='')}"


@contextmanager
def scratch_schema(url: str) -> Iterator[str]:
    """A fresh, empty schema, dropped with everything in it afterwards."""
    name = new_schema_name()
    create_schema(url, name)
    try:
        yield name
    finally:
        drop_schema(url, name)
