"""`tsrevel serve` runs on uvloop (uvicorn[standard]) and keeps uvicorn's h11 parser, whose header-size limit holds."""

from __future__ import annotations

import uvicorn

from tsrevel.entrypoints.http import uvicorn_options
from tsrevel.entrypoints.settings import Settings


async def _app(scope, receive, send):  # noqa: ANN001 - a bare ASGI app; never called
    raise AssertionError("not served")


def config() -> uvicorn.Config:
    cfg = uvicorn.Config(_app, **uvicorn_options(Settings.from_env({})))
    cfg.load()
    return cfg


def test_the_http_parser_is_h11_whose_header_limit_is_set():
    # httptools is faster (docs/performance.md, round 2) but ignores h11_max_incomplete_event_size,
    # the slow-header bound of the hardening work: the limit wins over the speed.
    cfg = config()
    assert cfg.http_protocol_class.__name__ == "H11Protocol"
    assert cfg.h11_max_incomplete_event_size == Settings.from_env({}).max_header_bytes


def test_the_event_loop_is_uvloop():
    factory = config().get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
