"""Preview what a webhook would become in Revel, with no store, no call and no email: Connector.map."""

import json
from pathlib import Path

import tsrevel
from tsrevel.testing import FakeRevel, MemoryStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def main() -> None:
    connector = tsrevel.Connector(store=MemoryStore(), revel=FakeRevel(), mapping=EXAMPLES / "mapping.toml")

    order = connector.map((EXAMPLES / "webhook-definite.json").read_bytes())  # raw bytes or a decoded dict
    assert isinstance(order, tsrevel.RevelOrder)
    print(order.local_id, "at establishment", order.establishment_id, "pickup", order.pickup_time, "total", order.total)
    for line in order.items:
        print(f"  {line.quantity} x {line.name} -> Revel product {line.product_id} @ {line.price}")

    # The whole invoice: discount, billing details, counted payments, what remains due.
    invoice = connector.map((EXAMPLES / "webhook-invoice.json").read_bytes())
    assert isinstance(invoice, tsrevel.RevelOrder)
    assert invoice.final_total == invoice.grand_total
    print(invoice.arithmetic)
    for payment in invoice.payments:
        print(f"  paid {payment.amount} ({payment.transaction_id}); remaining due {invoice.remaining_due}")

    failure = connector.map(json.loads((EXAMPLES / "webhook-unmapped.json").read_text()))
    assert isinstance(failure, tsrevel.MappingFailure)
    print("cannot map:", failure.describe())

    try:
        connector.map(b'{"webhook_trigger_type": "CREATE_EVENT", "event": {"id": 1, "guest_count": "many"}}')
    except tsrevel.PayloadError as exc:
        print("invalid payload:", exc.path, "-", exc.problem)


if __name__ == "__main__":
    main()
