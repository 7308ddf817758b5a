"""The OpenAPI document: what the raw-body handlers read, said where Litestar cannot see it; only the schema files are served."""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import MediaType, Response, Router
from litestar.enums import ParamType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, OpenAPIMediaType, OpenAPIType, Operation, Parameter, RequestBody, Schema, SecurityScheme

from tsrevel.domain import deliveries as st
from tsrevel.domain.text import REASON_LIMIT
from tsrevel.entrypoints.http_errors import error_response
from tsrevel.version import __version__


def _body(description: str, schema: Schema) -> RequestBody:
    return RequestBody(content={"application/json": OpenAPIMediaType(schema=schema)}, description=description, required=True)


def documented(body: RequestBody, *headers: Parameter) -> type[Operation]:
    """An Operation that also describes a body read with request.body() (and any headers read by hand)."""

    @dataclasses.dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = self.request_body or body
            if headers:
                self.parameters = [*(self.parameters or []), *headers]

    return DocumentedOperation


WEBHOOK_BODY = _body(
    "A TripleSeat webhook: the JSON object TripleSeat posts (webhook_trigger_type and the event), as raw bytes.",
    Schema(type=OpenAPIType.OBJECT, required=["webhook_trigger_type"], properties={
        "webhook_trigger_type": Schema(type=OpenAPIType.STRING, examples=["STATUS_CHANGE_EVENT"]),
        "event": Schema(type=OpenAPIType.OBJECT, description="The TripleSeat event (alias: object)."),
    }),
)
SIGNATURE_HEADER = Parameter(
    name="X-Signature", param_in=ParamType.HEADER, required=False, schema=Schema(type=OpenAPIType.STRING),
    description="HMAC-SHA256 of the raw body with TRIPLESEAT_SIGNING_SECRET, as hex (either case), base64, "
    "sha256=<hex> or t=<unix>,v1=<hex> over '<t>.<body>'. Required when a signing secret is set.",
)
FLAGS_BODY = _body(
    "Runtime overrides; at least one flag. dry_run=false is refused (409) unless the service may go live.",
    Schema(type=OpenAPIType.OBJECT, additional_properties=False, properties={
        "enable_connector": Schema(type=OpenAPIType.BOOLEAN),
        "dry_run": Schema(type=OpenAPIType.BOOLEAN),
        "reason": Schema(type=OpenAPIType.STRING, max_length=REASON_LIMIT, description="Why, for the audit log."),
    }),
)
REPLAY_BODY = _body(
    "Which deliveries to re-queue.",
    Schema(type=OpenAPIType.OBJECT, required=["state"], properties={
        "state": Schema(type=OpenAPIType.STRING, enum=sorted(st.REPLAYABLE_STATES)),
    }),
)
REASON_BODY = _body(
    "Why, for the audit log (optional).",
    Schema(type=OpenAPIType.OBJECT, properties={"reason": Schema(type=OpenAPIType.STRING, max_length=REASON_LIMIT)}),
)
SYNC_BODY = _body(
    "Which TripleSeat event to fetch, and why (for the audit log).",
    Schema(type=OpenAPIType.OBJECT, required=["event_id"], properties={
        "event_id": Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.INTEGER)]),
        "reason": Schema(type=OpenAPIType.STRING, max_length=REASON_LIMIT),
    }),
)
BEARER_SCHEME = "BearerToken"


def _schema_not_found_in_our_shape(response: Response[Any]) -> Response[Any]:
    """Litestar answers an unknown /schema/... path (a UI we do not serve) with an HTML page: ours instead."""
    if response.status_code == 404 and response.media_type == MediaType.HTML:
        return error_response(404, "not found: only /schema/openapi.json and /schema/openapi.yaml are served (no documentation UI)")
    return response


def openapi_config() -> OpenAPIConfig:
    """Only the schema files: the documentation UIs Litestar can render load their scripts from a CDN."""
    return OpenAPIConfig(
        title="tsrevel", version=__version__, path="/schema",
        render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        openapi_router=Router("/schema", route_handlers=[], include_in_schema=False, after_request=_schema_not_found_in_our_shape),
        components=Components(security_schemes={
            BEARER_SCHEME: SecurityScheme(type="http", scheme="bearer", description="TSREVEL_ADMIN_TOKEN"),
        }),
    )
