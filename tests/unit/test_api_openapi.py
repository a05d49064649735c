"""The OpenAPI document documents every event type from its Avro schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cxstream.api.openapi import build_openapi
from cxstream.settings import Settings
from streams.codec import build_codec
from streams.topics import INPUT_EVENTS, OUTPUT_EVENTS


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = Settings()
    return build_openapi(settings, build_codec(settings).registry)


def test_every_event_type_is_documented_with_its_required_fields(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    registry = build_codec(Settings()).registry
    schemas = document["components"]["schemas"]
    for name in (*INPUT_EVENTS, *OUTPUT_EVENTS):
        definition = registry.latest(name).definition
        schema = schemas[name]
        assert set(schema["properties"]) == {f["name"] for f in definition["fields"]}, name
        assert schema["required"] == [f["name"] for f in definition["fields"] if "default" not in f]
        for field in definition["fields"]:
            assert schema["properties"][field["name"]]["description"] == field["doc"]
    # only inputs may be posted
    items = schemas["EventBatch"]["properties"]["events"]["items"]["oneOf"]
    assert [i["properties"]["type"]["const"] for i in items] == list(INPUT_EVENTS)
    assert json.loads(json.dumps(document)) == document  # plain JSON


def test_pii_and_enums_come_from_the_schema(document: dict[str, Any]) -> None:
    interaction = document["components"]["schemas"]["channel_interaction"]["properties"]
    assert interaction["search_query"]["x-pii"] == "free_text"
    channels = ["web", "app", "social", "chat", "phone", "branch", "atm"]
    assert interaction["channel"]["enum"] == channels
    # ISO-8601 strings are documented for top-level timestamps
    kinds = {branch["type"] for branch in interaction["occurred_at"]["anyOf"]}
    assert kinds == {"integer", "string"}
