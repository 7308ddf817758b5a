"""The operators' console under /console: server-rendered pages over the Processor's use cases.

Reads come from console_views; every action calls a Processor use case with actor ``console``
and the operator's reason, then redirects (POST-redirect-GET), so every lever works without
JavaScript. Every form carries a CSRF token. Sign-in, the session cookie, the CSRF keys and the
security headers are web_console_auth's; the Jinja2 engine is web_console_templates'. No rule of the
connector is decided here.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router

from tsrevel.domain import catchup
from tsrevel.domain import deliveries as st
from tsrevel.domain.deliveries import Delivery
from tsrevel.domain.errors import GatewayError, InvalidRequest, MappingRejected, NotFound, PayloadError
from tsrevel.domain.processing import Processor
from tsrevel.domain.text import audit_reason
from tsrevel.entrypoints import console_views as views
from tsrevel.entrypoints.settings import Settings
from tsrevel.entrypoints.web_console_auth import (  # noqa: F401 - SESSION_COOKIE re-exported: tests forge sessions with it
    ACTOR,
    CSRF_COOKIE,
    PASSIVE,
    PUBLIC,
    SESSION_COOKIE,
    ConsoleHeaders,
    SignInRequired,
    csrf_secret,
    safe_next,
    session_key,
    session_middleware,
    signed_in,
    signed_in_guard,
)

log = logging.getLogger("tsrevel.console")

STATIC = Path(__file__).parent / "static" / "console"
DeliveryId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]


class NoReason(Exception):
    """An action's form gave no reason: nothing is changed, and the answer goes back to the page (args[0]) saying so."""


# ---- pages and forms ---------------------------------------------------------------------------


def _flash(request: Request[Any, Any, Any], kind: str, text: str) -> None:
    request.session.setdefault("flash", []).append([kind, text])


def page(
    request: Request[Any, Any, Any], processor: Processor, name: str, *, status_code: int = 200, flashes: bool = True, **context: Any
) -> Template:
    """Render a console page with what every page needs: the venue's time zone and (unless a fragment) pending messages."""
    shown = request.session.pop("flash", []) if flashes and request.session else []
    return Template(
        template_name=f"console/{name}",
        context={"tz": processor.mapping.timezone, "flashes": shown, "signed_in": signed_in(request), **context},
        status_code=status_code,
    )


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items()}


def _reason(fields: dict[str, str], back_to: str) -> str:
    """The form's reason on one line, as the audit log keeps it; without one, NoReason sends the operator back to back_to."""
    reason = audit_reason(" ".join(fields.get("reason", "").split()), required=False)
    if not reason:
        raise NoReason(back_to)
    return reason


def _back(to: str) -> Redirect:
    return Redirect(path=to, status_code=303)


# ---- sign-in ---------------------------------------------------------------------------------


@get("/login", opt={PUBLIC: True}, name="console_login")
async def login_page(
    request: Request[Any, Any, Any], processor: NamedDependency[Processor], settings: NamedDependency[Settings],
    next_page: Annotated[str | None, QueryParameter(name="next")] = None,
) -> Template | Redirect:
    if signed_in(request):
        return _back(safe_next(next_page) or "/console")
    return page(request, processor, "login.html", enabled=settings.admin_token is not None, next_page=safe_next(next_page))


@post("/login", opt={PUBLIC: True}, status_code=303)
async def login(request: Request[Any, Any, Any], processor: NamedDependency[Processor], settings: NamedDependency[Settings]) -> Response[Any]:
    form = await request.form()
    given = str(form.get("token", "")).strip()
    token = settings.admin_token
    if token is None or not hmac.compare_digest(given.encode(), token.encode()):
        log.warning("console sign-in refused from %s", request.client.host if request.client else "?")  # never the token given
        return page(request, processor, "login.html", status_code=401, enabled=token is not None,
                    next_page=safe_next(str(form.get("next", ""))), refused=True)
    request.set_session({"who": ACTOR, "seen": int(time.time())})
    log.info("console sign-in")
    return _back(safe_next(str(form.get("next", ""))) or "/console")


@post("/logout", status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    request.set_session({"flash": [["ok", "Signed out."]]})
    return _back("/console/login")


# ---- overview and flags ------------------------------------------------------------------------


@get("/", name="console_overview")
async def overview(request: Request[Any, Any, Any], processor: NamedDependency[Processor], runtime: NamedDependency[Any]) -> Template:
    return page(
        request, processor, "overview.html", view=await views.overview(processor, runtime.worker), can_sync=processor.feed is not None
    )


@get("/fragments/overview", opt={PASSIVE: True})
async def overview_fragment(request: Request[Any, Any, Any], processor: NamedDependency[Processor], runtime: NamedDependency[Any]) -> Template:
    return page(request, processor, "_overview_body.html", flashes=False, view=await views.overview(processor, runtime.worker))


FLAG_CHANGES = {
    "connector-off": {"enable_connector": False},
    "connector-on": {"enable_connector": True},
    "dry-run-off": {"dry_run": False},
    "dry-run-on": {"dry_run": True},
}


@post("/flags", status_code=303)
async def set_flags(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> Redirect:
    fields = await _form(request)
    change = FLAG_CHANGES.get(fields.get("change", ""))
    if change is None:
        _flash(request, "error", "Nothing was changed: unknown flag change.")
        return _back("/console")
    reason = _reason(fields, "/console")
    try:
        flags = await processor.set_flags(
            enable_connector=change.get("enable_connector"), dry_run=change.get("dry_run"), actor=ACTOR, reason=reason
        )
    except InvalidRequest as exc:  # e.g. going live refused: the use case says why
        _flash(request, "error", f"Refused: {exc}")
        return _back("/console")
    _flash(request, "ok", f"Connector: {_on(flags.enable_connector)}, Dry run: {_on(flags.dry_run)}.")
    return _back("/console")


@post("/flags/reset", status_code=303)
async def reset_flags(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> Redirect:
    reason = _reason(await _form(request), "/console")
    flags = await processor.clear_flags(actor=ACTOR, reason=reason)
    _flash(request, "ok", f"Back to the environment values: Connector: {_on(flags.enable_connector)}, Dry run: {_on(flags.dry_run)}.")
    return _back("/console")


def _on(value: bool) -> str:
    return "ON" if value else "OFF"


# ---- deliveries ------------------------------------------------------------------------------


@get("/deliveries", name="console_deliveries")
async def deliveries(
    request: Request[Any, Any, Any],
    processor: NamedDependency[Processor],
    state_filter: Annotated[str | None, QueryParameter(name="state")] = None,
    event: FromQuery[str | None] = None,
    before: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,
) -> Template:
    state = state_filter if state_filter in st.STATES else None
    event_id = event.strip() or None if event else None
    listing = await views.delivery_page(processor, state=state, event_id=event_id, before=before)
    return page(request, processor, "deliveries.html", listing=listing, mapping=processor.mapping)


@get("/deliveries/{delivery_id:int}", name="console_delivery")
async def delivery(request: Request[Any, Any, Any], processor: NamedDependency[Processor], delivery_id: DeliveryId) -> Template:
    detail = await views.delivery_detail(processor, delivery_id)
    return page(request, processor, "delivery.html", d=detail, mapping=processor.mapping)


async def _delivery_action(request: Request[Any, Any, Any], processor: Processor, delivery_id: int) -> tuple[Delivery, str]:
    """The delivery a form on its page acts on, and the reason given (NoReason without one)."""
    reason = _reason(await _form(request), f"/console/deliveries/{delivery_id}")
    return await processor.store.get_delivery(delivery_id), reason


async def _move(
    request: Request[Any, Any, Any], processor: Processor, delivery_id: int, use_case: Callable[..., Awaitable[bool]], *, done: str, verb: str
) -> Redirect:
    """Replay or discard one delivery through its use case; the use case decides whether its state allows it."""
    current, reason = await _delivery_action(request, processor, delivery_id)
    if await use_case(delivery_id, actor=ACTOR, reason=reason):
        _flash(request, "ok", f"Delivery {delivery_id} {done.format(state=current.state)}.")
    else:
        _flash(request, "error", f"Delivery {delivery_id} is {current.state}: it cannot be {verb}.")
    return _back(f"/console/deliveries/{delivery_id}")


@post("/deliveries/{delivery_id:int}/replay", status_code=303)
async def replay(request: Request[Any, Any, Any], processor: NamedDependency[Processor], delivery_id: DeliveryId) -> Redirect:
    return await _move(request, processor, delivery_id, processor.replay, done="re-queued", verb="replayed")


@post("/deliveries/{delivery_id:int}/discard", status_code=303)
async def discard(request: Request[Any, Any, Any], processor: NamedDependency[Processor], delivery_id: DeliveryId) -> Redirect:
    return await _move(request, processor, delivery_id, processor.discard, done="discarded ({state} -> ignored)", verb="discarded")


@post("/deliveries/{delivery_id:int}/forget", status_code=303)
async def forget(request: Request[Any, Any, Any], processor: NamedDependency[Processor], delivery_id: DeliveryId) -> Redirect:
    """Drop the event's ledger entry (after a manual clean-up in Revel), as `tsrevel forget` does."""
    current, reason = await _delivery_action(request, processor, delivery_id)
    to = f"/console/deliveries/{delivery_id}"
    if not current.event_id:
        _flash(request, "error", f"Delivery {delivery_id} names no event: there is no order to forget.")
        return _back(to)
    try:
        dropped = await processor.forget(current.event_id, actor=ACTOR, reason=reason)
    except InvalidRequest as exc:
        _flash(request, "error", f"Refused: {exc}")
        return _back(to)
    if dropped is None:
        _flash(request, "error", f"Event {current.event_id} has no order in the ledger: nothing to forget.")
    else:
        _flash(request, "ok", f"Event {current.event_id}: ledger entry {dropped.reference} dropped; a later delivery may order it again.")
    return _back(to)


@post("/replay", status_code=303)
async def replay_all(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> Redirect:
    fields = await _form(request)
    state = fields.get("state", "")
    to = f"/console/deliveries?state={quote(state)}"
    if state not in st.REPLAYABLE_STATES:
        _flash(request, "error", f"Nothing was changed: only {', '.join(sorted(st.REPLAYABLE_STATES))} deliveries can be replayed.")
        return _back("/console/deliveries")
    reason = _reason(fields, to)
    count = await processor.replay_state(state, actor=ACTOR, reason=reason)
    _flash(request, "ok", f"Re-queued {count} {state} deliver{'y' if count == 1 else 'ies'}, oldest first.")
    return _back(to)


@post("/sync", status_code=303)
async def sync_event(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> Redirect:
    """Fetch one event from the TripleSeat API and store it as a delivery, as `tsrevel sync EVENT_ID` does."""
    fields = await _form(request)
    reason = _reason(fields, "/console")
    try:
        synced = await catchup.sync_event(processor, fields.get("event_id", ""), actor=ACTOR, reason=reason)
    except (InvalidRequest, NotFound, GatewayError, PayloadError) as exc:
        _flash(request, "error", f"Not synced: {exc}")
        return _back("/console")
    _flash(request, "ok", f"Event {synced.event_id} fetched: delivery {synced.delivery_id} goes the way of a webhook.")
    return _back(f"/console/deliveries/{synced.delivery_id}")


# ---- mapping and audit -----------------------------------------------------------------------


@get("/mapping", name="console_mapping")
async def mapping(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> Template:
    view = await views.mapping_view(processor)
    return page(request, processor, "mapping.html", view=view, product_rows=views.product_rows)


@post("/mapping/reload", status_code=303)
async def reload_mapping(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> Redirect:
    """Read the mapping file again, as `tsrevel mapping reload`, POST /admin/mapping/reload and SIGHUP do."""
    reason = _reason(await _form(request), "/console/mapping")
    try:
        status = await processor.reload_mapping(actor=ACTOR, reason=reason)
    except (MappingRejected, InvalidRequest) as exc:
        _flash(request, "error", f"Refused: {exc}")
        return _back("/console/mapping")
    _flash(request, "ok", f"Mapping reloaded: {status.describe()}.")
    return _back("/console/mapping")


@get("/audit", name="console_audit")
async def audit(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> Template:
    return page(request, processor, "audit.html", entries=await views.audit_entries(processor))


# ---- errors as pages --------------------------------------------------------------------------


def _to_sign_in(_: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    target = str(exc.args[0]) if exc.args else ""
    wanted = safe_next(target) and target not in ("/console", "/console/") and not target.startswith("/console/fragments/")
    suffix = f"?next={quote(target)}" if wanted else ""
    return Redirect(path=f"/console/login{suffix}", status_code=303)


def _no_reason(request: Request[Any, Any, Any], exc: NoReason) -> Response[Any]:
    _flash(request, "error", "Nothing was changed: give a reason (it goes into the audit log).")
    return _back(str(exc.args[0]))


def _error_page(request: Request[Any, Any, Any], status: int, title: str, text: str) -> Response[Any]:
    return Template(
        template_name="console/error.html",
        context={"tz": "UTC", "flashes": [], "signed_in": signed_in(request), "title": title, "text": text},
        status_code=status,
    )


def _csrf_refused(request: Request[Any, Any, Any], _: PermissionDeniedException) -> Response[Any]:
    log.warning("console form refused: CSRF token missing or wrong")
    return _error_page(request, 403, "Form refused",
                       "This form did not come from a console page of this session (its security token is missing or "
                       "wrong). Nothing was changed. Go back, reload the page and try again.")


def _not_found(request: Request[Any, Any, Any], exc: NotFound) -> Response[Any]:
    return _error_page(request, 404, "Not found", str(exc))


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return _error_page(request, exc.status_code, "Cannot show that", exc.detail)


def console_router(settings: Settings) -> Router:
    """The /console router: its own session and CSRF middleware, sign-in guard and HTML error pages."""
    token = settings.admin_token
    # Without an admin token nobody can sign in; the keys then only need to be unguessable.
    key = session_key(token) if token else secrets.token_bytes(32)
    csrf = CSRFConfig(
        secret=csrf_secret(token) if token else secrets.token_hex(32), cookie_name=CSRF_COOKIE, cookie_path="/console",
        cookie_httponly=True, cookie_samesite="strict", cookie_secure=False,
    )
    static = create_static_files_router(path="/static", directories=[STATIC], opt={PUBLIC: True}, include_in_schema=False, name="console_static")
    return Router(
        path="/console",
        route_handlers=[
            login_page, login, logout, overview, overview_fragment, set_flags, reset_flags, deliveries, delivery, replay,
            discard, forget, replay_all, sync_event, mapping, reload_mapping, audit, static,
        ],
        middleware=[ConsoleHeaders(), DefineMiddleware(session_middleware, key=key, max_age_s=settings.console_idle_min * 60), DefineMiddleware(CSRFMiddleware, config=csrf)],
        guards=[signed_in_guard(settings.console_idle_min * 60)],
        exception_handlers={  # type: ignore[dict-item]
            SignInRequired: _to_sign_in,
            NoReason: _no_reason,
            PermissionDeniedException: _csrf_refused,
            NotFound: _not_found,
            HTTPException: _http_error,
        },
        include_in_schema=False,
    )
