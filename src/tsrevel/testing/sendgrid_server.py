"""FakeSendGridServer: plays SendGrid's v3 mail/send on loopback (bearer key, 202 per mail kept), for integration tests."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from tsrevel.adapters.fake_parts import forwarded
from tsrevel.testing.exchanges import RecordedRequest, Reply
from tsrevel.testing.loopback import Loopback, started, stopped


class FakeSendGridServer:
    """Plays SendGrid's v3 mail/send: checks the bearer key, keeps each mail, answers 202."""

    def __init__(self, *, api_key: str = "SG.test-key") -> None:
        self.api_key = api_key
        self._mails: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._http = Loopback(self._route, forget=self._forget)

    def _forget(self) -> None:
        """clear() forgets the mails too; the key stays."""
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

    # The loopback core's: lifecycle, recordings and script (every fake server holds one, by composition).
    start = __enter__ = started
    stop = __exit__ = stopped
    url, requests, script, pending_faults, clear = forwarded("_http", "url", "requests", "script", "pending_faults", "clear")
