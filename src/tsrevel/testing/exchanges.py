"""What a loopback fake server records (RecordedRequest), answers (Reply) and is scripted to do instead (ServerFault).

Faults: ``server.script(ServerFault.status(503), ServerFault.reset())`` queues behaviours. Each
request looks at the *head* of the queue only: if the head applies (no ``path``, or the request
path starts with it) the request gets it (one of its ``times``), otherwise the request is
answered normally and the head waits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import attrs

JSON = "application/json"
HTML_LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>Please sign in</form></body></html>"
_TRAILING_ID = re.compile(r"(\d+)/?$")


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
        return cls(status, dumps(data), (("Content-Type", JSON), *headers))


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
        raw = dumps(body) if isinstance(body, Mapping) else body.encode() if isinstance(body, str) else body
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


def trailing_int(value: object) -> int | None:
    """An id as a request carries it: an int, or the digits a string (a URI) ends with; None otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _TRAILING_ID.search(value.strip())
        if match:
            return int(match.group(1))
    return None


def dumps(data: Any) -> bytes:
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

