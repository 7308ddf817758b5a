"""A webhook route in your own ASGI app (no framework needed), served by uvicorn; the app's lifespan opens and closes the connector."""

import asyncio
import json
from pathlib import Path

import httpx
import uvicorn

import tsrevel
from tsrevel.testing import FakeRevel, MemoryStore, sign_body

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "example-signing-secret"


def make_app(connector: tsrevel.Connector):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await connector.open()  # the store and HTTP clients, once
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await connector.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:  # keep the raw bytes: the signature is over them, so never re-serialise the JSON
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            outcome = await connector.handle(body, headers)
            status, answer = 200, {"status": outcome.status, "delivery_id": outcome.delivery_id, "state": outcome.state}
        except tsrevel.SignatureError:
            status, answer = 401, {"error": "missing or invalid X-Signature"}
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    return app


async def main() -> None:
    revel = FakeRevel()
    connector = tsrevel.Connector(
        store=MemoryStore(), revel=revel, mapping=EXAMPLES / "mapping.toml",
        settings=tsrevel.Settings(dry_run=False, signing_secret=SECRET),
    )
    server = uvicorn.Server(uvicorn.Config(make_app(connector), host="127.0.0.1", port=0, lifespan="on", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    for _ in range(500):  # wait (at most 10 s) for the server to listen
        if server.started:
            break
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]

    body = (EXAMPLES / "webhook-definite.json").read_bytes()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
        good = await client.post("/webhooks/tripleseat", content=body, headers={"X-Signature": sign_body(body, secret=SECRET)})
        bad = await client.post("/webhooks/tripleseat", content=body, headers={"X-Signature": "0" * 64})
    server.should_exit = True
    await serving
    print(good.status_code, good.json())
    print(bad.status_code, bad.json())
    assert good.status_code == 200 and good.json()["state"] == "done" and bad.status_code == 401
    assert len(revel.created) == 1


if __name__ == "__main__":
    asyncio.run(main())
