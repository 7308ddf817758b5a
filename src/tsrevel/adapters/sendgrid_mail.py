"""SendGrid notifications: mails built by the official library, posted over a pooled httpx client; classifies failures."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import urllib.error
from datetime import datetime, timezone

import httpx
import python_http_client
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail

# Shared wire helpers; they belong in a common adapters module once there is one.
from tsrevel.adapters.http_answers import body_excerpt, parse_retry_after, within_deadline
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.ports import EmailMessage

# python_http_client.client logs every request's headers (Authorization: Bearer <key>) and body
# at DEBUG; the sendgrid package itself logs nothing today, but is covered in case it starts.
SENDGRID_LOGGERS = ("python_http_client", "python_http_client.client", "sendgrid")


def _at_least_info(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.INFO


def quiet_sendgrid_loggers() -> None:
    """Keep SendGrid's HTTP client from ever logging at DEBUG, whatever the root level is.

    The level alone would be undone by anyone calling setLevel(DEBUG) on these loggers (a
    logging dictConfig, a debugging session), so a filter on each logger drops DEBUG records too.
    """
    for name in SENDGRID_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET would inherit the root's level, maybe DEBUG
            logger.setLevel(logging.INFO)
        if _at_least_info not in logger.filters:
            logger.addFilter(_at_least_info)


def make_sendgrid_client(api_key: str, host: str, timeout_s: float) -> SendGridAPIClient:
    """A SendGrid client for host with a request timeout, and its loggers quieted."""
    if not api_key:
        # SendGridAPIClient would silently fall back to the SENDGRID_API_KEY environment variable.
        raise ValueError("a SendGrid API key is required")
    if timeout_s <= 0:
        raise ValueError("the SendGrid timeout must be positive")
    quiet_sendgrid_loggers()
    client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
    # The library has no default timeout; python_http_client.Client.timeout is handed to every
    # urlopen() (connect and each socket read), and copied to the per-path clients it builds.
    client.client.timeout = timeout_s
    # python_http_client adds this header lazily to a dict shared by all threads; setting it up
    # front avoids mutating that dict while another thread copies it into its request.
    client.client.request_headers.setdefault("Content-Type", "application/json")
    return client


class SendGridMailer:
    """Mailer over SendGrid's v3 mail/send.

    The mail is built with the sendgrid library's helpers (``Mail(...).get()``). With ``http`` (the
    container's pooled httpx.AsyncClient) it is posted over that pool's kept-alive connection, with
    the client's own headers (the bearer key) and the same timeout; without it, through the
    library's blocking client in a worker thread, which opens a new TCP connection per email.
    """

    def __init__(
        self,
        client: SendGridAPIClient,
        *,
        sender: str,
        recipients: tuple[str, ...],
        timeout_s: float,
        http: httpx.AsyncClient | None = None,
        deadline_s: float | None = None,
    ) -> None:
        self._client = client
        self._deadline_s = deadline_s  # TSREVEL_CALL_DEADLINE_S: the thread may run on, but the send is given up
        self._sender = sender
        self._recipients = tuple(recipients)
        self._timeout_s = timeout_s
        self._api_key = getattr(client, "api_key", None) or ""
        self._http = http
        self._url = f"{client.host.rstrip('/')}/v3/mail/send"  # the path client.client.mail.send builds
        self._headers = {**client.client.request_headers, "Content-Type": "application/json"}

    async def send(self, message: EmailMessage, *, outbox_id: int) -> None:
        """Send one message; raises GatewayError classified for the outbox's retry policy."""
        recipients = message.to or self._recipients
        if not recipients:
            raise GatewayError.permanent("email has no recipients: set EMAIL_TO")
        body = build_mail(message, sender=self._sender, recipients=recipients, outbox_id=outbox_id).get()
        too_late = lambda: GatewayError.transient(  # noqa: E731 - one message for both paths
            f"SendGrid send: no complete answer within {self._deadline_s:g} s (TSREVEL_CALL_DEADLINE_S)"
        )
        if self._http is not None:
            await within_deadline(self._post_pooled(self._http, body), self._deadline_s, too_late)
            return
        try:
            # The client blocks (urllib); a worker thread keeps the event loop free meanwhile.
            await within_deadline(asyncio.to_thread(self._post, body), self._deadline_s, too_late)
        except python_http_client.exceptions.HTTPError as exc:
            raise self._status_error(exc) from None
        except (OSError, http.client.HTTPException) as exc:  # OSError: timeouts, URLError, resets, TLS
            raise self._transport_error(exc) from None

    def _post(self, body: dict[str, object]) -> None:
        # The explicit timeout covers a client that was not built by make_sendgrid_client.
        response = self._client.client.mail.send.post(request_body=body, timeout=self._timeout_s)
        if not 200 <= response.status_code < 300:  # urllib raises for the others; belt and braces
            raise GatewayError.permanent(f"SendGrid answered HTTP {response.status_code}", status=response.status_code)

    async def _post_pooled(self, http: httpx.AsyncClient, body: dict[str, object]) -> None:
        try:
            response = await http.post(self._url, content=json.dumps(body).encode(), headers=self._headers, timeout=self._timeout_s)
        except httpx.TimeoutException as exc:
            raise self._transport_error(TimeoutError(str(exc) or "timed out")) from None
        except (httpx.TransportError, OSError) as exc:  # refused, reset, TLS
            raise self._transport_error(exc) from None
        if not 200 <= response.status_code < 300:
            raise self._answer_error(response.status_code, response.content, response.headers)

    def _status_error(self, exc: python_http_client.exceptions.HTTPError) -> GatewayError:
        raw = exc.body if isinstance(exc.body, bytes) else str(exc.body or "").encode()
        return self._answer_error(int(exc.status_code), raw, exc.headers)

    def _answer_error(self, status: int, raw: bytes, headers: object) -> GatewayError:
        """A non-2xx answer, classified: 401/403 credentials, 429 (until X-RateLimit-Reset) and 5xx/408 transient, else permanent."""
        excerpt = self._scrub(body_excerpt(raw))
        if status in (401, 403):
            return GatewayError.credentials(
                f"SendGrid refused the API key (HTTP {status}); check SENDGRID_API_KEY and its mail.send permission: {excerpt}",
                status=status,
            )
        if status == 429:
            return GatewayError.transient(
                f"SendGrid rate limit (HTTP 429): {excerpt}", status=status, retry_after=_rate_limit_reset(headers)
            )
        if status >= 500 or status == 408:
            return GatewayError.transient(f"SendGrid HTTP {status}: {excerpt}", status=status)
        return GatewayError.permanent(f"SendGrid HTTP {status}: {excerpt}", status=status)

    def _transport_error(self, exc: BaseException) -> GatewayError:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
        kind = f"timed out after {self._timeout_s:g}s" if timed_out else "connection failed"
        detail = self._scrub(f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__)
        return GatewayError.transient(f"SendGrid send {kind} ({detail})")

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def build_mail(message: EmailMessage, *, sender: str, recipients: tuple[str, ...], outbox_id: int) -> Mail:
    """The SendGrid Mail for a message; custom_args let a SendGrid event be traced back to us."""
    mail = Mail(
        from_email=sender,
        to_emails=list(recipients),
        subject=message.subject,
        plain_text_content=message.text,
    )
    args = {"correlation_id": message.correlation_id, "outbox_id": str(outbox_id)}
    if message.delivery_id is not None:  # SendGrid wants string values; absent beats "None"
        args["delivery_id"] = str(message.delivery_id)
    mail.custom_arg = [CustomArg(key, value) for key, value in args.items()]
    return mail


def _rate_limit_reset(headers: object) -> datetime | None:
    """X-RateLimit-Reset (a unix time) as an aware UTC moment; Retry-After as a fallback."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    reset = get("X-RateLimit-Reset")
    if reset is not None:
        try:
            return datetime.fromtimestamp(int(str(reset).strip()), tz=timezone.utc)
        except (ValueError, OverflowError, OSError):
            pass
    return parse_retry_after(get("Retry-After"))
