"""The OpenAPI description: built from the admin API's route table (every route in it and nothing else, with
its scope and query parameters) and the configured sources' hook paths; every reference resolves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.web.api import ROUTES
from gateway.web.openapi import SHAPES, Operation, document

VERBS = {"get", "post", "put", "patch", "delete"}


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for verb, op in item.items():
            if verb in VERBS:
                yield verb.upper(), path, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_route_of_the_table_is_documented_and_nothing_else_is() -> None:
    doc = document(ROUTES)
    documented = {(verb, path) for verb, path, _ in operations(doc)}
    assert documented == {(op.verb, "/api" + op.path) for op in ROUTES}
    assert len(ROUTES) == len(documented)  # no two rows for one verb and path


def test_each_operation_carries_its_rows_scope_and_exactly_its_query_parameters() -> None:
    doc = document(ROUTES)
    for op in ROUTES:
        described = doc["paths"]["/api" + op.path][op.verb.lower()]
        assert described["operationId"] == op.name
        assert described["security"] == [{"bearer": [op.scope]}]
        query = [p["name"] for p in described["parameters"] if p["in"] == "query"]
        assert query == list(op.query)
        path_params = [p["name"] for p in described["parameters"] if p["in"] == "path"]
        assert path_params == (["id"] if "{id}" in op.path else [])


def test_every_shape_belongs_to_a_route_of_the_table() -> None:
    assert set(SHAPES) == {op.name for op in ROUTES}


def test_a_route_without_a_shape_is_refused_by_name() -> None:
    with pytest.raises(KeyError, match="list_widgets"):
        document([*ROUTES, Operation("GET", "/widgets", "read", (), "list_widgets")])


def test_the_description_of_itself_is_behind_the_read_scope() -> None:
    served = [op for op in ROUTES if op.path == "/openapi.json"]
    assert served == [Operation("GET", "/openapi.json", "read", (), "openapi")]


def test_every_reference_resolves_to_a_component() -> None:
    doc = document(ROUTES)
    names = {f"#/components/schemas/{name}" for name in doc["components"]["schemas"]}
    used = set(refs(doc))
    assert used and used <= names


def test_listing_filters_with_fixed_values_are_enumerated() -> None:
    doc = document(ROUTES)
    events = {p["name"]: p["schema"] for p in doc["paths"]["/api/events"]["get"]["parameters"]}
    assert events["status"] == {"enum": ["routed", "unrouted"]}
    assert events["limit"]["maximum"] == 500
    jobs = {p["name"]: p["schema"] for p in doc["paths"]["/api/jobs"]["get"]["parameters"]}
    assert jobs["status"] == {"enum": ["running", "completed", "canceled", "failed"]}


def test_every_configured_source_gets_a_post_with_its_signature_headers(
    load_config: Callable[..., Any],
) -> None:
    config = load_config()
    doc = document(ROUTES, config.sources.values())
    hooks = {path: item for path, item in doc["paths"].items() if not path.startswith("/api/")}
    assert sorted(hooks) == sorted(source.path for source in config.sources.values())
    assert all(list(item) == ["post"] for item in hooks.values())
    github = hooks["/hooks/github"]["post"]
    assert github["security"] == []
    assert [p["name"] for p in github["parameters"]] == ["X-Hub-Signature-256"]
    assert set(github["responses"]) == {"200", "202", "401", "408", "413", "503"}
    assert hooks["/hooks/open"]["post"]["parameters"] == []
    billing = [p["name"] for p in hooks["/hooks/billing"]["post"]["parameters"]]
    assert billing == [
        *("webhook-signature", "svix-signature"),
        *("webhook-timestamp", "svix-timestamp"),
        *("webhook-id", "svix-id"),
    ]


def test_the_document_declares_openapi_3_1_and_a_bearer_scheme() -> None:
    doc = document(ROUTES)
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
