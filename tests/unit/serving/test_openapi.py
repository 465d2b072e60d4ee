"""The shipped OpenAPI description and the routes the customer API serves agree."""

from __future__ import annotations

from touchstream.config.rules import IDENTIFIER_KINDS
from touchstream.config.settings import Settings
from touchstream.serving.api import CustomerApi, openapi_document

METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def served_routes() -> set[tuple[str, str]]:
    api = CustomerApi(Settings(), redis=None, normaliser=None)  # type: ignore[arg-type]
    app = api.application()
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        routes.add((route.method.lower(), path))
    return routes


# the catch-all of /customers/lookup: 405 for every method but POST (GET in development)
REFUSALS = {("*", "/customers/lookup")}


def test_every_served_route_is_described_and_every_described_route_is_served():
    doc = openapi_document()
    described = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }

    assert served_routes() - REFUSALS == described
    assert served_routes() > REFUSALS


def test_the_document_names_the_served_identifier_kinds_and_needs_a_token():
    doc = openapi_document()
    kinds = doc["components"]["schemas"]["Lookup"]["properties"]["kind"]["enum"]

    assert kinds == list(IDENTIFIER_KINDS)
    assert doc["paths"]["/customers/{customer_id}"]["get"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/customers/lookup"]["post"]["security"] == [{"bearer": []}]
    assert "/metrics" not in doc["paths"]  # the operations listener is not the customer API
