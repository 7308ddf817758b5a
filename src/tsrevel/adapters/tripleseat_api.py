"""TripleSeat's REST API over an injected httpx.AsyncClient: OAuth 2 tokens, the event fetch and the event search.

Two grants: client credentials, or a refresh token. TripleSeat rotates refresh tokens (each
refresh answers a new one and retires the old), so the newest is kept through a TokenStore
(``StoreTokenStore`` keeps it in the tsrevel store): a restart, or another replica, uses it
instead of the retired seed from ``TRIPLESEAT_REFRESH_TOKEN``. No token is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote

import httpx

# Shared wire helpers; they belong in a common adapters module once there is one.
from tsrevel.adapters.http_answers import body_excerpt, parse_retry_after, within_deadline
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.ports import Clock, Store
from tsrevel.domain.text import may_hold_surrogates, without_lone_surrogates

log = logging.getLogger("tsrevel.tripleseat")

TOKEN_PATH = "/oauth2/token"
# The store's named value holding the newest refresh token (and which seed it descends from).
REFRESH_TOKEN_VALUE = "tripleseat.oauth.refresh_token"
DEFAULT_EXPIRES_IN_S = 7200  # TripleSeat documents 2-hour tokens
# Renew this long before expiry so a token never dies between our check and TripleSeat's.
REFRESH_MARGIN_S = 120.0
SEARCH_PATH = "/v1/events/search.json"
# TripleSeat allows about 10 requests a second on events; we start at most this many.
MAX_REQUESTS_PER_S = 10.0
# A catch-up read waits out a 429 (Retry-After, at most this long) this many times before giving up.
RATE_LIMIT_WAITS = 3
RATE_LIMIT_WAIT_CAP_S = 60.0
# More pages than this (50 events each) is not a look-back window; refuse rather than read for ever.
MAX_SEARCH_PAGES = 400


class TokenStore(Protocol):
    """Somewhere a small secret survives restarts and is shared by replicas."""

    async def load(self) -> str | None: ...
    async def save(self, value: str) -> None: ...


class StoreTokenStore:
    """TokenStore over the tsrevel Store's named values (``get_value``/``put_value``)."""

    def __init__(self, store: Store, clock: Clock, *, name: str = REFRESH_TOKEN_VALUE) -> None:
        self._store = store
        self._clock = clock
        self._name = name

    async def load(self) -> str | None:
        return await self._store.get_value(self._name)

    async def save(self, value: str) -> None:
        await self._store.put_value(self._name, value, now=self._clock.now())


class HttpxTripleSeatSource:
    """EventSource for TripleSeat: fetches one event with its financials."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str | None = None,
        token_store: TokenStore | None = None,
        max_requests_per_s: float = MAX_REQUESTS_PER_S,
        deadline_s: float | None = None,
    ) -> None:
        self._client = client
        self._deadline_s = deadline_s  # TSREVEL_CALL_DEADLINE_S: each call, token requests included
        self._min_interval_s = 1.0 / max_requests_per_s if max_requests_per_s > 0 else 0.0
        self._next_start = 0.0
        self._pace_lock = asyncio.Lock()
        self._client_id = client_id
        self._client_secret = client_secret
        # With a refresh token (the seed) the refresh grant is used, else client credentials.
        self._seed = refresh_token or None
        self._refresh: str | None = None  # the newest refresh token, once known
        self._token_store = token_store
        self._token: str | None = None
        self._token_expires = 0.0  # time.monotonic() deadline, margin already taken off
        self._token_lock = asyncio.Lock()

    async def fetch_event(self, event_id: str, *, correlation_id: str) -> TripleSeatEvent:
        """GET the event with show_financial=true; one token refresh on 401, then the answer stands."""
        data = await self._event_data(event_id, correlation_id=correlation_id, wait_on_429=False)
        return TripleSeatEvent.from_payload(data, path="event")

    async def fetch_event_data(self, event_id: str, *, correlation_id: str) -> Mapping[str, Any]:
        """The raw event object with its financials, for storing as a delivery; a 429 is waited out."""
        return await self._event_data(event_id, correlation_id=correlation_id, wait_on_429=True)

    async def search_events(self, *, updated_since: date, correlation_id: str) -> list[Mapping[str, Any]]:
        """Every event updated since the day: every page of events/search.json, at most 10 requests a second."""
        found: list[Mapping[str, Any]] = []
        page, total = 1, 1
        while page <= total:
            if page > MAX_SEARCH_PAGES:
                raise GatewayError.permanent(f"TripleSeat event search: more than {MAX_SEARCH_PAGES} pages; refusing to read a partial list")
            params = {"event_updated_start_date": updated_since.strftime("%m/%d/%Y"), "page": str(page)}
            data = await self._read_json(SEARCH_PATH, params, correlation_id=correlation_id, what=f"event search page {page}", wait_on_429=True)
            results = data.get("results") if isinstance(data, Mapping) else None
            if not isinstance(results, list):
                raise GatewayError.transient(f"TripleSeat event search page {page}: the answer has no results list")
            found += [r for r in results if isinstance(r, Mapping)]
            pages = data.get("total_pages")
            total = pages if isinstance(pages, int) and not isinstance(pages, bool) and pages > 0 else page
            page += 1
        return found

    async def _event_data(self, event_id: str, *, correlation_id: str, wait_on_429: bool) -> Mapping[str, Any]:
        path = f"/v1/events/{quote(str(event_id), safe='')}.json"
        data = await self._read_json(
            path, {"show_financial": "true"}, correlation_id=correlation_id, what=f"fetch of event {event_id}", wait_on_429=wait_on_429
        )
        if isinstance(data, Mapping) and isinstance(data.get("event"), Mapping):
            data = data["event"]
        if not isinstance(data, Mapping):
            raise GatewayError.transient(f"TripleSeat fetch of event {event_id}: the answer is not an event object")
        return data

    async def _read_json(
        self, path: str, params: Mapping[str, str], *, correlation_id: str, what: str, wait_on_429: bool
    ) -> Any:
        """GET path and decode it; one token refresh on 401; 429 waited out when asked; HTML is an auth failure."""
        waits = RATE_LIMIT_WAITS if wait_on_429 else 0
        while True:
            token, response = await within_deadline(
                self._get_authorized(path, params, correlation_id=correlation_id, what=what),
                self._deadline_s,
                lambda: GatewayError.transient(
                    f"TripleSeat {what}: no complete answer within {self._deadline_s:g} s (TSREVEL_CALL_DEADLINE_S)"
                ),
            )
            if response.status_code == 429 and waits > 0:
                waits -= 1
                now = datetime.now(timezone.utc)
                moment = parse_retry_after(response.headers.get("Retry-After"), now=now)
                delay = (moment - now).total_seconds() if moment is not None else 1.0
                log.warning("TripleSeat rate limit on %s: waiting %.1fs", what, min(RATE_LIMIT_WAIT_CAP_S, delay))
                await asyncio.sleep(max(0.0, min(RATE_LIMIT_WAIT_CAP_S, delay)))
                continue
            self._raise_for_status(response, what, secrets=(token,))
            data = _json(response)
            if data is None:
                raise GatewayError.credentials("TripleSeat answered HTML: authentication failed", status=response.status_code)
            return data

    async def _get_authorized(
        self, path: str, params: Mapping[str, str], *, correlation_id: str, what: str
    ) -> tuple[str, httpx.Response]:
        """GET with a token; once more with a fresh token when TripleSeat refuses it (401)."""
        token = await self._access_token(correlation_id, stale=None)
        response = await self._get(path, token, correlation_id=correlation_id, what=what, params=params)
        if response.status_code == 401:
            token = await self._access_token(correlation_id, stale=token)
            response = await self._get(path, token, correlation_id=correlation_id, what=what, params=params)
        return token, response

    async def _access_token(self, correlation_id: str, *, stale: str | None) -> str:
        """A cached token, or a new one; `stale` is a token TripleSeat just refused."""
        async with self._token_lock:
            # Another task may already have replaced the refused token while we waited.
            fresh = self._token is not None and self._token != stale and time.monotonic() < self._token_expires
            if fresh:
                assert self._token is not None
                return self._token
            self._token = None
            if self._seed is not None:
                response = await self._refresh_grant(correlation_id)
            else:
                response = await self._post_token({"grant_type": "client_credentials"}, correlation_id)
                if response.status_code in (400, 401, 403):
                    # OAuth answers a bad client id/secret with 400 invalid_client or 401.
                    raise GatewayError.credentials(
                        f"TripleSeat refused the client credentials (HTTP {response.status_code}); check "
                        f"TRIPLESEAT_CLIENT_ID/TRIPLESEAT_CLIENT_SECRET: {self._scrub(body_excerpt(response.content))}",
                        status=response.status_code,
                    )
            self._raise_for_status(response, "token request")
            data = _json(response)
            token = data.get("access_token") if isinstance(data, Mapping) else None
            if not isinstance(token, str) or not token:
                raise GatewayError.credentials(
                    "TripleSeat token endpoint answered without an access_token: authentication failed",
                    status=response.status_code,
                )
            expires_in = _seconds(data.get("expires_in")) if isinstance(data, Mapping) else None
            lifetime = float(expires_in if expires_in is not None else DEFAULT_EXPIRES_IN_S)
            if self._seed is not None:
                await self._rotated(data.get("refresh_token") if isinstance(data, Mapping) else None)
            self._token = token
            self._token_expires = time.monotonic() + lifetime - min(REFRESH_MARGIN_S, lifetime / 2)
            return token

    async def _post_token(self, grant: Mapping[str, str], correlation_id: str) -> httpx.Response:
        form = {**grant, "client_id": self._client_id, "client_secret": self._client_secret}
        try:
            return await self._client.post(
                TOKEN_PATH, data=form, headers={"Accept": "application/json", "X-Correlation-ID": correlation_id}
            )
        except httpx.RequestError as exc:
            raise self._transport_error(exc, "token request") from None

    async def _refresh_grant(self, correlation_id: str) -> httpx.Response:
        """POST the refresh grant with the newest refresh token; on refusal, once more with the store's newest."""
        used = await self._newest_refresh_token()
        response = await self._post_token({"grant_type": "refresh_token", "refresh_token": used}, correlation_id)
        if response.status_code in (400, 401, 403):
            # Another replica (or a run before a crash) may have rotated it a moment ago.
            stored = await self._stored_refresh_token()
            if stored is not None and stored != used:
                self._refresh = used = stored
                response = await self._post_token({"grant_type": "refresh_token", "refresh_token": used}, correlation_id)
        if response.status_code in (400, 401, 403):
            raise GatewayError.credentials(
                f"TripleSeat refused the refresh token or the client credentials (HTTP {response.status_code}); "
                "authorize the API application again and set TRIPLESEAT_REFRESH_TOKEN to the new refresh token: "
                f"{self._scrub(body_excerpt(response.content), used)}",
                status=response.status_code,
            )
        return response

    async def _newest_refresh_token(self) -> str:
        if self._refresh is None:
            self._refresh = await self._stored_refresh_token() or self._seed
        assert self._refresh is not None
        return self._refresh

    async def _stored_refresh_token(self) -> str | None:
        """The stored refresh token, if it descends from the configured seed (a new seed wins over it)."""
        if self._token_store is None:
            return None
        try:
            raw = await self._token_store.load()
        except Exception as exc:  # the store is down: a transient failure like any other
            raise GatewayError.transient(f"TripleSeat token request: cannot read the stored refresh token ({type(exc).__name__})") from None
        try:
            stored = json.loads(raw) if raw else None
        except ValueError:
            return None
        if not isinstance(stored, Mapping) or stored.get("seed") != _fingerprint(self._seed or ""):
            return None
        token = stored.get("refresh_token")
        return token if isinstance(token, str) and token else None

    async def _rotated(self, new: object) -> None:
        """Keep a rotated refresh token, in memory at once and in the token store."""
        if not isinstance(new, str) or not new or new == self._refresh:
            return
        self._refresh = new
        if self._token_store is None:
            return
        value = json.dumps({"seed": _fingerprint(self._seed or ""), "refresh_token": new})
        try:
            await self._token_store.save(value)
        except Exception as exc:  # the access token is good; the next rotation stores again
            log.error("could not store the rotated TripleSeat refresh token (%s); a restart before the next rotation needs a new TRIPLESEAT_REFRESH_TOKEN", type(exc).__name__)

    async def _get(self, path: str, token: str, *, correlation_id: str, what: str, params: Mapping[str, str]) -> httpx.Response:
        await self._pace()
        try:
            return await self._client.get(
                path,
                params=dict(params),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json",
                    "X-Correlation-ID": correlation_id,
                },
            )
        except httpx.RequestError as exc:
            # `from None`: the httpx exception carries the request, bearer token included.
            raise self._transport_error(exc, what, secrets=(token,)) from None

    async def _pace(self) -> None:
        """Start requests at most max_requests_per_s a second (shared by every caller of this source)."""
        if self._min_interval_s <= 0:
            return
        async with self._pace_lock:
            now = time.monotonic()
            wait = self._next_start - now
            if wait > 0:
                await asyncio.sleep(wait)
                now += wait
            self._next_start = now + self._min_interval_s

    def _raise_for_status(self, response: httpx.Response, what: str, *, secrets: tuple[str, ...] = ()) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        excerpt = self._scrub(body_excerpt(response.content), *secrets)
        if status in (401, 403):
            raise GatewayError.credentials(
                f"TripleSeat refused access for {what} (HTTP {status}); check the API application's "
                f"credentials and permissions: {excerpt}",
                status=status,
            )
        if 300 <= status < 400:
            # TripleSeat sends a failed login to its sign-in page, like its HTML answers.
            raise GatewayError.credentials(
                f"TripleSeat redirected {what} (HTTP {status}): authentication failed", status=status
            )
        if status == 429:
            raise GatewayError.transient(
                f"TripleSeat rate limit on {what} (HTTP 429)",
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500 or status == 408:
            raise GatewayError.transient(f"TripleSeat {what}: HTTP {status}: {excerpt}", status=status)
        raise GatewayError.permanent(f"TripleSeat {what}: HTTP {status}: {excerpt}", status=status)

    def _transport_error(self, exc: httpx.RequestError, what: str, *, secrets: tuple[str, ...] = ()) -> GatewayError:
        detail = self._scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, *secrets)
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
            return GatewayError.permanent(f"TripleSeat {what}: request not sendable ({detail})")
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
        return GatewayError.transient(f"TripleSeat {what}: {kind} ({detail})")

    def _scrub(self, text: str, *extra: str) -> str:
        for secret in (self._client_secret, self._seed, self._refresh, self._token, *extra):
            if secret:
                text = text.replace(secret, "***")
        return text


def _json(response: httpx.Response) -> Any:
    """The decoded body, or None when it is not JSON (TripleSeat's HTML login page)."""
    try:
        decoded = json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, ArithmeticError, RecursionError):  # absurd exponents, absurd nesting
        return None
    # An enriched event is stored and emailed like a webhook's: no lone surrogate may reach the store.
    return without_lone_surrogates(decoded) if may_hold_surrogates(response.content) else decoded


def _fingerprint(seed: str) -> str:
    """Which seed a stored refresh token descends from, without storing the seed itself."""
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)) and value > 0:
        return float(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return float(value)
    return None
