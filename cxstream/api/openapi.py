"""The OpenAPI 3.1 document of the API (``GET /openapi.json``), built from the Avro schemas.

Every event type of the catalogue gets a JSON Schema (2020-12, which OpenAPI 3.1 uses) derived
from its newest Avro version: field docs become descriptions, fields without a default are
required, enums list their symbols, PII fields are marked ``x-pii``. ``POST /v1/events``
accepts the input types only; the output types are documented for consumers of the topics.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cxstream.settings import Settings
from streams.registry import SchemaRegistry
from streams.topics import INPUT_EVENTS, OUTPUT_EVENTS

_PRIMITIVES: dict[str, dict[str, Any]] = {
    "null": {"type": "null"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
    "string": {"type": "string"},
}


def avro_to_json_schema(
    avro: Any, named: dict[str, dict[str, Any]], *, top: bool = False
) -> dict[str, Any]:
    """JSON Schema of an Avro type; ``named`` collects named types for later references."""
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return dict(_PRIMITIVES[avro])
        return dict(named.get(avro) or named.get(avro.rsplit(".", 1)[-1]) or {})
    if isinstance(avro, list):
        return {"anyOf": [avro_to_json_schema(branch, named, top=top) for branch in avro]}
    kind = avro["type"]
    out: dict[str, Any]
    if avro.get("logicalType") == "timestamp-millis":
        out = {"type": "integer", "format": "int64", "description": "epoch milliseconds (UTC)"}
        if top:  # ingest converts top-level ISO-8601 strings
            out = {"anyOf": [out, {"type": "string", "format": "date-time"}]}
    elif kind == "record":
        out = _record(avro, named)
    elif kind == "enum":
        out = {"type": "string", "enum": list(avro["symbols"])}
    elif kind == "array":
        out = {"type": "array", "items": avro_to_json_schema(avro["items"], named)}
    elif kind == "map":
        out = {"type": "object", "additionalProperties": avro_to_json_schema(avro["values"], named)}
    elif kind == "fixed":
        out = {"type": "string", "description": f"{avro['size']} bytes"}
    else:
        out = avro_to_json_schema(kind, named, top=top)
    if kind in ("record", "enum", "fixed") and "name" in avro:
        named[avro["name"]] = out
        if "namespace" in avro:
            named[f"{avro['namespace']}.{avro['name']}"] = out
    if avro.get("doc") and "description" not in out:
        out["description"] = avro["doc"]
    return out


def _record(
    avro: dict[str, Any], named: dict[str, dict[str, Any]], *, top: bool = False
) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in avro["fields"]:
        schema = avro_to_json_schema(field["type"], named, top=top)
        if field.get("doc"):
            schema["description"] = field["doc"]
        if "default" in field:
            schema["default"] = field["default"]
        else:
            required.append(field["name"])
        if "pii" in field:
            schema["x-pii"] = field["pii"]
        properties[field["name"]] = schema
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        out["required"] = required
    if avro.get("doc"):
        out["description"] = avro["doc"]
    return out


def event_schema(registry: SchemaRegistry, name: str) -> dict[str, Any]:
    sv = registry.latest(name)
    schema = _record(sv.definition, {}, top=True)
    schema["title"] = name
    schema["x-avro-schema"] = {"name": sv.full_name, "version": sv.version, "id": sv.schema_id}
    schema["x-partition-key"] = list(sv.partition_key)
    return schema


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def build_openapi(
    settings: Settings, registry: SchemaRegistry, *, version: str = "1"
) -> dict[str, Any]:
    """The whole document; deterministic for a given catalogue."""
    names: Iterable[str] = (*INPUT_EVENTS, *OUTPUT_EVENTS)
    schemas: dict[str, Any] = {name: event_schema(registry, name) for name in names}
    items = []
    for name in INPUT_EVENTS:
        items.append(
            {
                "type": "object",
                "title": f"{name} item",
                "properties": {
                    "type": {"const": name},
                    "event": {"$ref": f"#/components/schemas/{name}"},
                },
                "required": ["type", "event"],
                "additionalProperties": False,
            }
        )
    api = settings.api
    schemas["EventBatch"] = {
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": api.max_events_per_request,
                "items": {"oneOf": items, "discriminator": {"propertyName": "type"}},
            }
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    schemas["EventResult"] = {
        "type": "object",
        "properties": {
            "index": {"type": "integer", "description": "position in the posted events array"},
            "type": {"type": "string"},
            "status": {"enum": ["accepted", "rejected", "failed"]},
            "event_id": {"type": "string"},
            "reason": {
                "enum": [
                    "malformed",
                    "unknown_type",
                    "not_an_input",
                    "invalid",
                    "oversized",
                    "no_key",
                    "kafka_failed",
                    "kafka_timeout",
                ],
                "description": "why the event was rejected (not produced) or failed (retry it)",
            },
            "field": {"type": "string", "description": "dotted path of the offending field"},
            "error": {"type": "string"},
        },
        "required": ["index", "status"],
    }
    schemas["IngestResponse"] = {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer"},
            "rejected": {"type": "integer"},
            "failed": {"type": "integer"},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/EventResult"}},
        },
        "required": ["accepted", "rejected", "failed", "results"],
    }
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
        "required": ["error", "status"],
    }
    schemas["Profile"] = {
        "type": "object",
        "description": "Live profile: top-level attributes as mirrored to Redis (see "
        "profile_snapshot), plus version and updated_at.",
        "additionalProperties": True,
    }
    schemas["Recommendations"] = {
        "type": "object",
        "properties": {
            "customer_id": {"type": "string"},
            "recommendation_id": {"type": ["string", "null"]},
            "policy": {"type": ["string", "null"]},
            "model_version": {"type": ["string", "null"]},
            "served_at": {"type": ["integer", "null"]},
            "reason": {
                "const": "opted_out",
                "description": "set when the list is empty "
                "because the customer refused personalisation",
            },
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "product_id": {"type": "string"},
                        "score": {"type": "number"},
                        "reason": {"type": ["string", "null"]},
                    },
                },
            },
        },
        "required": ["customer_id", "items"],
    }
    customer = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    secured: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
    common = {
        "401": _error_response("missing or unknown API key"),
        "429": {
            **_error_response("the key's rate limit is exceeded"),
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cxstream API",
            "version": version,
            "description": "Event ingest for frontends and live profile / recommendation "
            "lookups. Authenticate with the frontend's API key (X-API-Key or Authorization: "
            f"Bearer). Limits: body {api.max_request_bytes} bytes, "
            f"{api.max_events_per_request} events per request, encoded event "
            f"{settings.max_event_bytes} bytes, {api.rate_limit_per_second:g} requests/s per "
            f"key (burst {api.rate_limit_burst}).",
        },
        "paths": {
            "/v1/events": {
                "post": {
                    "summary": "Publish a batch of events",
                    "description": "Each event is validated against its Avro schema; valid ones "
                    "are produced to Kafka and the answer comes once Kafka acknowledged them "
                    "(200 = durable). Invalid ones are rejected individually. Timestamps: int "
                    "epoch ms, or ISO-8601 strings for top-level timestamp fields. `source`, "
                    "when absent, is set to the frontend of the API key.",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/EventBatch"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "every valid event is durable in Kafka",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/IngestResponse"}
                                }
                            },
                        },
                        "400": _error_response("body is not JSON or not an event batch"),
                        "413": _error_response("body too large or too many events"),
                        "415": _error_response("content type is not application/json"),
                        "503": {
                            "description": "Kafka did not acknowledge some valid events: "
                            "retry those with status failed",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/IngestResponse"}
                                }
                            },
                        },
                        **common,
                    },
                }
            },
            "/v1/customers/{id}/profile": {
                "get": {
                    "summary": "Live profile of a customer",
                    "description": "From Redis; falls back to the worker owning the customer.",
                    "security": secured,
                    "parameters": [customer],
                    "responses": {
                        "200": {
                            "description": "the profile",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Profile"}
                                }
                            },
                        },
                        "404": _error_response("unknown customer"),
                        "503": _error_response("Redis and the worker cannot answer"),
                        **common,
                    },
                }
            },
            "/v1/customers/{id}/recommendations": {
                "get": {
                    "summary": "Top-k recommendations with reason codes",
                    "security": secured,
                    "parameters": [
                        customer,
                        {
                            "name": "k",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 100,
                                "default": 5,
                            },
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the items (empty with reason opted_out)",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Recommendations"}
                                }
                            },
                        },
                        "400": _error_response("k is not an integer in 1..100"),
                        "404": _error_response("no recommendation for this customer"),
                        **common,
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Process alive", "responses": {"200": {"description": "alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Kafka and Redis reachable",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "names what is not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
