"""The service's own OpenAPI document: complete, self-consistent, and true to the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from starlette.routing import Route

from ratekeeper.server import ServerSettings, create_app
from ratekeeper.server._app import openapi_document

from .conftest import API_KEY


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_reference_resolves() -> None:
    """No $ref points at a component the document lacks."""
    document = json.loads(openapi_document())
    for ref in _refs(document):
        assert ref.startswith("#/components/"), ref
        node = document
        for part in ref[2:].split("/"):
            assert part in node, ref
            node = node[part]


def test_every_schema_is_valid_json_schema() -> None:
    """Each component schema is itself a valid JSON Schema (2020-12, as OpenAPI 3.1 says)."""
    document = json.loads(openapi_document())
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_documented_paths_are_exactly_the_app_routes() -> None:
    """Every route of the app is documented with its methods, and nothing else is."""
    document = json.loads(openapi_document())
    app = create_app(ServerSettings(api_keys=(API_KEY,)))
    served: dict[str, set[str]] = {}
    for route in app.routes:
        assert isinstance(route, Route)
        methods = {m.lower() for m in (route.methods or ())} - {"head"}
        served.setdefault(route.path, set()).update(methods)
    documented = {path: set(item) for path, item in document["paths"].items()}
    assert documented == served


def test_docs_endpoint_table_names_every_route() -> None:
    """docs/server.md's endpoint table lists every path the app serves, with its methods."""
    table = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    table = table.partition("## Endpoints")[2].partition("\n\n")[2].partition("\n\n")[0]
    rows: dict[str, set[str]] = {}
    for line in table.splitlines()[2:]:
        verbs, path = (cell.strip() for cell in line.split("|")[1:3])
        listed = rows.setdefault(path.strip("`").partition("?")[0], set())
        listed.update(verb.strip().lower() for verb in verbs.split(","))
    app = create_app(ServerSettings(api_keys=(API_KEY,)))
    for route in app.routes:
        assert isinstance(route, Route)
        served = {m.lower() for m in (route.methods or ())} - {"head"}
        assert route.path in rows, route.path
        assert served <= rows[route.path], route.path


def test_chatkit_operations_keep_openai_ids_and_schemas() -> None:
    """The six ChatKit operations keep OpenAI's operation ids and response schemas."""
    paths = json.loads(openapi_document())["paths"]
    expected = {
        ("/v1/chatkit/sessions", "post"): ("CreateChatSessionMethod", "ChatSessionResource"),
        ("/v1/chatkit/sessions/{session_id}/cancel", "post"): (
            "CancelChatSessionMethod",
            "ChatSessionResource",
        ),
        ("/v1/chatkit/threads", "get"): ("ListThreadsMethod", "ThreadListResource"),
        ("/v1/chatkit/threads/{thread_id}", "get"): ("GetThreadMethod", "ThreadResource"),
        ("/v1/chatkit/threads/{thread_id}", "delete"): (
            "DeleteThreadMethod",
            "DeletedThreadResource",
        ),
        ("/v1/chatkit/threads/{thread_id}/items", "get"): (
            "ListThreadItemsMethod",
            "ThreadItemListResource",
        ),
    }
    for (path, method), (operation_id, schema) in expected.items():
        operation = paths[path][method]
        assert operation["operationId"] == operation_id
        content = operation["responses"]["200"]["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{schema}"}
