"""The console's templates: a Jinja2 engine built on the first console page, not at start-up, and its filters.

The service starts (and /ready answers) without loading Jinja2: only the console's pages need it
(P6, docs/performance.md). Litestar asks the engine for nothing before it renders a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from litestar.template.config import TemplateConfig
from markupsafe import Markup

from tsrevel.domain import deliveries as st
from tsrevel.entrypoints.console import age

if TYPE_CHECKING:
    from litestar.plugins.jinja import JinjaTemplateEngine

TEMPLATES = Path(__file__).parent / "templates"


def when(context: Any, value: datetime | None) -> Markup:
    """A moment on the venue's clock, with its UTC time on hover (a filter that reads the page's tz)."""
    if value is None:
        return Markup("&ndash;")
    utc = value.astimezone(timezone.utc)
    local = value.astimezone(ZoneInfo(context.get("tz") or "UTC"))
    return Markup('<time datetime="{}" title="{} UTC">{}</time>').format(
        utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M:%S"), local.strftime("%Y-%m-%d %H:%M:%S %Z")
    )


def jinja_engine() -> JinjaTemplateEngine:
    """Litestar's Jinja2 engine over the console's templates, with the console's filters and globals."""
    from jinja2 import pass_context
    from litestar.plugins.jinja import JinjaTemplateEngine

    engine = JinjaTemplateEngine(directory=TEMPLATES)
    engine.engine.filters.update(when=pass_context(when), age=age, words=lambda name: str(name).replace("_", " ").capitalize())
    engine.engine.globals.update(STATES=st.STATES)
    return engine


class ConsoleTemplates:
    """Litestar's template engine protocol over jinja_engine(), which it builds on the first call."""

    def __init__(self) -> None:
        self._engine: JinjaTemplateEngine | None = None

    @property
    def engine(self) -> JinjaTemplateEngine:
        if self._engine is None:
            self._engine = jinja_engine()
        return self._engine

    def get_template(self, template_name: str) -> Any:
        return self.engine.get_template(template_name)

    def render_string(self, template_string: str, context: Mapping[str, Any]) -> str:
        return self.engine.render_string(template_string, context)

    def register_template_callable(self, key: str, template_callable: Any) -> None:
        self.engine.register_template_callable(key, template_callable)


def template_config() -> TemplateConfig[Any]:
    """The app's template configuration: the console's engine, not built yet."""
    return TemplateConfig(instance=ConsoleTemplates())
