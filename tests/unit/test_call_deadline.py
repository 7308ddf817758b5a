"""within_deadline: the whole of an outside call is bounded, and the call's own timeouts keep their meaning."""

from __future__ import annotations

import asyncio

import pytest

from tsrevel.adapters.http_answers import within_deadline
from tsrevel.domain.errors import GatewayError

pytestmark = pytest.mark.anyio


def deadline_error() -> GatewayError:
    return GatewayError.transient("no complete answer within the deadline")


async def test_a_call_that_outlives_the_deadline_ends_with_the_deadline_error():
    never = asyncio.Event()
    with pytest.raises(GatewayError, match="within the deadline"):
        await within_deadline(never.wait(), 0.05, deadline_error)


async def test_the_calls_own_timeout_error_is_not_taken_for_the_deadline():
    async def socket_timed_out() -> None:
        raise TimeoutError("timed out")  # what urllib raises after SENDGRID_TIMEOUT_S

    with pytest.raises(TimeoutError, match="timed out"):
        await within_deadline(socket_timed_out(), 30.0, deadline_error)


async def test_a_call_within_the_deadline_answers_and_none_means_no_bound():
    async def answer() -> str:
        return "ok"

    assert await within_deadline(answer(), 5.0, deadline_error) == "ok"
    assert await within_deadline(answer(), None, deadline_error) == "ok"
