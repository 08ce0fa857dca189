"""OpenAPI 3.1 from a stack: every service route, the event ingress, and the bearer scheme.

Schemas come from the handlers' annotations: msgspec Structs and plain types through
``msgspec.json.schema_components``, pydantic models through ``model_json_schema``; both land in
``components.schemas``. Each route lists the scopes it needs in its security requirement (as
OpenAPI 3.1 allows for non-OAuth2 schemes) and in ``x-scopes``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import msgspec

from setpiece._apidoc import BEARER, CLOUDEVENT, bearer_scheme, cloudevent_schema
from setpiece.route_params import Param, is_pydantic
from setpiece.service import HttpRoute

if TYPE_CHECKING:
    from setpiece.stack import Stack

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{name}"
_PYDANTIC_REF = "#/components/schemas/{model}"
_EMPTY = inspect.Parameter.empty
_ERROR = {"$ref": "#/components/schemas/Error"}
_CLOUDEVENT_REF = {"$ref": _REF.format(name=CLOUDEVENT)}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "id": {"type": "string", "description": "error id, also in the server log"},
    },
    "required": ["error"],
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


class _Schemas:
    """Collects the types to describe, then renders them all into components at once."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Error": _ERROR_SCHEMA}
        self._msgspec: list[Any] = []
        self._slots: list[tuple[dict[str, Any], int]] = []

    def of(self, annotation: Any) -> dict[str, Any]:
        """A schema for an annotation (filled in by :meth:`render` for msgspec types)."""
        if annotation in (_EMPTY, Any, None, object):
            return {}
        if is_pydantic(annotation):
            schema = annotation.model_json_schema(ref_template=_PYDANTIC_REF)
            for name, sub in schema.pop("$defs", {}).items():
                self.components.setdefault(name, sub)
            self.components.setdefault(annotation.__name__, schema)
            return {"$ref": _REF.format(name=annotation.__name__)}
        try:
            msgspec.json.schema(annotation)
        except Exception:  # a type msgspec cannot describe: say nothing about it
            return {}
        holder: dict[str, Any] = {}
        self._slots.append((holder, len(self._msgspec)))
        self._msgspec.append(annotation)
        return holder

    def render(self) -> None:
        if not self._msgspec:
            return
        schemas, components = msgspec.json.schema_components(self._msgspec, ref_template=_REF)
        for name, sub in components.items():
            self.components.setdefault(name, sub)
        for holder, index in self._slots:
            holder.update(schemas[index])


def _parameter(param: Param, schemas: _Schemas) -> dict[str, Any]:
    schema = schemas.of(param.annotation) if param.annotation is not _EMPTY else {
        "type": "string"
    }
    out: dict[str, Any] = {
        "name": param.name, "in": param.source, "required": param.source == "path" or
        param.required, "schema": schema,
    }
    if param.many:
        out["explode"] = True
    return out


def _operation(route: HttpRoute, version: str, schemas: _Schemas, secured: bool) -> dict[str, Any]:
    sig = route.signature
    doc = inspect.getdoc(route.fn)
    op: dict[str, Any] = {
        "operationId": f"{route.service}.{route.name}",
        "tags": [route.service],
        "summary": route.summary or (doc.splitlines()[0] if doc else route.name),
        "x-service-version": version,
    }
    params = [_parameter(p, schemas) for p in sig.path + sig.query]
    if params:
        op["parameters"] = params
    if sig.body is not None:
        op["requestBody"] = {
            "required": sig.body.required,
            "content": {"application/json": {"schema": schemas.of(sig.body.annotation)}},
        }
    responses: dict[str, Any] = {"200": _json(schemas.of(sig.returns), "OK")}
    if params or sig.body is not None:
        responses["400"] = _json(_ERROR, "The body is not valid JSON")
        responses["422"] = _json(_ERROR, "A parameter or the body does not fit (names the field)")
    if secured and not route.public:
        responses["401"] = _json(_ERROR, "No valid bearer token")
        responses["403"] = _json(_ERROR, "The token lacks a scope")
        op["security"] = [{BEARER: list(route.scopes)}]
        op["x-scopes"] = list(route.scopes)
    else:
        op["security"] = []
    responses["500"] = _json(_ERROR, "The handler failed (the error id is in the log)")
    responses["503"] = _json(_ERROR, "No live instance, or its circuit breaker is open")
    responses["504"] = _json(_ERROR, "The instance did not answer in time")
    op["responses"] = responses
    return op


def _ingress(buses: list[str], secured: bool, scope: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": "setpiece.publish",
        "tags": ["events"],
        "summary": "Publish CloudEvents onto a bus (HTTP binding: structured, batch or binary)",
        "parameters": [{"name": "bus", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": buses}}],
        "requestBody": {"required": True, "content": {
            "application/cloudevents+json": {"schema": _CLOUDEVENT_REF},
            "application/cloudevents-batch+json": {
                "schema": {"type": "array", "items": _CLOUDEVENT_REF}
            },
        }},
        "responses": {
            "202": _json({"type": "object", "properties": {
                "ids": {"type": "array", "items": {"type": "string"}}}}, "Accepted (durable)"),
            "400": _json(_ERROR, "A malformed event (names the field)"),
            "404": _json(_ERROR, "No such bus"),
            "413": _json(_ERROR, "Too large"),
            "415": _json(_ERROR, "Not a CloudEvents content type"),
        },
    }
    if secured:
        op["security"] = [{BEARER: [scope]}]
        op["responses"]["401"] = _json(_ERROR, "No valid bearer token")
        op["responses"]["403"] = _json(_ERROR, "The token lacks a scope, or names another tenant")
    else:
        op["security"] = []
    return op


def build_openapi(stack: Stack, *, events_scope: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a stack's HTTP face."""
    schemas = _Schemas()
    secured = getattr(stack, "auth", None) is not None
    paths: dict[str, dict[str, Any]] = {}
    for service in stack.services.values():
        for route in service.routes:
            item = paths.setdefault(route.path, {})
            item[route.method.lower()] = _operation(route, service.version, schemas, secured)
    paths["/events/{bus}"] = {"post": _ingress(sorted(stack.buses), secured, events_scope)}
    schemas.render()
    schemas.components[CLOUDEVENT] = cloudevent_schema(("tenant", "partitionkey"))
    components: dict[str, Any] = {"schemas": schemas.components}
    if secured:
        components["securitySchemes"] = bearer_scheme()
    return {
        "openapi": "3.1.0",
        "info": {"title": stack.name, "version": "1"},
        "paths": paths,
        "components": components,
    }
