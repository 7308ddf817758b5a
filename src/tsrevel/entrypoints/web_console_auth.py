"""Who may use the console: sign-in sessions, CSRF keys and the security headers of every /console answer.

A signed-in session is an encrypted, HttpOnly, SameSite=Strict cookie whose key is derived from
TSREVEL_ADMIN_TOKEN (replicas share it; a new token signs everyone out); it ends after the idle
time. The pages and actions are in web_console.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import SerializationException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.middleware.session.base import SessionMiddleware
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

ACTOR = "console"
SESSION_COOKIE = "tsrevel_console"
CSRF_COOKIE = "tsrevel_console_csrf"
SESSION_INFO = b"tsrevel console session v1"
CSRF_INFO = b"tsrevel console csrf v1"
PUBLIC = "console_public"  # route opt: reachable without a session (sign-in page, styles)
PASSIVE = "console_passive"  # route opt: a background refresh, which does not count as activity


def session_key(admin_token: str) -> bytes:
    """The session cookie's key: HMAC-SHA256(admin token, a fixed label); 32 bytes for AES-GCM."""
    return hmac.new(admin_token.encode(), SESSION_INFO, hashlib.sha256).digest()


def csrf_secret(admin_token: str) -> str:
    """The CSRF tokens' secret, derived from the admin token as the session key is."""
    return hmac.new(admin_token.encode(), CSRF_INFO, hashlib.sha256).hexdigest()


class SignInRequired(Exception):
    """No console session, or it went idle: the answer is a redirect to the sign-in page."""


# Nothing from another host, no framing (the buttons cannot be clickjacked), forms post only here.
CONSOLE_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]


class ConsoleHeaders(ASGIMiddleware):
    """The console's security headers; pages are never cached; cookies are Secure when the request came over https."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        https = scope.get("scheme") == "https"
        static = scope.get("path", "").startswith("/console/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v + b"; Secure" if https and k.lower() == b"set-cookie" and b"secure" not in v.lower() else v)
                    for k, v in message.get("headers", [])
                ]
                headers += CONSOLE_HEADERS if static else [*CONSOLE_HEADERS, (b"cache-control", b"no-store")]
                message = {**message, "headers": headers}
            await send(message)

        await next_app(scope, receive, send_with_headers)


class ForgivingCookieBackend:
    """Litestar's cookie session backend, except that a cookie which does not decode is no session.

    Litestar answers 500 for some forged cookies (well-formed base64 with a broken expiry part);
    here they are simply not signed in.
    """

    def __init__(self, inner: ClientSideSessionBackend) -> None:
        self.inner = inner
        self.config = inner.config

    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        try:
            return await self.inner.load_from_connection(connection)
        except (SerializationException, KeyError, TypeError, ValueError):
            return {}

    async def store_in_message(self, scope_session: Any, message: Message, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        await self.inner.store_in_message(scope_session, message, connection)

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
        return self.inner.get_session_id(connection)


def session_middleware(app: ASGIApp, key: bytes, max_age_s: int) -> ASGIApp:
    """Litestar's cookie session middleware, built when the app is (its cipher cannot be copied with the router)."""
    config = CookieBackendConfig(
        secret=key, key=SESSION_COOKIE, max_age=max_age_s, path="/console",
        httponly=True, samesite="strict", secure=False,  # Secure is added per request over https
    )
    return SessionMiddleware(app, backend=ForgivingCookieBackend(ClientSideSessionBackend(config=config)))  # type: ignore[arg-type]


def signed_in(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """True when the request carries a console session."""
    return bool(connection.scope.get("session")) and connection.session.get("who") == ACTOR


NEXT_PAGE = re.compile(r"/console(/[A-Za-z0-9._~/?=&%+-]*)?")


def safe_next(value: str | None) -> str | None:
    """Only a console path may be the page to return to after signing in (no open redirect, no header tricks)."""
    return value if value and NEXT_PAGE.fullmatch(value) and "//" not in value else None


def signed_in_guard(idle_s: int):  # noqa: ANN201 - a Litestar guard
    """Every console route but the PUBLIC ones needs a session used within idle_s; a PASSIVE one does not extend it."""
    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get(PUBLIC):
            return
        now = int(time.time())
        if not signed_in(connection) or now - int(connection.session.get("seen", 0)) > idle_s:
            if connection.scope.get("session"):
                connection.clear_session()
            raise SignInRequired(connection.url.path)
        if not handler.opt.get(PASSIVE):
            connection.session["seen"] = now

    return guard
