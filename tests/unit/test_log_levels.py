"""Library loggers that would flood or leak are held at WARNING by configure_logging, even at INFO or DEBUG."""

from __future__ import annotations

import io
import logging

import pytest

from tsrevel.entrypoints.logs import configure_logging


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in ("psycopg.pool", "httpx")})
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_the_connection_pool_says_nothing_per_store_call(level: str) -> None:
    stream = io.StringIO()
    logging.getLogger("psycopg.pool").setLevel(logging.NOTSET)
    configure_logging(level=level, fmt="json", secrets=(), stream=stream)
    logging.getLogger("psycopg.pool").info("connection given by 'pool-1'")
    logging.getLogger("tsrevel.test").info("ours")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "ours" in lines[0]
    logging.getLogger("psycopg.pool").warning("pool-1: connection failed")
    assert "connection failed" in stream.getvalue()  # its warnings still reach the log
