"""`tsrevel serve` runs on uvicorn's fast paths: uvloop and httptools, installed by uvicorn[standard]."""

from __future__ import annotations

import uvicorn

from tsrevel.entrypoints.cli import SERVER_SPEED


async def _app(scope, receive, send):  # noqa: ANN001 - a bare ASGI app; never called
    raise AssertionError("not served")


def config() -> uvicorn.Config:
    cfg = uvicorn.Config(_app, log_config=None, **SERVER_SPEED)
    cfg.load()
    return cfg


def test_the_http_parser_is_httptools():
    assert config().http_protocol_class.__name__ == "HttpToolsProtocol"


def test_the_event_loop_is_uvloop():
    factory = config().get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
