"""The one map from errors to HTTP statuses, and the correlation id that every answer (errors too) carries.

Handlers raise domain errors (and the few HTTP-only ones below); EXCEPTION_HANDLERS turns each into
its status and our JSON shape, so no handler catches and answers an error by itself.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException, ValidationException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from tsrevel.domain.correlation import accept_correlation_id, current_correlation_id
from tsrevel.domain.errors import (
    GatewayError,
    InvalidRequest,
    MappingRejected,
    NotFound,
    PayloadError,
    SignatureError,
    StoreUnavailable,
)
from tsrevel.entrypoints.body_limits import RETRY_AFTER_S, BodiesInFlightFull, BodyTimeout

log = logging.getLogger("tsrevel.http")

CORRELATION_HEADER = "x-correlation-id"


class AdminForbidden(Exception):
    """Admin and test endpoints are disabled (no TSREVEL_ADMIN_TOKEN): 403, whatever the credentials."""


class AdminUnauthorized(Exception):
    """The admin bearer token is missing or wrong: 401 with a Bearer challenge."""


class BadQuery(Exception):
    """A query parameter with a value the endpoint does not take: 400 naming the allowed values."""


# ---- correlation ids: one per request, on every response and log line -------------------------


class CorrelationMiddleware:
    """Keeps a valid incoming X-Correlation-ID or makes one, exposes it to logs, and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-correlation-id":
                incoming = value.decode("latin-1")
                break
        cid = accept_correlation_id(incoming)
        token = current_correlation_id.set(cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-correlation-id"]
                headers.append((b"x-correlation-id", cid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_correlation_id.reset(token)


def correlation_id() -> str:
    """This request's correlation id (one is made when called outside a request)."""
    return current_correlation_id.get() or accept_correlation_id(None)


# ---- errors: the one map from domain errors to statuses --------------------------------------


def error_response(status: int, message: str, *, cid: str | None = None, **extra: Any) -> Response[dict[str, Any]]:
    """An error in our JSON shape: the message, the correlation id and any extra fields."""
    cid = cid or correlation_id()
    # The header too: a 404/405 for an unknown route is answered before CorrelationMiddleware runs.
    return Response(
        {"error": message, "correlation_id": cid, **extra}, status_code=status, headers={"X-Correlation-ID": cid}, media_type=MediaType.JSON
    )


def _signature_error(_: Request, exc: SignatureError) -> Response[dict[str, Any]]:
    log.warning("webhook refused: %s", exc)
    return error_response(401, str(exc))


def _payload_error(_: Request, exc: PayloadError) -> Response[dict[str, Any]]:
    return error_response(422, str(exc), field=exc.path)


def _not_found(_: Request, exc: NotFound) -> Response[dict[str, Any]]:
    return error_response(404, str(exc))


def _invalid(_: Request, exc: InvalidRequest) -> Response[dict[str, Any]]:
    return error_response(409, str(exc))


def _gateway(_: Request, exc: GatewayError) -> Response[dict[str, Any]]:
    # An outside system (the TripleSeat API for /admin/sync) failed; its message is already scrubbed.
    return error_response(502, str(exc))


# When the store cannot take writes: TripleSeat re-sends a webhook that was not answered 2xx.
STORE_RETRY_AFTER_S = 30


def _store_unavailable(_: Request, exc: StoreUnavailable) -> Response[dict[str, Any]]:
    # Not logged here: the store logs each outage once, when it starts and when it ends.
    answer = error_response(503, f"{exc}; try again later")
    answer.headers["Retry-After"] = str(STORE_RETRY_AFTER_S)
    return answer


def _mapping_rejected(_: Request, exc: MappingRejected) -> Response[dict[str, Any]]:
    return error_response(422, str(exc), file=exc.file, line=exc.line, problem=exc.problem)


def _forbidden(_: Request, exc: AdminForbidden) -> Response[dict[str, Any]]:
    return error_response(403, str(exc))


def _unauthorized(_: Request, exc: AdminUnauthorized) -> Response[dict[str, Any]]:
    response = error_response(401, str(exc))
    response.headers["WWW-Authenticate"] = 'Bearer realm="tsrevel admin"'
    return response


def _bad_query(_: Request, exc: BadQuery) -> Response[dict[str, Any]]:
    return error_response(400, str(exc))


def _http_exception(request: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    extra = {"detail": exc.extra} if isinstance(exc, ValidationException) and exc.extra else {}
    cid = current_correlation_id.get() or accept_correlation_id(request.headers.get(CORRELATION_HEADER))
    return error_response(exc.status_code, exc.detail, cid=cid, **extra)


def _unhandled(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    """A bug or an outage nobody mapped: logged once with its traceback, answered in our shape."""
    cid = current_correlation_id.get() or accept_correlation_id(request.headers.get(CORRELATION_HEADER))
    log.error(
        "unhandled %s in %s %s: %s", type(exc).__name__, request.method, request.url.path, exc,
        exc_info=exc, extra={"correlation_id": cid},
    )
    return error_response(500, f"internal error ({type(exc).__name__}); the log has the details under this correlation id", cid=cid)


def _body_timeout(_: Request, exc: BodyTimeout) -> Response[dict[str, Any]]:
    response = error_response(408, str(exc))
    response.headers["Connection"] = "close"  # the rest of the body may still be on its way
    return response


def _bodies_in_flight_full(_: Request, exc: BodiesInFlightFull) -> Response[dict[str, Any]]:
    response = error_response(503, str(exc))
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    response.headers["Connection"] = "close"
    return response


EXCEPTION_HANDLERS = {
    BodyTimeout: _body_timeout,
    BodiesInFlightFull: _bodies_in_flight_full,
    SignatureError: _signature_error,
    PayloadError: _payload_error,
    NotFound: _not_found,
    InvalidRequest: _invalid,
    GatewayError: _gateway,
    StoreUnavailable: _store_unavailable,
    MappingRejected: _mapping_rejected,
    AdminForbidden: _forbidden,
    AdminUnauthorized: _unauthorized,
    BadQuery: _bad_query,
    NotAuthorizedException: _http_exception,
    PermissionDeniedException: _http_exception,
    HTTPException: _http_exception,
    Exception: _unhandled,
}
