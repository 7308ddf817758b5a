"""Revel's REST API over an injected httpx.AsyncClient: sends, pages and classifies failures, nothing else.

What goes on the wire, and how ids and amounts are read back, is ``adapters.revel_wire`` (pure);
its names are importable from here too, as they always were.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from datetime import datetime
from decimal import Decimal
from typing import Any, ParamSpec
from urllib.parse import urlsplit

import httpx

from tsrevel.adapters.http_answers import body_excerpt, parse_retry_after, within_deadline
from tsrevel.adapters.revel_wire import (
    CREATE_PATH,
    ESTABLISHMENTS_PATH,
    LISTING_MAX_PAGES,
    LISTING_PAGE_LIMIT,
    ORDER_UUID_NAMESPACE,
    ORDERS_PATH,
    PRODUCTS_PATH,
    amount_or_none,
    encode_json,
    establishment_uri,
    local_time,
    money,
    object_id,
    order_body,
    order_uuid,
    product_uri,
    required_id,
    resource_uri,
    text_or_none,
    trailing_id,
)
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.orders import OrderRef, RevelOrder

__all__ = [
    "CREATE_PATH",
    "ESTABLISHMENTS_PATH",
    "LISTING_MAX_PAGES",
    "LISTING_PAGE_LIMIT",
    "ORDERS_PATH",
    "ORDER_UUID_NAMESPACE",
    "PRODUCTS_PATH",
    "HttpxRevelGateway",
    "encode_json",
    "establishment_uri",
    "money",
    "order_body",
    "order_uuid",
    "product_uri",
    "resource_uri",
]

P = ParamSpec("P")


def _without_totals(
    listing: Callable[P, Awaitable[list[tuple[int, str, Decimal | None]]]],
) -> Callable[P, Awaitable[list[tuple[int, str]]]]:
    """The same listing, each order as (id, local_id): one signature for both reconcile listings."""

    async def ids_only(*args: P.args, **kwargs: P.kwargs) -> list[tuple[int, str]]:
        return [(order_id, local_id) for order_id, local_id, _ in await listing(*args, **kwargs)]

    ids_only.__name__ = ids_only.__qualname__ = "list_orders_by_reference_prefix"
    ids_only.__doc__ = "Orders whose local_id starts with prefix, as (id, local_id); times are the store's local clock."
    return ids_only


class HttpxRevelGateway:
    """OrderGateway for Revel; also lists establishments, products and orders for the CLI's checks."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        api_secret: str,
        min_interval_s: float = 0.2,
        page_limit: int = 100,
        max_pages: int = 20,
        deadline_s: float | None = None,
        listing_page_limit: int = LISTING_PAGE_LIMIT,
        listing_max_pages: int = LISTING_MAX_PAGES,
    ) -> None:
        self._client = client
        self._deadline_s = deadline_s  # TSREVEL_CALL_DEADLINE_S: the whole of one request, all reads included
        self._auth = f"{api_key}:{api_secret}"
        self._secrets = tuple(s for s in (self._auth, api_key, api_secret) if s)
        self._min_interval_s = min_interval_s
        self._page_limit = page_limit
        self._max_pages = max_pages
        self._listing_page_limit = listing_page_limit
        self._listing_max_pages = listing_max_pages
        self._pace_lock = asyncio.Lock()
        self._next_start = 0.0

    # ---- OrderGateway ----------------------------------------------------------------------

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        """The order whose local_id is exactly reference, or None after reading every page."""
        params = {"establishment": str(establishment_id), "local_id": reference}
        # No client-side establishment check on the objects: local_id is unique per event anyway,
        # and a false "not found" here is what would make a duplicate order.
        pages = self._objects(ORDERS_PATH, params, correlation_id=correlation_id, what=f"lookup of {reference}")
        async with aclosing(pages):
            async for obj in pages:
                if obj.get("local_id") == reference:
                    return OrderRef(object_id(obj), text_or_none(obj.get("resource_uri")))
        return None

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        """POST the order to OrderAllInOne; any doubt about whether Revel kept it sets outcome_unknown."""
        what = f"create of {order.local_id}"
        body = encode_json(order_body(order)).encode("utf-8")
        response = await self._send("POST", CREATE_PATH, correlation_id=correlation_id, what=what, content=body, create=True)
        ref = _created_ref(response)
        if ref is None:
            raise GatewayError.transient(
                f"Revel {what}: HTTP {response.status_code} without an order id in the body or a Location header",
                status=response.status_code,
                outcome_unknown=True,
            )
        return ref

    # ---- listings for check-mapping and reconcile ------------------------------------------

    async def list_establishments(self, *, correlation_id: str | None = None) -> list[tuple[int, str]]:
        """Every establishment the key can see, as (id, name)."""
        cid = correlation_id or _new_correlation_id()
        return [
            (required_id(obj, "Establishment"), text_or_none(obj.get("name")) or "")
            async for obj in self._objects(ESTABLISHMENTS_PATH, {}, correlation_id=cid, what="establishment list")
        ]

    async def list_products(self, establishment_id: int, *, correlation_id: str | None = None) -> list[tuple[int, str]]:
        """The establishment's products, as (id, name)."""
        cid = correlation_id or _new_correlation_id()
        params = {"establishment": str(establishment_id)}
        return [
            (required_id(obj, "Product"), text_or_none(obj.get("name")) or "")
            async for obj in self._objects(PRODUCTS_PATH, params, correlation_id=cid, what="product list")
        ]

    async def list_order_totals(
        self,
        establishment_id: int,
        prefix: str,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        *,
        correlation_id: str | None = None,
    ) -> list[tuple[int, str, Decimal | None]]:
        """Orders whose local_id starts with prefix, as (id, local_id, final_total); final_total is None when unreadable."""
        cid = correlation_id or _new_correlation_id()
        params = {"establishment": str(establishment_id), "local_id__startswith": prefix}
        if created_from is not None:
            params["created_date__gte"] = local_time(created_from)
        if created_to is not None:
            params["created_date__lte"] = local_time(created_to)
        # Reconcile lists years of orders at once: big pages, and enough of them (P8, docs/performance.md).
        pages = self._objects(
            ORDERS_PATH, params, correlation_id=cid, what=f"order list {prefix}*",
            page_limit=self._listing_page_limit, max_pages=self._listing_max_pages,
        )
        return [
            (required_id(obj, "Order"), text_or_none(obj.get("local_id")) or "", amount_or_none(obj.get("final_total")))
            async for obj in pages
        ]

    list_orders_by_reference_prefix = _without_totals(list_order_totals)

    # ---- wire -------------------------------------------------------------------------------

    async def _objects(
        self, path: str, params: dict[str, str], *, correlation_id: str, what: str,
        page_limit: int | None = None, max_pages: int | None = None,
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Yield the objects of a Tastypie list, following meta.next for at most max_pages pages."""
        page_limit = page_limit or self._page_limit
        max_pages = max_pages or self._max_pages
        url = path
        query: dict[str, str] | None = {**params, "limit": str(page_limit)}
        for _ in range(max_pages):
            response = await self._send("GET", url, params=query, correlation_id=correlation_id, what=what)
            page = _json_object(response)
            if page is None:
                raise GatewayError.transient(
                    f"Revel {what}: HTTP {response.status_code} answer is not a JSON object", status=response.status_code
                )
            objects = page.get("objects")
            if not isinstance(objects, list):
                raise GatewayError.transient(f"Revel {what}: answer has no 'objects' list", status=response.status_code)
            for obj in objects:
                if isinstance(obj, Mapping):
                    yield obj
            meta = page.get("meta")
            next_url = meta.get("next") if isinstance(meta, Mapping) else None
            if not next_url:
                return
            url, query = self._same_origin(next_url, what), None
        # Stopping early would turn "not read" into "not there", which for a lookup means a duplicate.
        raise GatewayError.permanent(
            f"Revel {what}: more than {max_pages} pages of {page_limit}; refusing to read a partial list"
        )

    def _same_origin(self, next_url: object, what: str) -> str:
        """meta.next, provided it points back at our Revel host: the auth header must not travel elsewhere."""
        if not isinstance(next_url, str):
            raise GatewayError.transient(f"Revel {what}: meta.next is not a URL")
        try:
            parts = urlsplit(next_url)
            origin = (parts.scheme, parts.hostname, parts.port or _default_port(parts.scheme))
        except ValueError:  # a bad IPv6 literal or port
            raise GatewayError.transient(f"Revel {what}: meta.next is not a URL") from None
        if not parts.scheme and not parts.netloc:
            return next_url
        base = self._client.base_url
        if origin != (base.scheme, base.host, base.port or _default_port(base.scheme)):
            raise GatewayError.permanent(
                f"Revel {what}: meta.next points at another host ({parts.hostname}); not following it"
            )
        return next_url

    async def _send(
        self,
        method: str,
        url: str,
        *,
        correlation_id: str,
        what: str,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        create: bool = False,
    ) -> httpx.Response:
        """One paced request; returns a 2xx response or raises a classified GatewayError."""
        headers = {
            "API-AUTHENTICATION": self._auth,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Correlation-ID": correlation_id,
        }
        await self._pace()
        try:
            response = await within_deadline(
                self._client.request(method, url, params=params, content=content, headers=headers),
                self._deadline_s,
                lambda: GatewayError.transient(
                    f"Revel {what}: no complete answer within {self._deadline_s:g} s (TSREVEL_CALL_DEADLINE_S)",
                    outcome_unknown=create,
                ),
            )
        except httpx.RequestError as exc:
            # `from None`: the httpx exception carries the request, auth header included.
            raise self._transport_error(exc, what, create=create) from None
        except httpx.InvalidURL as exc:  # a malformed meta.next; nothing was sent
            raise GatewayError.permanent(f"Revel {what}: invalid URL ({self._scrub(str(exc))})") from None
        if 200 <= response.status_code < 300:
            return response
        raise self._status_error(response, what, create=create)

    async def _pace(self) -> None:
        """Space request starts at least min_interval_s apart (Revel is said to allow ~300/min per key)."""
        async with self._pace_lock:
            now = time.monotonic()
            wait = self._next_start - now
            if wait > 0:
                await asyncio.sleep(wait)
                now = time.monotonic()
            self._next_start = now + self._min_interval_s

    def _transport_error(self, exc: httpx.RequestError, what: str, *, create: bool) -> GatewayError:
        detail = self._scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
            # Nothing was sent: the base URL or a header value is wrong, and retrying will not fix it.
            return GatewayError.permanent(f"Revel {what}: request not sendable ({detail})")
        # Connecting (or waiting for a pooled connection) failed: Revel never saw the request.
        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
        return GatewayError.transient(f"Revel {what}: {kind} ({detail})", outcome_unknown=create and not never_sent)

    def _status_error(self, response: httpx.Response, what: str, *, create: bool) -> GatewayError:
        status = response.status_code
        excerpt = self._scrub(body_excerpt(response.content))
        if status in (401, 403):
            return GatewayError.credentials(
                f"Revel refused the API key for {what} (HTTP {status}); check REVEL_API_KEY/REVEL_API_SECRET "
                f"and the key's access to this resource: {excerpt}",
                status=status,
            )
        if status == 429:
            return GatewayError.transient(
                f"Revel rate limit on {what} (HTTP 429)", status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        if status >= 500 or status == 408:
            # The request reached Revel: for a create, it may have been stored before the failure.
            return GatewayError.transient(f"Revel {what}: HTTP {status}: {excerpt}", status=status, outcome_unknown=create)
        return GatewayError.permanent(f"Revel {what}: HTTP {status}: {excerpt}", status=status)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


# ---- reading answers ----------------------------------------------------------------------------


def _created_ref(response: httpx.Response) -> OrderRef | None:
    """The new order's id from the body (top level or nested orderInfo/order), else from Location."""
    body = _json_object(response)
    if body is not None:
        for candidate in (body, body.get("orderInfo"), body.get("order")):
            if isinstance(candidate, Mapping):
                order_id = object_id(candidate)
                if order_id is not None:
                    uri = text_or_none(candidate.get("resource_uri")) or f"{ORDERS_PATH}{order_id}/"
                    return OrderRef(order_id, uri)
    location = response.headers.get("Location")
    if location:
        path = urlsplit(location).path
        order_id = trailing_id(path)
        if order_id is not None:
            return OrderRef(order_id, path)
    return None


def _json_object(response: httpx.Response) -> Mapping[str, Any] | None:
    try:
        data = json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, ArithmeticError, RecursionError):  # absurd exponents, absurd nesting
        return None
    return data if isinstance(data, Mapping) else None


def _default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme)


def _new_correlation_id() -> str:
    return f"tsrevel-{uuid.uuid4().hex[:16]}"
