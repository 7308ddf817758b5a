"""Loopback HTTP servers that play Revel, SendGrid and TripleSeat for integration tests, with scriptable faults.

Each server listens on 127.0.0.1 on a port the OS picks, answers from a background thread
(one thread per connection, HTTP/1.1 keep-alive like the real services), records every
request, and stops completely on ``stop()`` or when its ``with`` block ends, waking any
request it was told to hang.

Faults: ``server.script(ServerFault.status(503), ServerFault.reset())`` queues behaviours. Each
request looks at the *head* of the queue only: if the head applies (no ``path``, or the request
path starts with it) the request gets it (one of its ``times``), otherwise the request is
answered normally and the head waits.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import attrs

from tsrevel.adapters.fakes import RefusedOrder, revel_shows

JSON = "application/json"
HTML_LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>Please sign in</form></body></html>"
_TRAILING_ID = re.compile(r"(\d+)/?$")


# ---- what the servers record and answer ----------------------------------------------------


@attrs.frozen(eq=False)
class RecordedRequest:
    """One request as the server saw it; header names are lower case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any  # the body decoded with Decimal for non-integers, or None when it is not JSON
    at: float  # time.monotonic() on arrival

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def form(self) -> dict[str, str]:
        """The body as an urlencoded form (first value of each field)."""
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True).items()}


@attrs.frozen
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, data: Any, headers: Iterable[tuple[str, str]] = ()) -> Reply:
        return cls(status, _dumps(data), (("Content-Type", JSON), *headers))


STATUS = "status"
RESET = "reset"
HANG = "hang"
CREATE_THEN_STALL = "create_then_stall"
HTML = "html"
TRICKLE = "trickle"


@attrs.frozen(kw_only=True)
class ServerFault:
    """One scripted behaviour for the next ``times`` requests it applies to."""

    kind: str
    code: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    seconds: float = 0.0
    path: str | None = None
    times: int = 1

    @classmethod
    def status(
        cls,
        code: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        path: str | None = None,
        times: int = 1,
    ) -> ServerFault:
        """Answer with this status (and headers/body; a JSON error body by default) instead of the real answer."""
        if body is None:
            body = {"error": HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "error"}
        raw = _dumps(body) if isinstance(body, Mapping) else body.encode() if isinstance(body, str) else body
        hdrs = tuple((headers or {}).items())
        if raw and not any(k.lower() == "content-type" for k, _ in hdrs):
            hdrs = (("Content-Type", JSON if raw[:1] in (b"{", b"[") else "text/plain"), *hdrs)
        return cls(kind=STATUS, code=code, headers=hdrs, body=raw, path=path, times=times)

    @classmethod
    def rate_limited(cls, retry_after: str | int, *, path: str | None = None, times: int = 1) -> ServerFault:
        """429 with Retry-After (delta-seconds or an HTTP date)."""
        return cls.status(429, headers={"Retry-After": str(retry_after)}, path=path, times=times)

    @classmethod
    def reset(cls, *, path: str | None = None, times: int = 1) -> ServerFault:
        """Read the request, then close the connection with a TCP reset and no answer."""
        return cls(kind=RESET, path=path, times=times)

    @classmethod
    def hang(cls, seconds: float = 30.0, *, path: str | None = None, times: int = 1) -> ServerFault:
        """Wait this long before answering normally; stopping the server cuts the wait short."""
        return cls(kind=HANG, seconds=seconds, path=path, times=times)

    @classmethod
    def create_then_stall(cls, seconds: float = 30.0, *, path: str | None = None, times: int = 1) -> ServerFault:
        """Do the request's work (store the order, keep the mail), then wait before answering."""
        return cls(kind=CREATE_THEN_STALL, seconds=seconds, path=path, times=times)

    @classmethod
    def trickle(cls, seconds: float = 0.5, *, path: str | None = None, times: int = 1) -> ServerFault:
        """Do the request's work, then send the answer one byte every ``seconds``: each read is quick, the whole is not."""
        return cls(kind=TRICKLE, seconds=seconds, path=path, times=times)

    @classmethod
    def html(cls, *, status: int = 200, path: str | None = None, times: int = 1) -> ServerFault:
        """An HTML sign-in page where JSON was expected (how TripleSeat shows an auth failure)."""
        html_type = (("Content-Type", "text/html; charset=utf-8"),)
        return cls(kind=HTML, code=status, headers=html_type, body=HTML_LOGIN_PAGE, path=path, times=times)

    def applies_to(self, path: str) -> bool:
        return self.path is None or path.startswith(self.path)


@attrs.define
class _Queued:
    fault: ServerFault
    left: int


# ---- the HTTP machinery every fake shares (by composition) -------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the server's _Loopback; the stdlib requires a handler class."""

    protocol_version = "HTTP/1.1"  # keep-alive, as httpx's pool expects from real services
    timeout = 60  # an idle keep-alive connection does not pin a thread for ever
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.loopback.track(self.connection, threading.current_thread())

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the client went away; nothing left to flush
        finally:
            self.server.loopback.untrack(self.connection)

    def _dispatch(self) -> None:
        self.server.loopback.serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # the stdlib's parameter name
        pass  # tests read .requests; stderr noise helps no one


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 50 concurrent clients must not meet a full listen backlog
    loopback: _Loopback

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is normal here (timeouts, resets)

    def shutdown_request(self, request: Any) -> None:
        if self.loopback.take_reset(request):
            self.close_request(request)  # SO_LINGER 0 is set: close() sends RST, not FIN
            return
        super().shutdown_request(request)


App = Callable[[RecordedRequest], Reply]


class _Loopback:
    """A ThreadingHTTPServer on 127.0.0.1:0 with a request log and a fault queue, driving an app."""

    def __init__(self, app: App) -> None:
        self._app = app
        self.lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._faults: deque[_Queued] = deque()
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self.connections_accepted = 0  # TCP connections ever accepted (a pooled client keeps this at 1)
        self._resets: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> None:
        if self._httpd is not None:
            return
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.loopback = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # how soon shutdown() is noticed
            daemon=True,
            name=f"loopback-{httpd.server_address[1]}",
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()  # wakes every hang
        httpd.shutdown()
        with self.lock:
            connections = dict(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # unblocks handlers waiting on keep-alive reads
            except OSError:
                pass
        httpd.server_close()
        deadline = time.monotonic() + timeout_s
        for handler_thread in (thread, *connections.values()):
            handler_thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd = self._thread = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager or call start()")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # recordings and script

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    def script(self, *faults: ServerFault) -> None:
        with self.lock:
            self._faults.extend(_Queued(f, f.times) for f in faults if f.times > 0)

    @property
    def pending_faults(self) -> list[ServerFault]:
        with self.lock:
            return [q.fault for q in self._faults]

    def clear(self) -> None:
        with self.lock:
            self._requests.clear()
            self._faults.clear()

    # connections

    def track(self, conn: socket.socket, thread: threading.Thread) -> None:
        with self.lock:
            self._connections[conn] = thread
            self.connections_accepted += 1

    def untrack(self, conn: socket.socket) -> None:
        with self.lock:
            self._connections.pop(conn, None)

    def take_reset(self, conn: socket.socket) -> bool:
        with self.lock:
            if conn in self._resets:
                self._resets.discard(conn)
                return True
            return False

    # one request

    def serve(self, h: _Handler) -> None:
        request = self._read(h)
        with self.lock:
            self._requests.append(request)
            fault = self._take_fault(request.path)
        if fault is None:
            self._answer(h, self._run_app(request))
        elif fault.kind == RESET:
            self._reset(h)
        elif fault.kind == HANG:
            if self._stopping.wait(fault.seconds):
                h.close_connection = True  # stopped while hanging: hang up without an answer
                return
            self._answer(h, self._run_app(request))
        elif fault.kind == CREATE_THEN_STALL:
            reply = self._run_app(request)
            if self._stopping.wait(fault.seconds):
                h.close_connection = True
                return
            self._answer(h, reply)
        elif fault.kind == TRICKLE:
            self._answer(h, self._run_app(request), pause_s=fault.seconds, stopping=self._stopping)
        else:  # STATUS, HTML
            self._answer(h, Reply(fault.code, fault.body, fault.headers))

    def _run_app(self, request: RecordedRequest) -> Reply:
        with self.lock:
            return self._app(request)

    def _take_fault(self, path: str) -> ServerFault | None:
        if not self._faults or not self._faults[0].fault.applies_to(path):
            return None
        head = self._faults[0]
        head.left -= 1
        if head.left == 0:
            self._faults.popleft()
        return head.fault

    @staticmethod
    def _read(h: _Handler) -> RecordedRequest:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        parts = urlsplit(h.path)
        decoded: Any = None
        if body:
            try:
                decoded = json.loads(body, parse_float=Decimal)
            except ValueError:
                decoded = None
        return RecordedRequest(
            method=h.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in h.headers.items()},
            body=body,
            json=decoded,
            at=time.monotonic(),
        )

    def _reset(self, h: _Handler) -> None:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self.lock:
            self._resets.add(h.connection)
        h.close_connection = True

    @staticmethod
    def _answer(h: _Handler, reply: Reply, *, pause_s: float = 0.0, stopping: threading.Event | None = None) -> None:
        try:
            h.send_response(reply.status)
            for name, value in reply.headers:
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(reply.body)))
            h.end_headers()
            if h.command == "HEAD":
                return
            if not pause_s:
                h.wfile.write(reply.body)
                return
            for i in range(len(reply.body)):  # trickle: one byte, then a pause shorter than any read timeout
                h.wfile.write(reply.body[i : i + 1])
                h.wfile.flush()
                if stopping is not None and stopping.wait(pause_s):
                    h.close_connection = True
                    return
        except OSError:
            h.close_connection = True  # the client gave up (its timeout) before we answered



# ---- what every fake server shares: the loopback core, reached by composition ---------------------

S = TypeVar("S", bound="_HasCore")


class _HasCore(Protocol):
    _http: _Loopback


class _Core:
    """A member of the server's loopback core (its ``_http``), offered as the server's own."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, server: _HasCore | None, owner: type | None = None) -> Any:
        return self if server is None else getattr(server._http, self._name)


def _started(server: S) -> S:
    """Start the server's loopback core (once) and answer the server: ``start()`` and ``with``."""
    server._http.start()
    return server


def _stopped(server: _HasCore, *exc_info: object) -> None:
    """Stop the server's loopback core: ``stop()`` and the end of ``with``."""
    server._http.stop()


# ---- Tastypie-style lists ----------------------------------------------------------------------

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


def _trailing_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _TRAILING_ID.search(value.strip())
        if match:
            return int(match.group(1))
    return None


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
        self._http = _Loopback(self._route)

    def clear(self) -> None:
        """Forget requests, faults and orders; keys, establishments and products stay."""
        with self._http.lock:
            self._http.clear()
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
            establishment = _trailing_int(request.param("establishment"))
            objects = [
                {"id": i, "name": n, "resource_uri": f"/resources/Product/{i}/", "establishment": f"/enterprise/Establishment/{est}/"}
                for est, items in self.products.items()
                if establishment is None or est == establishment
                for i, n in items
            ]
            return _tastypie_page(request, objects, self.page_size)
        return Reply.json(404, {"error": f"no route for {request.method} {request.path}"})

    def _list_orders(self, request: RecordedRequest) -> Reply:
        establishment = _trailing_int(request.param("establishment"))
        local_id = request.param("local_id")
        prefix = request.param("local_id__startswith")
        created_from = request.param("created_date__gte")
        created_to = request.param("created_date__lte")
        listed = [
            {k: v for k, v in order.items() if k not in _NOT_LISTED}
            for order in self._orders
            if (establishment is None or _trailing_int(order["establishment"]) == establishment)
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
        establishment = _trailing_int(info.get("establishment"))
        known = {i for i, _ in self.establishments}
        if establishment not in known or not str(info.get("establishment", "")).startswith("/enterprise/Establishment/"):
            return Reply.json(400, {"error": f"orderInfo.establishment {info.get('establishment')!r} is not a known Establishment URI"})
        for index, item in enumerate(items):
            product = item.get("product") if isinstance(item, Mapping) else None
            if not (isinstance(product, str) and product.startswith("/resources/Product/") and _trailing_int(product)):
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

    # lifecycle and recordings: the loopback core's (every fake server holds one, by composition)
    start = __enter__ = _started
    stop = __exit__ = _stopped
    url, requests, script, pending_faults = _Core("url"), _Core("requests"), _Core("script"), _Core("pending_faults")


# ---- SendGrid ----------------------------------------------------------------------------------


class FakeSendGridServer:
    """Plays SendGrid's v3 mail/send: checks the bearer key, keeps each mail, answers 202."""

    def __init__(self, *, api_key: str = "SG.test-key") -> None:
        self.api_key = api_key
        self._mails: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._http = _Loopback(self._route)

    def clear(self) -> None:
        """Forget requests, faults and mails; the key stays."""
        with self._http.lock:
            self._http.clear()
            self._mails.clear()

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since start: one per email without a pool."""
        return self._http.connections_accepted

    @property
    def mails(self) -> list[dict[str, Any]]:
        """Every accepted mail body, custom_args included."""
        with self._http.lock:
            return list(self._mails)

    def _route(self, request: RecordedRequest) -> Reply:
        if (request.method, request.path) != ("POST", "/v3/mail/send"):
            return Reply.json(404, {"errors": [{"message": f"no route for {request.method} {request.path}"}]})
        if request.header("Authorization") != f"Bearer {self.api_key}":
            refused = "The provided authorization grant is invalid, expired, or revoked"
            return Reply.json(401, {"errors": [{"message": refused, "field": None, "help": None}]})
        mail = request.json
        if not isinstance(mail, Mapping) or not mail.get("personalizations") or not mail.get("from"):
            return Reply.json(400, {"errors": [{"message": "personalizations and from are required", "field": None, "help": None}]})
        self._mails.append(dict(mail))
        return Reply(202, b"", (("X-Message-Id", f"fake-{next(self._ids)}"),))

    # lifecycle and recordings: the loopback core's (every fake server holds one, by composition)
    start = __enter__ = _started
    stop = __exit__ = _stopped
    url, requests, script, pending_faults = _Core("url"), _Core("requests"), _Core("script"), _Core("pending_faults")


# ---- TripleSeat --------------------------------------------------------------------------------


class FakeTripleSeatServer:
    """Plays TripleSeat's API: OAuth 2 tokens, ``GET /v1/events/<id>.json`` and ``GET /v1/events/search.json``.

    The search answers ``{"results": [...], "total_pages": N}``, ``search_page_size`` a page (50,
    like TripleSeat), the events whose ``updated_at`` day is on or after ``event_updated_start_date``,
    each without its ``documents`` and ``financials`` unless ``search_full`` (the search describes
    events only partly).

    ``events`` maps an id to the event object served; ``wrap_event`` answers ``{"event": {...}}``
    instead of the bare object. ``revoke_tokens()`` makes every issued token answer 401.
    Tokens come from the client-credentials grant or the refresh-token grant; like TripleSeat,
    a refresh retires the refresh token it used and answers a new one (``refresh_token`` is
    the first valid one, as an operator would get it by authorizing the application).
    """

    def __init__(
        self,
        *,
        client_id: str = "ts-client",
        client_secret: str = "ts-secret",
        expires_in: int = 7200,
        events: Mapping[str, Mapping[str, Any]] | None = None,
        wrap_event: bool = False,
        refresh_token: str | None = None,
        search_page_size: int = 50,
        search_full: bool = False,
    ) -> None:
        self.search_page_size = search_page_size
        self.search_full = search_full
        self.client_id = client_id
        self._valid_refresh: set[str] = {refresh_token} if refresh_token else set()
        self._retired_refresh: list[str] = []
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.events: dict[str, Mapping[str, Any]] = dict(events or {})
        self.wrap_event = wrap_event
        self._valid_tokens: set[str] = set()
        self._issued: list[str] = []
        self._ids = itertools.count(1)
        self._http = _Loopback(self._route)

    def clear(self) -> None:
        """Forget requests, faults and issued tokens; credentials and events stay."""
        with self._http.lock:
            self._http.clear()
            self._valid_tokens.clear()
            self._issued.clear()

    @property
    def tokens_issued(self) -> list[str]:
        with self._http.lock:
            return list(self._issued)

    def revoke_tokens(self) -> None:
        with self._http.lock:
            self._valid_tokens.clear()

    @property
    def valid_refresh_tokens(self) -> set[str]:
        with self._http.lock:
            return set(self._valid_refresh)

    @property
    def retired_refresh_tokens(self) -> list[str]:
        """Refresh tokens used once and so retired, in order."""
        with self._http.lock:
            return list(self._retired_refresh)

    def _route(self, request: RecordedRequest) -> Reply:
        if (request.method, request.path) == ("POST", "/oauth2/token"):
            return self._token(request)
        match = re.fullmatch(r"/v1/events/([^/]+)\.json", request.path)
        if request.method == "GET" and match:
            auth = request.header("Authorization") or ""
            if not auth.startswith("Bearer ") or auth[len("Bearer ") :] not in self._valid_tokens:
                return Reply.json(401, {"error": "invalid_token"})
            if match.group(1) == "search":
                return self._search(request)
            event = self.events.get(match.group(1))
            if event is None:
                return Reply.json(404, {"errors": "Record not found"})
            return Reply.json(200, {"event": event} if self.wrap_event else event)
        return Reply.json(404, {"errors": f"no route for {request.method} {request.path}"})

    def _search(self, request: RecordedRequest) -> Reply:
        since = _us_date(request.param("event_updated_start_date"))
        if since is None:
            return Reply.json(422, {"errors": "event_updated_start_date must be MM/DD/YYYY"})
        found = [
            event if self.search_full else {k: v for k, v in event.items() if k not in ("documents", "financials")}
            for event in self.events.values()
            if (_us_date(str(event.get("updated_at") or "")[:10]) or since) >= since
        ]
        size = max(1, self.search_page_size)
        pages = max(1, -(-len(found) // size))
        page = _trailing_int(request.param("page")) or 1
        return Reply.json(200, {"results": found[(page - 1) * size : page * size], "total_pages": pages})

    def _token(self, request: RecordedRequest) -> Reply:
        form = request.form
        if form.get("grant_type") not in ("client_credentials", "refresh_token"):
            return Reply.json(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Reply.json(401, {"error": "invalid_client", "error_description": "Client authentication failed."})
        if form.get("grant_type") == "refresh_token":
            used = form.get("refresh_token") or ""
            if used not in self._valid_refresh:
                return Reply.json(400, {"error": "invalid_grant", "error_description": "The refresh token is invalid, expired or revoked."})
            self._valid_refresh.discard(used)  # rotation: a refresh token works once
            self._retired_refresh.append(used)
        number = next(self._ids)
        self._valid_refresh.add(f"ts-refresh-{number}")
        token = f"ts-token-{number}"
        self._valid_tokens.add(token)
        self._issued.append(token)
        return Reply.json(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "refresh_token": f"ts-refresh-{number}",
                "created_at": int(time.time()),
            },
        )

    # lifecycle and recordings: the loopback core's (every fake server holds one, by composition)
    start = __enter__ = _started
    stop = __exit__ = _stopped
    url, requests, script, pending_faults = _Core("url"), _Core("requests"), _Core("script"), _Core("pending_faults")


def _us_date(text: str | None) -> date | None:
    """MM/DD/YYYY as a date; None when it is not one."""
    try:
        return datetime.strptime((text or "").strip(), "%m/%d/%Y").date()
    except ValueError:
        return None


def _dumps(data: Any) -> bytes:
    """JSON bytes; Decimals are written verbatim as numbers, like a real server's serializer would."""
    return _encode(data).encode("utf-8")


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


__all__ = [
    "FakeRevelServer",
    "FakeSendGridServer",
    "FakeTripleSeatServer",
    "RecordedRequest",
    "Reply",
    "ServerFault",
]
