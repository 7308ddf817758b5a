"""SendGridMailer over the container's pooled httpx client: the same mail and classification, one TCP connection.

tests/integration/test_sendgrid_mail.py covers the library's own (blocking) client; here the same
message goes over the pool the service wires (entrypoints/container.py, ``sendgrid_client``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import httpx
import pytest

from tsrevel.adapters.sendgrid_mail import SendGridMailer, make_sendgrid_client
from tsrevel.domain.errors import GatewayError
from tsrevel.entrypoints.container import build_container
from tsrevel.entrypoints.settings import Settings
from tsrevel.testing.servers import FakeSendGridServer, ServerFault

from tests.integration.test_sendgrid_mail import API_KEY, MESSAGE, OPS, SENDER, failure
from tests.integration.test_sendgrid_mail import anyio_backend, sendgrid_server  # noqa: F401 - the shared fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=4, max_keepalive_connections=4)) as client:
        yield client


def pooled(
    server: FakeSendGridServer, http: httpx.AsyncClient, *, api_key: str = API_KEY, timeout_s: float = 5.0, deadline_s: float | None = None
) -> SendGridMailer:
    return SendGridMailer(
        make_sendgrid_client(api_key, server.url, timeout_s), sender=SENDER, recipients=OPS, timeout_s=timeout_s, http=http, deadline_s=deadline_s
    )


class TestPooledSend:
    @pytest.mark.anyio
    async def test_the_mail_and_its_custom_args_are_the_librarys(self, sendgrid_server, pool):
        await pooled(sendgrid_server, pool).send(MESSAGE, outbox_id=3)
        [mail] = sendgrid_server.mails
        assert mail["from"] == {"email": SENDER}
        assert mail["personalizations"] == [{"to": [{"email": "ops@example.com"}, {"email": "kitchen@example.com"}]}]
        assert mail["content"] == [{"type": "text/plain", "value": MESSAGE.text}]
        assert mail["custom_args"] == {"correlation_id": "corr-R18", "delivery_id": "17", "outbox_id": "3"}
        [request] = sendgrid_server.requests
        assert (request.method, request.path) == ("POST", "/v3/mail/send")
        assert request.header("Authorization") == f"Bearer {API_KEY}"
        assert request.header("Content-Type") == "application/json"

    @pytest.mark.anyio
    async def test_100_emails_use_one_tcp_connection(self, sendgrid_server, pool):
        mailer = pooled(sendgrid_server, pool)
        for n in range(100):
            await mailer.send(MESSAGE, outbox_id=n)
        assert len(sendgrid_server.mails) == 100
        assert sendgrid_server.connections_accepted == 1

    @pytest.mark.anyio
    async def test_without_the_pool_each_email_opens_a_connection(self, sendgrid_server):
        mailer = SendGridMailer(make_sendgrid_client(API_KEY, sendgrid_server.url, 5.0), sender=SENDER, recipients=OPS, timeout_s=5.0)
        for n in range(5):
            await mailer.send(MESSAGE, outbox_id=n)
        assert sendgrid_server.connections_accepted == 5  # what the pool saves

    @pytest.mark.anyio
    async def test_the_container_wires_the_pool_when_a_key_is_set(self, sendgrid_server, tmp_path):
        settings = Settings.from_env({
            "TSREVEL_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_API_HOST": sendgrid_server.url, "EMAIL_FROM": SENDER, "EMAIL_TO": ",".join(OPS),
            "TSREVEL_MAPPING_FILE": "examples/mapping.toml",
        })
        container = build_container(settings)
        await container.init_resources()
        try:
            mailer = container.mailer()
            if inspect.isawaitable(mailer):  # its pooled client is an async Resource
                mailer = await mailer
            for n in range(3):
                await mailer.send(MESSAGE, outbox_id=n)
        finally:
            await container.shutdown_resources()
        assert len(sendgrid_server.mails) == 3 and sendgrid_server.connections_accepted == 1


class TestPooledErrors:
    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [500, 503, 408])
    async def test_server_errors_are_transient(self, sendgrid_server, pool, status):
        sendgrid_server.script(ServerFault.status(status))
        error = await failure(pooled(sendgrid_server, pool).send(MESSAGE, outbox_id=1))
        assert (error.failure.kind, error.failure.status) == ("transient", status)

    @pytest.mark.anyio
    async def test_429_waits_for_the_rate_limit_reset(self, sendgrid_server, pool):
        reset = 1_900_000_000
        sendgrid_server.script(ServerFault.status(429, headers={"X-RateLimit-Reset": str(reset)}, body={"errors": [{"message": "slow"}]}))
        error = await failure(pooled(sendgrid_server, pool).send(MESSAGE, outbox_id=1))
        assert error.is_transient and error.failure.status == 429
        assert error.failure.retry_after == datetime.fromtimestamp(reset, tz=timezone.utc)

    @pytest.mark.anyio
    async def test_a_client_error_is_permanent_with_sendgrids_reason(self, sendgrid_server, pool):
        sendgrid_server.script(ServerFault.status(400, body={"errors": [{"message": "verified Sender Identity"}]}))
        error = await failure(pooled(sendgrid_server, pool).send(MESSAGE, outbox_id=1))
        assert (error.failure.kind, error.failure.status) == ("permanent", 400) and "verified Sender Identity" in str(error)

    @pytest.mark.anyio
    async def test_a_wrong_key_is_a_credentials_error_without_the_key(self, sendgrid_server, pool):
        error = await failure(pooled(sendgrid_server, pool, api_key="SG.wrong-key-123").send(MESSAGE, outbox_id=1))
        assert (error.failure.kind, error.failure.status) == ("credentials", 401)
        assert "SG.wrong-key-123" not in str(error)

    @pytest.mark.anyio
    async def test_a_hanging_sendgrid_fails_within_the_timeout_as_transient(self, sendgrid_server, pool):
        sendgrid_server.script(ServerFault.hang(30))
        error = await failure(pooled(sendgrid_server, pool, timeout_s=0.3).send(MESSAGE, outbox_id=1))
        assert error.is_transient and "timed out after 0.3s" in str(error)

    @pytest.mark.anyio
    async def test_a_send_that_outlives_the_call_deadline_is_given_up_as_transient(self, sendgrid_server, pool):
        # Answered after 3 s, inside the 30 s timeout: only TSREVEL_CALL_DEADLINE_S (0.5 s) ends it.
        sendgrid_server.script(ServerFault.hang(3))
        error = await failure(pooled(sendgrid_server, pool, timeout_s=30.0, deadline_s=0.5).send(MESSAGE, outbox_id=1))
        assert error.is_transient and "TSREVEL_CALL_DEADLINE_S" in str(error)

    @pytest.mark.anyio
    async def test_a_reset_connection_is_transient(self, sendgrid_server, pool):
        sendgrid_server.script(ServerFault.reset())
        error = await failure(pooled(sendgrid_server, pool).send(MESSAGE, outbox_id=1))
        assert error.is_transient

    @pytest.mark.anyio
    async def test_a_refused_connection_is_transient(self, pool):
        client = make_sendgrid_client(API_KEY, "http://127.0.0.1:1", 2.0)
        error = await failure(SendGridMailer(client, sender=SENDER, recipients=OPS, timeout_s=2.0, http=pool).send(MESSAGE, outbox_id=1))
        assert error.is_transient and "connection failed" in str(error)

    @pytest.mark.anyio
    async def test_the_key_never_reaches_the_logs_even_at_debug(self, sendgrid_server, pool, caplog):
        caplog.set_level(logging.DEBUG)
        mailer = pooled(sendgrid_server, pool)
        sendgrid_server.script(ServerFault.status(500), ServerFault.status(401))
        for _ in range(2):
            await failure(mailer.send(MESSAGE, outbox_id=1))
        await mailer.send(MESSAGE, outbox_id=1)
        assert caplog.records  # httpx and httpcore did log, at DEBUG
        assert API_KEY not in caplog.text
