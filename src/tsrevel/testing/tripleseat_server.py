"""FakeTripleSeatServer: plays TripleSeat's API on loopback (OAuth 2 tokens, events, event search), for integration tests."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from tsrevel.adapters.fake_parts import forwarded
from tsrevel.testing.exchanges import RecordedRequest, Reply, trailing_int
from tsrevel.testing.loopback import Loopback, started, stopped


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
        self._http = Loopback(self._route, forget=self._forget)

    def _forget(self) -> None:
        """clear() forgets the issued tokens too; credentials and events stay."""
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
        page = trailing_int(request.param("page")) or 1
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

    # The loopback core's: lifecycle, recordings and script (every fake server holds one, by composition).
    start = __enter__ = started
    stop = __exit__ = stopped
    url, requests, script, pending_faults, clear = forwarded("_http", "url", "requests", "script", "pending_faults", "clear")


def _us_date(text: str | None) -> date | None:
    """MM/DD/YYYY as a date; None when it is not one."""
    try:
        return datetime.strptime((text or "").strip(), "%m/%d/%Y").date()
    except ValueError:
        return None
