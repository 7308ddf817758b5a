"""FlakyStore: a Store wrapper whose calls fail as scripted, to rehearse a database outage; performs no I/O itself."""

from __future__ import annotations

import inspect
from typing import Any

import attrs

from tsrevel.domain.errors import StoreUnavailable


@attrs.define
class _StoreFault:
    operations: frozenset[str]  # empty: every call
    left: int | None  # None: until heal()
    error: BaseException


class FlakyStore:
    """A Store wrapper whose calls fail as scripted (StoreUnavailable unless told otherwise); the rest reach inner.

    ``store.fail("finish", "complete_order", times=2)`` fails the next two such calls;
    ``store.fail()`` fails every call until ``store.heal()``. ``failed`` records each failed call's name.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed: list[str] = []
        self._faults: list[_StoreFault] = []

    def fail(self, *operations: str, times: int | None = None, error: BaseException | None = None) -> None:
        self._faults.append(
            _StoreFault(frozenset(operations), times, error or StoreUnavailable("database is locked (scripted)"))
        )

    def heal(self) -> None:
        self._faults.clear()

    def _take(self, operation: str) -> BaseException | None:
        for fault in self._faults:
            if not fault.operations or operation in fault.operations:
                if fault.left is not None:
                    fault.left -= 1
                    if fault.left <= 0:
                        self._faults.remove(fault)
                self.failed.append(operation)
                return fault.error
        return None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            error = self._take(name)
            if error is not None:
                raise error
            return await attr(*args, **kwargs)

        return call
