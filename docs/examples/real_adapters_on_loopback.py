"""The real adapters (SQLite, Revel over HTTP, TripleSeat's API, SendGrid) against loopback fakes of those services.

Connector.from_settings builds exactly what the service builds. The webhook here carries no line
items, so tsrevel fetches the event from the TripleSeat API (OAuth 2) before ordering it.
"""

import asyncio
import json
import tempfile
from pathlib import Path

import tsrevel
from tsrevel.testing import sign_body
from tsrevel.testing.servers import FakeRevelServer, FakeSendGridServer, FakeTripleSeatServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "example-signing-secret"


async def main() -> None:
    webhook = json.loads((EXAMPLES / "webhook-definite.json").read_text())
    full_event = webhook["event"]
    bare = {**webhook, "event": {k: v for k, v in full_event.items() if k != "documents"}}  # no line items
    body = json.dumps(bare).encode()

    with (
        FakeRevelServer() as revel,
        FakeTripleSeatServer(events={str(full_event["id"]): full_event}) as tripleseat,
        FakeSendGridServer() as sendgrid,
        tempfile.TemporaryDirectory() as tmp,
    ):
        settings = tsrevel.Settings(
            database_url=f"sqlite:///{tmp}/tsrevel.db",
            mapping_file=str(EXAMPLES / "mapping.toml"),
            dry_run=False,
            signing_secret=SECRET,
            revel_base_url=revel.url, revel_api_key=revel.api_key, revel_api_secret=revel.api_secret,
            tripleseat_api_url=tripleseat.url,
            tripleseat_client_id=tripleseat.client_id, tripleseat_client_secret=tripleseat.client_secret,
            sendgrid_api_key=sendgrid.api_key, sendgrid_api_host=sendgrid.url,
            email_from="tsrevel@example.com", email_to=("ops@example.com",),
        )
        async with tsrevel.Connector.from_settings(settings) as connector:
            outcome = await connector.handle(body, {"X-Signature": sign_body(body, secret=SECRET)})
            print(outcome.state, outcome.order_reference, "Revel id", outcome.revel_order_id)
            assert outcome.ordered and len(revel.orders) == 1
            print("items sent to Revel:", [item["product"] for item in revel.orders[0]["items"]])
            assert len(revel.orders[0]["items"]) == 3  # fetched from TripleSeat

            await connector.drain()
            print("emails:", [mail["subject"] for mail in sendgrid.mails])
            assert len(sendgrid.mails) == 1


if __name__ == "__main__":
    asyncio.run(main())
