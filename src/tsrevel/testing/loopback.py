"""The one HTTP core every loopback fake server holds (composition, no base class): a server with a log and a fault script.

The core listens on 127.0.0.1 on a port the OS picks, answers from a background thread (one
thread per connection, HTTP/1.1 keep-alive like the real services), records every request,
plays the scripted faults (``exchanges.ServerFault``) and stops completely on ``stop()``,
waking any request it was told to hang. The server that holds it supplies the app: a function
from a RecordedRequest to a Reply, run under the core's lock.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from tsrevel.adapters.fake_parts import FaultScript
from tsrevel.testing.exchanges import CREATE_THEN_STALL, HANG, RESET, TRICKLE, RecordedRequest, Reply, ServerFault



class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the server's Loopback; the stdlib requires a handler class."""

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
    loopback: Loopback

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is normal here (timeouts, resets)

    def shutdown_request(self, request: Any) -> None:
        if self.loopback.take_reset(request):
            self.close_request(request)  # SO_LINGER 0 is set: close() sends RST, not FIN
            return
        super().shutdown_request(request)


App = Callable[[RecordedRequest], Reply]


class Loopback:
    """A ThreadingHTTPServer on 127.0.0.1:0 with a request log and a fault script, driving an app.

    ``forget`` is the holder's own part of ``clear()`` (its orders, mails or tokens), run under the lock.
    """

    def __init__(self, app: App, *, forget: Callable[[], None] = lambda: None) -> None:
        self._app = app
        self._forget = forget
        self.lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._faults: FaultScript[ServerFault] = FaultScript()
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
            self._faults.add(*faults)

    @property
    def pending_faults(self) -> list[ServerFault]:
        with self.lock:
            return self._faults.pending

    def clear(self) -> None:
        """Forget requests and faults, and whatever the holder forgets with them."""
        with self.lock:
            self._requests.clear()
            self._faults.clear()
            self._forget()

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
            fault = self._faults.take(request.path)
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


# ---- what every fake server takes from the core it holds -----------------------------------------

S = TypeVar("S", bound="HoldsLoopback")


class HoldsLoopback(Protocol):
    _http: Loopback


def started(server: S) -> S:
    """Start the server's loopback core (once) and answer the server: ``start()`` and ``with``."""
    server._http.start()
    return server


def stopped(server: HoldsLoopback, *exc_info: object) -> None:
    """Stop the server's loopback core: ``stop()`` and the end of ``with``."""
    server._http.stop()
