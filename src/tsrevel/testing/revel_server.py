"""FakeRevelServer: plays Revel's REST API on loopback (Tastypie lists, OrderAllInOne creates), for integration tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from tsrevel.adapters.fake_parts import forwarded
from tsrevel.adapters.fake_revel import RefusedOrder, revel_shows
from tsrevel.testing.exchanges import RecordedRequest, Reply, trailing_int
from tsrevel.testing.loopback import Loopback, started, stopped

# Tastypie-style lists: meta.next/previous, limit and offset.
MAX_LIMIT = 1000


def _tastypie_page(request: RecordedRequest, objects: list[dict[str, Any]], default_limit: int) -> Reply:
    """One page of a Tastypie list with meta.next/previous, honouring limit and offset."""
    try:
        limit = int(request.param("limit") or default_limit)
        offset = int(request.param("offset") or 0)
    except ValueError:
        return Reply.json(400, {"error": "Invalid limit or offset provided."})
    if limit < 0 or offset < 0:
        return Reply.json(400, {"error": "Invalid limit or offset provided."})
    limit = MAX_LIMIT if limit == 0 else min(limit, MAX_LIMIT)
    total = len(objects)
    query = {k: v[0] for k, v in request.query.items()}

    def link(new_offset: int) -> str:
        return f"{request.path}?{urlencode({**query, 'limit': limit, 'offset': new_offset})}"

    meta = {
        "limit": limit,
        "offset": offset,
        "total_count": total,
        "next": link(offset + limit) if offset + limit < total else None,
        "previous": link(max(0, offset - limit)) if offset > 0 else None,
    }
    return Reply.json(200, {"meta": meta, "objects": objects[offset : offset + limit]})


# ---- Revel -------------------------------------------------------------------------------------

# Kept on the fake's stored order for tests, but not part of Revel's Order object.
_NOT_LISTED = ("orderInfo", "items", "payments", "history")


class FakeRevelServer:
    """Plays Revel: Tastypie lists of orders, establishments and products, and OrderAllInOne creates.

    ``create_answer`` picks how a create is answered: ``"body"`` (201, the order in the body and
    a Location header) or ``"location"`` (201, an empty body, the id only in Location).
    """

    def __init__(
        self,
        *,
        api_key: str = "revel-test-key",
        api_secret: str = "revel-test-secret",
        establishments: Iterable[tuple[int, str]] = ((4, "Tropicana"),),
        products: Mapping[int, Iterable[tuple[int, str]]] | None = None,
        page_size: int = 20,
        create_answer: str = "body",
        first_id: int = 5001,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.establishments = list(establishments)
        self.products = {est: list(items) for est, items in (products or {4: [(579, "OG - Glazed raised ring")]}).items()}
        self.page_size = page_size
        self.create_answer = create_answer
        self._first_id = first_id
        self._ids = itertools.count(first_id)
        self._orders: list[dict[str, Any]] = []
        self._http = Loopback(self._route, forget=self._forget)

    def _forget(self) -> None:
        """clear() forgets the orders too; keys, establishments and products stay."""
        self._orders.clear()
        self._ids = itertools.count(self._first_id)

    # Revel's state

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every stored order (duplicates included), as Revel would list it, plus its orderInfo and items."""
        with self._http.lock:
            return [dict(order) for order in self._orders]

    def add_order(
        self, local_id: str, *, establishment_id: int = 4, created_date: str | None = None, final_total: str | None = None
    ) -> int:
        """Store an order as if created earlier (by hand in Revel: any final_total); returns its id."""
        with self._http.lock:
            info = {"establishment": f"/enterprise/Establishment/{establishment_id}/", "local_id": local_id}
            order = self._store(info, [], created_date)
            if final_total is not None:
                order["final_total"] = final_total
            return order["id"]

    def edit_order(self, order_id: int, **fields: Any) -> None:
        """Change a stored order's fields as someone editing it in Revel's back office would (``final_total="400.00"``)."""
        with self._http.lock:
            for order in self._orders:
                if order["id"] == order_id:
                    order.update(fields)
                    return
        raise KeyError(f"no order {order_id}")

    @property
    def auth(self) -> str:
        return f"{self.api_key}:{self.api_secret}"

    def _store(
        self, info: Mapping[str, Any], items: list[Any], created_date: str | None = None, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        order_id = next(self._ids)
        shown = revel_shows(body if body is not None else {"orderInfo": info, "items": items})
        order = {
            "id": order_id,
            "resource_uri": f"/resources/Order/{order_id}/",
            "establishment": info.get("establishment"),
            "local_id": info.get("local_id"),
            "uuid": info.get("uuid"),
            "dining_option": info.get("dining_option"),
            "call_name": info.get("call_name"),
            "notes": info.get("notes"),
            "pickup_time": info.get("pickup_time"),
            "web_order": info.get("web_order"),
            "created_date": created_date or datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
            # What the venue sees, recomputed from what was sent (adapters.fakes.revel_shows).
            **shown.as_dict(),
            "orderhistory": [f"/resources/OrderHistory/{order_id}/"] if shown.has_history else [],
            "orderInfo": dict(info),
            "items": items,
            "payments": list((body or {}).get("payments") or []),
            "history": list((body or {}).get("history") or []),
        }
        self._orders.append(order)
        return order

    def _route(self, request: RecordedRequest) -> Reply:
        if request.header("API-AUTHENTICATION") != self.auth:
            return Reply.json(401, {"error": "Unauthorized: API-AUTHENTICATION is missing or invalid"})
        route = (request.method, request.path)
        if route == ("GET", "/resources/Order/"):
            return self._list_orders(request)
        if route == ("POST", "/resources/OrderAllInOne/"):
            return self._create(request)
        if route == ("GET", "/enterprise/Establishment/"):
            objects = [{"id": i, "name": n, "resource_uri": f"/enterprise/Establishment/{i}/"} for i, n in self.establishments]
            return _tastypie_page(request, objects, self.page_size)
        if route == ("GET", "/resources/Product/"):
            establishment = trailing_int(request.param("establishment"))
            objects = [
                {"id": i, "name": n, "resource_uri": f"/resources/Product/{i}/", "establishment": f"/enterprise/Establishment/{est}/"}
                for est, items in self.products.items()
                if establishment is None or est == establishment
                for i, n in items
            ]
            return _tastypie_page(request, objects, self.page_size)
        return Reply.json(404, {"error": f"no route for {request.method} {request.path}"})

    def _list_orders(self, request: RecordedRequest) -> Reply:
        establishment = trailing_int(request.param("establishment"))
        local_id = request.param("local_id")
        prefix = request.param("local_id__startswith")
        created_from = request.param("created_date__gte")
        created_to = request.param("created_date__lte")
        listed = [
            {k: v for k, v in order.items() if k not in _NOT_LISTED}
            for order in self._orders
            if (establishment is None or trailing_int(order["establishment"]) == establishment)
            and (local_id is None or order["local_id"] == local_id)
            and (prefix is None or str(order["local_id"] or "").startswith(prefix))
            and (created_from is None or order["created_date"] >= created_from)
            and (created_to is None or order["created_date"] <= created_to)
        ]
        return _tastypie_page(request, listed, self.page_size)

    def _create(self, request: RecordedRequest) -> Reply:
        body = request.json
        info = body.get("orderInfo") if isinstance(body, Mapping) else None
        items = body.get("items") if isinstance(body, Mapping) else None
        if not isinstance(info, Mapping) or not isinstance(items, list):
            return Reply.json(400, {"error": "orderInfo (an object) and items (a list) are required"})
        establishment = trailing_int(info.get("establishment"))
        known = {i for i, _ in self.establishments}
        if establishment not in known or not str(info.get("establishment", "")).startswith("/enterprise/Establishment/"):
            return Reply.json(400, {"error": f"orderInfo.establishment {info.get('establishment')!r} is not a known Establishment URI"})
        for index, item in enumerate(items):
            product = item.get("product") if isinstance(item, Mapping) else None
            if not (isinstance(product, str) and product.startswith("/resources/Product/") and trailing_int(product)):
                return Reply.json(400, {"error": f"items[{index}].product {product!r} is not a Product URI"})
        try:
            order = self._store(info, list(items), body=body)
        except RefusedOrder as exc:
            return Reply.json(400, {"error": str(exc)})
        location = (("Location", f"{self.url}{order['resource_uri']}"),)
        if self.create_answer == "location":
            return Reply(201, b"", location)
        answer = {k: v for k, v in order.items() if k not in _NOT_LISTED}
        return Reply.json(201, answer, location)

    # The loopback core's: lifecycle, recordings and script (every fake server holds one, by composition).
    start = __enter__ = started
    stop = __exit__ = stopped
    url, requests, script, pending_faults, clear = forwarded("_http", "url", "requests", "script", "pending_faults", "clear")
