"""The use cases assembled over whatever ports they are given: the one place a Processor is built.

A declarative container of providers only (no adapter is chosen here, nothing is opened): the
service's container (``entrypoints/container.py``) fills its ports from Settings, the library's
``Connector(...)`` from the adapters passed in, and ``tsrevel.testing.fake_world`` from fakes.
It sits below ``entrypoints/`` so that ``testing/`` can use it without importing an entrypoint.
"""

from __future__ import annotations

import asyncio
import random

from dependency_injector import containers, providers

from tsrevel.domain.ports import NoMetrics
from tsrevel.domain.processing import Processor, no_crash


class UseCases(containers.DeclarativeContainer):
    """The Processor and the wake-up event it sets when work arrives; every port is a provider to fill."""

    store = providers.Dependency()
    revel = providers.Dependency()
    mapping = providers.Dependency()
    boot_flags = providers.Dependency()
    settings = providers.Dependency()
    clock = providers.Dependency()
    mailer = providers.Object(None)
    events = providers.Object(None)
    feed = providers.Object(None)
    crash = providers.Object(no_crash)
    unit_random = providers.Object(random.random)
    metrics = providers.Singleton(NoMetrics)
    mapping_source = providers.Object(None)

    # Intake and the operator's actions set it; the worker loops wait on it between polls.
    wake = providers.Singleton(asyncio.Event)
    processor = providers.Singleton(
        Processor,
        store=store,
        revel=revel,
        mapping=mapping,
        boot_flags=boot_flags,
        settings=settings,
        clock=clock,
        mailer=mailer,
        events=events,
        feed=feed,
        crash=crash,
        unit_random=unit_random,
        on_accepted=wake.provided.set,
        metrics=metrics,
        mapping_source=mapping_source,
    )


def use_cases_over(**ports: object) -> UseCases:
    """A UseCases container whose named providers are the given values (store=..., revel=..., clock=...)."""
    return UseCases(**{name: providers.Object(value) for name, value in ports.items()})
