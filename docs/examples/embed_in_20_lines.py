"""tsrevel embedded in about 20 lines: the function your web framework's POST route calls."""

import asyncio
import os
import sys
from pathlib import Path

import tsrevel
from tsrevel.testing import sign_body  # only to play TripleSeat in main() below


async def on_tripleseat_webhook(connector: tsrevel.Connector, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """Give it the raw request body and headers; answer TripleSeat with what it returns."""
    try:
        outcome = await connector.handle(body, headers)  # verify, store, process now
    except tsrevel.SignatureError:
        return 401, {"error": "bad signature"}  # nothing was stored
    return 200, {"status": outcome.status, "state": outcome.state, "order": outcome.order_reference}


async def main(path: str) -> None:
    body = Path(path).read_bytes()
    secret = os.environ.get("TRIPLESEAT_SIGNING_SECRET")
    headers = {"X-Signature": sign_body(body, secret=secret)} if secret else {}
    async with tsrevel.Connector.from_env() as connector:  # configured like the service
        print(await on_tripleseat_webhook(connector, body, headers))
        await connector.drain()  # send the queued emails, run retries that are due


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "examples/webhook-definite.json"))
