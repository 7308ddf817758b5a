"""A Connector built from adapters you pass in: here the in-memory fakes tsrevel ships; swap in real ones."""

import asyncio
from pathlib import Path

import tsrevel
from tsrevel.testing import FakeMailer, FakeRevel, MemoryStore, sign_body

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "example-signing-secret"


async def main() -> None:
    revel, mailer = FakeRevel(), FakeMailer()
    connector = tsrevel.Connector(
        store=MemoryStore(),
        revel=revel,
        mailer=mailer,
        mapping=EXAMPLES / "mapping.toml",  # or a MappingConfig, or the decoded TOML as a dict
        settings=tsrevel.Settings(dry_run=False, signing_secret=SECRET, email_to=("ops@example.com",)),
    )
    body = (EXAMPLES / "webhook-definite.json").read_bytes()
    signed = {"X-Signature": sign_body(body, secret=SECRET)}
    async with connector:
        outcome = await connector.handle(body, signed)
        print(outcome.status, outcome.state, outcome.order_reference, outcome.revel_order_id)
        assert outcome.ordered and [o.local_id for o in revel.created] == ["tripleseat-55521609"]

        again = await connector.handle(body, signed)  # TripleSeat re-sends: same body, same delivery
        print(again.status, again.delivery_id == outcome.delivery_id, len(revel.created))
        assert again.status == "duplicate" and len(revel.created) == 1

        try:
            await connector.handle(body, {"X-Signature": "0" * 64})
        except tsrevel.SignatureError as exc:
            print("refused:", exc)

        await connector.drain()  # the outbox: one "order created" email
        print([m.subject for m in mailer.sent])
        assert [m.kind for m in mailer.sent] == ["order_created"]


if __name__ == "__main__":
    asyncio.run(main())
