"""The reference for P1: a bare Litestar app that reads the body and answers, served exactly as tsrevel is.

`python -m bench.echo_app --port N` calls uvicorn.run with the same arguments as `tsrevel serve`
(one process, default loop, the h11 parser and the connection limits, no access log), so the ratio in P1 is our
code's cost, not the server's.
"""

from __future__ import annotations

import argparse

import uvicorn
from litestar import Litestar, Request, get, post

from tsrevel.entrypoints.http import uvicorn_options
from tsrevel.entrypoints.settings import Settings


@post(["/webhooks/tripleseat", "/webhook"], status_code=200)
async def echo(request: Request) -> dict[str, object]:
    body = await request.body()
    # An answer of the same shape and size as tsrevel's, so both send the same bytes back.
    return {"status": "accepted", "delivery_id": len(body), "correlation_id": "echo-0123456789abcdef"}


@get("/ready")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[echo, ready], openapi_config=None, logging_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, **uvicorn_options(Settings()))


if __name__ == "__main__":
    main()
